"""``warp``: images sampled at their transforms on the backend, by chunks.

The sampling every distortion and the augmentation share: the library's own
grid generators (``stn_keras.ops.make_grid``) and ``bilinear_sample``, run
in chunks of one shape so that a compiled sampler (XLA, ``jax.jit``) is
traced once per transform and size and kept for the process.
``sampler_compilation`` says, for the duration of a call, whether to compile.
"""

import contextlib
import contextvars
import functools

import keras
import numpy as np
from keras import ops

from stn_keras.ops import DEFAULT_TPS_CONTROL_SHAPE
from stn_keras.ops import bilinear_sample
from stn_keras.ops import make_grid

# Images sampled per compiled call: large enough to amortise the call, small
# enough to keep the (chunk, H, W, 4 * C) gather buffer at a few hundred MB.
CHUNK_SIZE = 8192


def _compile(function):
    """Compiles ``function`` with the current backend's compiler, if any."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(function, jit_compile=True, reduce_retracing=True)
    if backend == "jax":
        import jax

        return jax.jit(function)
    return function


@functools.lru_cache(maxsize=None)
def _sampler(backend, transform, output_size, control_shape, quantise, compiled, padding_mode):
    """An ``(images, theta) -> images`` function for one transform and size."""
    del backend  # Only part of the cache key: compiled functions are per backend.

    def sample(images, theta):
        grid = make_grid(
            transform, theta, output_size, control_shape=control_shape
        )
        output = bilinear_sample(ops.cast(images, "float32"), grid, padding_mode=padding_mode)
        # A projective map can send some target pixels to infinity; they have
        # no source pixel, so they are background.
        output = ops.where(ops.isnan(output), 0.0, output)
        if quantise:
            return ops.cast(ops.clip(ops.round(output), 0.0, 255.0), "uint8")
        return output

    return _compile(sample) if compiled else sample


# Set by ``sampler_compilation`` for the duration of a ``distort`` or
# ``augment`` call: whether to compile the sampler (``None``: only for inputs
# of at least a chunk).
_compile_sampler = contextvars.ContextVar("compile_sampler", default=None)


@contextlib.contextmanager
def sampler_compilation(compile_sampler):
    """Within it, ``warp`` compiles its sampler as ``compile_sampler`` says.

    ``True``: with the backend's compiler (XLA, ``jax.jit``), worth it for
    many calls of one batch shape; ``False``: eagerly; ``None``: only for
    inputs of at least ``CHUNK_SIZE`` images.
    """
    token = _compile_sampler.set(compile_sampler)
    try:
        yield
    finally:
        _compile_sampler.reset(token)


def warp(images, transform, theta, output_size, control_shape=DEFAULT_TPS_CONTROL_SHAPE,
         padding_mode="zeros"):
    """Samples every image at its ``theta`` on the current backend, by chunks.

    Bilinear, ``align_corners=False``; ``padding_mode`` says what lies
    outside the image (``"zeros"``: background, as the paper's canvases).
    uint8 images come back rounded to uint8, others as float32. Whether the
    sampler is compiled is set by ``sampler_compilation``.
    """
    quantise = images.dtype == np.uint8
    count = len(images)
    compiled = _compile_sampler.get()
    if compiled is None:
        # Compiling pays off over many chunks; one small input runs eagerly
        # rather than wait a second for a compilation of its shape. JAX
        # compiles every operation of an eager call anyway, so it always jits.
        compiled = count >= CHUNK_SIZE or keras.backend.backend() == "jax"
    sampler = _sampler(
        keras.backend.backend(),
        transform,
        tuple(output_size),
        tuple(control_shape),
        quantise,
        compiled,
        padding_mode,
    )
    theta = np.asarray(theta, dtype=np.float32)
    chunk = max(min(CHUNK_SIZE, count), 1)  # 1 lets an empty input loop zero times
    outputs = []
    for start in range(0, count, chunk):
        images_chunk = images[start : start + chunk]
        theta_chunk = theta[start : start + chunk]
        missing = chunk - len(images_chunk)
        if missing:
            # Pad the last chunk so the compiled function sees one shape only.
            images_chunk = np.concatenate([images_chunk, images[:missing]])
            theta_chunk = np.concatenate([theta_chunk, theta[:missing]])
        output = ops.convert_to_numpy(sampler(images_chunk, theta_chunk))
        outputs.append(output[: chunk - missing])
    if not outputs:
        channels = images.shape[-1]
        return np.zeros((0, *output_size, channels), dtype=images.dtype if quantise else np.float32)
    return np.concatenate(outputs)
