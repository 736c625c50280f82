"""The switch for the faster TensorFlow paths of the sampler and the convolutions.

On the TensorFlow backend the sampler runs its stages as compiled XLA
computations inside graphs (``stn_keras.ops.sampling``) and a convolution of
single-channel images computes its input gradient as a depthwise convolution
(``stn_keras.ops.convolution``): both measured several times faster on a CPU
(docs/BENCHMARKS.md, issue 16). Exports that must stay plain TensorFlow ops,
for converters and servers without XLA, trace the model with them off.
"""

import contextlib
import contextvars

import keras

_enabled = contextvars.ContextVar("tensorflow_speedups", default=True)


@contextlib.contextmanager
def tensorflow_speedups(enabled):
    """Within it, the TensorFlow backend takes the faster paths as ``enabled`` says.

    On by default. Also usable as a decorator.
    """
    token = _enabled.set(bool(enabled))
    try:
        yield
    finally:
        _enabled.reset(token)


def speedups_apply():
    """True on the TensorFlow backend unless `tensorflow_speedups` turned them off."""
    return keras.backend.backend() == "tensorflow" and _enabled.get()
