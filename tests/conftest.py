"""Shared test configuration: backend markers, real-data gating, helpers.

The suite runs once per Keras backend (``KERAS_BACKEND``). Tests marked
``tensorflow_only`` skip on JAX and PyTorch; tests marked ``real_data`` skip
unless ``STN_DATA_DIR`` points at the real data sets. Besides: the numpy
value of a tensor, random images, gradients on every backend, a fixture for
Keras' global dtype policy and one forcing each sampler code path.
"""

import os
from pathlib import Path

# One run of the suite compiles the same small models in many tests and
# subprocesses; JAX's persistent cache compiles each once (a repeated tiny
# fit took a third of the time). Entries are keyed by the computation and
# the jax version, so a stale one is never used. Set before Keras imports
# JAX; subprocesses inherit it.
JAX_CACHE_DIR = Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax_compilation_cache"
# One JAX pass writes about 30 MB. Entries of code that has since changed
# are never read again, so a developer's cache only grows; it is cut back
# here, oldest first, to JAX_CACHE_MAX_BYTES. (JAX's own bound,
# JAX_COMPILATION_CACHE_MAX_SIZE, lists the whole directory on every write:
# quadratic in the suite's ~4,000 entries.)
JAX_CACHE_MAX_BYTES = 256 * 2**20
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(JAX_CACHE_DIR))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# The suite's models and batches are tiny, so on JAX compiling, not running,
# is most of its time (a cold train-then-evaluate round trip: 85 of 117 s).
# XLA's CPU backend at -O0 compiles about 3x faster (jax.random.uniform of
# seven kernel shapes: 16.7 s -> 5.1 s) for slower steps: that round trip
# took 88 s instead of 134 s. JAX only: on TensorFlow, XLA compiles a few
# hot kernels of the library (the sampler, the distortions), which the suite
# should test as users run them, and the TensorFlow pass of a fresh-clone CI
# with the flag took 8:06 against 6:07 without it. Only the suite does this,
# and a developer's own optimisation level wins.
if os.environ.get("KERAS_BACKEND") == "jax" and "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from stn_keras.ops import sampling  # noqa: E402

BACKEND = keras.backend.backend()


def prune_compilation_cache(directory, max_bytes):
    """Deletes the oldest files of ``directory`` until it holds at most
    ``max_bytes``; returns how many it deleted."""
    files = sorted(
        (status.st_mtime, status.st_size, path)
        for path in Path(directory).glob("*")
        if path.is_file()
        for status in (path.stat(),)
    )
    total = sum(size for _, size, _ in files)
    deleted = 0
    for _, size, path in files:
        if total <= max_bytes:
            break
        path.unlink(missing_ok=True)
        total -= size
        deleted += 1
    return deleted


def pytest_configure(config):
    # Once per run: in the controlling process, before xdist's workers start.
    if "PYTEST_XDIST_WORKER" not in os.environ and JAX_CACHE_DIR.is_dir():
        prune_compilation_cache(JAX_CACHE_DIR, JAX_CACHE_MAX_BYTES)


def pytest_collection_modifyitems(config, items):
    data_dir = os.environ.get("STN_DATA_DIR")
    for item in items:
        if "tensorflow_only" in item.keywords and BACKEND != "tensorflow":
            item.add_marker(
                pytest.mark.skip(reason=f"needs TensorFlow; backend is {BACKEND}")
            )
        if "real_data" in item.keywords and not data_dir:
            item.add_marker(
                pytest.mark.skip(reason="STN_DATA_DIR is not set")
            )


@pytest.fixture
def data_dir():
    """The real data directory (only for tests marked ``real_data``)."""
    return os.environ["STN_DATA_DIR"]


@pytest.fixture
def dtype_policy():
    """Sets Keras' global dtype policy, e.g. ``dtype_policy("mixed_float16")``;
    the policy before the test is restored after it."""
    previous = keras.config.dtype_policy()
    yield keras.config.set_dtype_policy
    keras.config.set_dtype_policy(previous)


@pytest.fixture(params=("native", "keras_ops") if BACKEND == "torch" else ("keras_ops",))
def implementation(request, monkeypatch):
    """Runs the test on each sampler code path of the backend: on PyTorch the
    native ``grid_sample`` the library dispatches to and the ``keras.ops``
    sampler the other backends use."""
    if request.param == "keras_ops":
        monkeypatch.setattr(sampling, "_native_sampler", lambda: None)
    return request.param


def numpy(tensor):
    """A backend tensor (or array) as a numpy array."""
    return keras.ops.convert_to_numpy(tensor)


def random_images(shape, seed=0, dtype="float32"):
    """Uniform random images: floats in ``[0, 1)``, or uint8 in ``[0, 255]``."""
    rng = np.random.default_rng(seed)
    if dtype == "uint8":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    return rng.uniform(size=shape).astype(dtype)


def value_and_gradients(function, *arguments):
    """Evaluates ``function(*arguments)`` (a scalar) and its gradients.

    Runs on the active Keras backend's own autodiff, so the library's
    gradients are tested on TensorFlow, JAX and PyTorch alike. Returns numpy
    ``(value, [gradient for each argument])``; an argument the value does
    not depend on gets a zero gradient, on every backend.
    """
    if BACKEND == "tensorflow":
        import tensorflow as tf

        variables = [tf.Variable(argument) for argument in arguments]
        with tf.GradientTape() as tape:
            value = function(*variables)
        gradients = tape.gradient(
            value,
            variables,
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
        return value.numpy(), [gradient.numpy() for gradient in gradients]
    if BACKEND == "jax":
        import jax

        value, gradients = jax.value_and_grad(
            function, argnums=tuple(range(len(arguments)))
        )(*arguments)
        return np.asarray(value), [np.asarray(g) for g in gradients]
    if BACKEND == "torch":
        import torch

        tensors = [
            torch.tensor(argument, requires_grad=True) for argument in arguments
        ]
        value = function(*tensors)
        value.backward()
        return value.detach().cpu().numpy(), [
            np.zeros(tensor.shape, "float32")
            if tensor.grad is None
            else tensor.grad.cpu().numpy()
            for tensor in tensors
        ]
    raise NotImplementedError(f"No gradient helper for backend {BACKEND!r}")
