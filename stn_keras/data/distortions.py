"""The distorted-MNIST tasks of Jaderberg et al. 2015 (appendix A.4).

Every distortion is generated with the library's own grid generators
(``stn_keras.ops.affine_grid``, ``projective_grid``, ``tps_grid``) and its
``bilinear_sample``, run on the current Keras backend in large compiled
batches. The parameters are drawn in numpy from ``seed`` before any
sampling, so the result depends on the seed only, not on the batching.

Parameters returned (first axis: image index; pixel units are those of the
input image):

* ``rotated``: ``angle`` (degrees, counter-clockwise on screen).
* ``rts``: ``angle``, ``scale``, ``position_x``, ``position_y`` (top-left
  corner of the unscaled digit box on the canvas, in pixels).
* ``projective``: ``scale`` and ``corner_offsets`` ``(N, 4, 2)``: the
  Gaussian move of each corner (top-left, top-right, bottom-left,
  bottom-right) as ``(dx, dy)`` pixels.
* ``elastic``: ``scale`` and ``control_point_offsets`` ``(N, K, 2)``: the
  Gaussian move of each thin-plate-spline control point, in pixels.
* ``translated``: integer ``position_x``, ``position_y``.
* ``cluttered``: those of ``translated`` plus, per patch ``(N, P)``,
  ``patch_source`` (index into the clutter images), ``patch_crop_x``,
  ``patch_crop_y`` (top-left of the crop in its source), ``patch_x``,
  ``patch_y`` (top-left on the canvas).
* ``addition``: those of ``rts`` with shape ``(N, 2)`` (one column per
  channel) plus ``partner`` ``(N,)``: the index of the second digit.
"""

import contextlib
import contextvars
import functools
import inspect

import keras
import numpy as np
from keras import ops

from stn_keras.data.distortion_result import DistortionResult
from stn_keras.ops import DEFAULT_TPS_CONTROL_SHAPE
from stn_keras.ops import make_grid
from stn_keras.ops import bilinear_sample
from stn_keras.ops import tps_control_points
from stn_keras.validation import check_choice
from stn_keras.validation import check_image_batch
from stn_keras.validation import check_int
from stn_keras.validation import check_int_pair
from stn_keras.validation import check_number
from stn_keras.validation import check_number_pair

DISTORTIONS = (
    "rotated",
    "rts",
    "projective",
    "elastic",
    "translated",
    "cluttered",
    "addition",
)
# Images sampled per compiled call: large enough to amortise the call, small
# enough to keep the (chunk, H, W, 4 * C) gather buffer at a few hundred MB.
CHUNK_SIZE = 8192
# Corners of the normalised image square, in the order of ``corner_offsets``.
_CORNERS = np.array([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]])


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


# Set by ``distort`` for the duration of a call: whether to compile the
# sampler (``None``: only for inputs of at least a chunk).
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
    chunk = min(CHUNK_SIZE, count)
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


def _check_non_negative(name, value):
    return check_number(name, value, 0)


def _canvas(canvas_size, image_shape):
    """The canvas ``(height, width)``; ``None`` means the image's own size."""
    if canvas_size is None:
        return tuple(image_shape)
    canvas = check_int_pair(
        "canvas_size", canvas_size, 1, "height, width", allow_single=True
    )
    if canvas[0] < image_shape[0] or canvas[1] < image_shape[1]:
        raise ValueError(
            "`canvas_size` must be an int or (height, width) at least the "
            f"image size {tuple(image_shape)}. Received: canvas_size={canvas_size!r}"
        )
    return canvas


def placement_parameters(angle, scale, position_x, position_y, image_shape, canvas):
    """Affine sampling parameters ``(N, 6)`` that place a digit on a canvas.

    The digit is rotated by ``angle`` degrees (counter-clockwise on screen)
    and scaled by ``scale`` about its centre, which lands at pixel
    ``(position_x + w / 2, position_y + h / 2)`` of the canvas. The returned
    matrices map canvas coordinates to image coordinates, both normalised to
    [-1, 1] as ``affine_grid`` expects (``align_corners=False``).
    """
    height, width = image_shape
    canvas_height, canvas_width = canvas
    radians = np.deg2rad(np.asarray(angle, dtype=np.float64))
    cosine, sine = np.cos(radians), np.sin(radians)
    scale = np.asarray(scale, dtype=np.float64)
    # The inverse rotation, divided by the scale, in pixel units.
    inverse = np.stack(
        [np.stack([cosine, -sine], -1), np.stack([sine, cosine], -1)], -2
    ) / scale[..., None, None]
    to_image = np.array([2.0 / width, 2.0 / height])[:, None]
    from_canvas = np.diag([canvas_width / 2.0, canvas_height / 2.0])
    offset = np.stack(
        [
            canvas_width / 2.0 - (np.asarray(position_x) + width / 2.0),
            canvas_height / 2.0 - (np.asarray(position_y) + height / 2.0),
        ],
        -1,
    )
    linear = to_image * inverse @ from_canvas
    translation = to_image[None, :, 0] * np.einsum("nij,nj->ni", inverse, offset)
    return np.concatenate([linear, translation[..., None]], -1).reshape(-1, 6)


def _draw_placement(rng, count, image_shape, canvas, rotation_range, scale_range, integer):
    angle = rng.uniform(*rotation_range, size=count)
    scale = rng.uniform(*scale_range, size=count)
    room_y, room_x = canvas[0] - image_shape[0], canvas[1] - image_shape[1]
    if integer:
        position_x = rng.integers(0, room_x + 1, size=count).astype(np.float64)
        position_y = rng.integers(0, room_y + 1, size=count).astype(np.float64)
    else:
        position_x = rng.uniform(0, room_x, size=count)
        position_y = rng.uniform(0, room_y, size=count)
    return {
        "angle": angle,
        "scale": scale,
        "position_x": position_x,
        "position_y": position_y,
    }


def _place(images, rng, canvas_size, rotation_range, scale_range, integer=False):
    """Rotates, scales and places each digit at a random canvas position."""
    rotation_range = check_number_pair("rotation_range", rotation_range)
    scale_range = check_number_pair("scale_range", scale_range, minimum=1e-6)
    image_shape = images.shape[1:3]
    canvas = _canvas(canvas_size, image_shape)
    drawn = _draw_placement(
        rng, len(images), image_shape, canvas, rotation_range, scale_range, integer
    )
    theta = placement_parameters(**drawn, image_shape=image_shape, canvas=canvas)
    return warp(images, "affine", theta, canvas), drawn


def rotated(images, rng, rotation_range=(-90.0, 90.0)):
    """R: rotation uniform in ``rotation_range`` degrees, same image size."""
    output, drawn = _place(images, rng, None, rotation_range, (1.0, 1.0))
    return output, {"angle": drawn["angle"]}


def rts(images, rng, rotation_range=(-45.0, 45.0), scale_range=(0.7, 1.2), canvas_size=42):
    """RTS: rotation, scale, then a uniformly random position on a canvas."""
    return _place(images, rng, canvas_size, rotation_range, scale_range)


def translated(images, rng, canvas_size=60):
    """T: the digit, unchanged, at a random whole-pixel position on a canvas."""
    output, drawn = _place(images, rng, canvas_size, (0.0, 0.0), (1.0, 1.0), integer=True)
    return output, {
        "position_x": drawn["position_x"].astype(np.int64),
        "position_y": drawn["position_y"].astype(np.int64),
    }


def homographies(source_points, target_points):
    """``(N, 8)`` homographies mapping each ``source`` quad onto ``target``.

    Both are ``(N, 4, 2)``; the result holds the first eight entries of the
    3x3 matrix (last entry 1), as ``projective_grid`` expects.
    """
    u, v = source_points[..., 0], source_points[..., 1]
    x, y = target_points[..., 0], target_points[..., 1]
    zeros, ones = np.zeros_like(u), np.ones_like(u)
    rows_x = np.stack([u, v, ones, zeros, zeros, zeros, -u * x, -v * x], -1)
    rows_y = np.stack([zeros, zeros, zeros, u, v, ones, -u * y, -v * y], -1)
    system = np.concatenate([rows_x, rows_y], axis=1)
    values = np.concatenate([x, y], axis=1)
    return np.linalg.solve(system, values[..., None])[..., 0]


def projective(images, rng, scale_range=(0.75, 1.0), corner_noise_std=5.0):
    """P: scale, then each corner moved by Gaussian noise (std in pixels)."""
    scale_range = check_number_pair("scale_range", scale_range, minimum=1e-6)
    corner_noise_std = _check_non_negative("corner_noise_std", corner_noise_std)
    count = len(images)
    height, width = images.shape[1:3]
    scale = rng.uniform(*scale_range, size=count)
    corner_offsets = rng.normal(0.0, corner_noise_std, size=(count, 4, 2))
    pixels_to_normalised = np.array([2.0 / width, 2.0 / height])
    # Where each image corner lands in the output, normalised.
    moved = scale[:, None, None] * _CORNERS + corner_offsets * pixels_to_normalised
    # The sampling grid maps output coordinates back to the image.
    theta = homographies(moved, np.broadcast_to(_CORNERS, moved.shape))
    output = warp(images, "projective", theta, (height, width))
    return output, {"scale": scale, "corner_offsets": corner_offsets}


def elastic(images, rng, scale_range=(0.75, 1.0), control_point_noise_std=1.5,
            control_shape=DEFAULT_TPS_CONTROL_SHAPE):
    """E: scale, then a thin-plate spline whose control points move randomly.

    The spline maps each control point ``c`` of the output to
    ``c / scale + noise`` in the image (noise Gaussian, std in pixels), so it
    is the scaling plus a smooth random deformation: a thin-plate spline
    reproduces the affine part exactly.
    """
    scale_range = check_number_pair("scale_range", scale_range, minimum=1e-6)
    noise_std = _check_non_negative("control_point_noise_std", control_point_noise_std)
    count = len(images)
    height, width = images.shape[1:3]
    control = tps_control_points(control_shape)
    scale = rng.uniform(*scale_range, size=count)
    control_point_offsets = rng.normal(0.0, noise_std, size=(count, len(control), 2))
    pixels_to_normalised = np.array([2.0 / width, 2.0 / height])
    offsets = (
        control * (1.0 / scale[:, None, None] - 1.0)
        + control_point_offsets * pixels_to_normalised
    )
    output = warp(
        images, "tps", offsets.reshape(count, -1), (height, width), control_shape
    )
    return output, {"scale": scale, "control_point_offsets": control_point_offsets}


def _other_indices(rng, count, shape, pool_size, exclude_self):
    """Random indices into a pool of ``pool_size``, never the image's own."""
    if not exclude_self or pool_size < 2:
        return rng.integers(0, pool_size, size=shape)
    own = np.arange(count).reshape((count,) + (1,) * (len(shape) - 1))
    return (own + rng.integers(1, pool_size, size=shape)) % pool_size


def cluttered(images, rng, canvas_size=60, num_clutter_patches=6, clutter_patch_size=6,
              clutter_images=None):
    """TC: ``translated`` plus square patches cropped from other digits.

    Each patch is cropped at a uniformly random place of a random other
    image of ``clutter_images`` (the batch itself by default) and put at a
    uniformly random place of the canvas; overlapping pixels keep the
    brighter value, so the result is exactly the digit and its patches.
    """
    num_clutter_patches = check_int("num_clutter_patches", num_clutter_patches, 0)
    source = images if clutter_images is None else np.asarray(clutter_images)
    size = clutter_patch_size
    if (
        not isinstance(size, int)
        or size < 1
        or size > min(source.shape[1:3])
        or source.ndim != 4
        or source.shape[-1] != images.shape[-1]
        or len(source) == 0
    ):
        raise ValueError(
            "`clutter_patch_size` must be an int from 1 to the clutter images' "
            "size, and `clutter_images` a non-empty NHWC array with the "
            f"images' channels. Received: clutter_patch_size={size!r}, "
            f"clutter_images.shape={source.shape}"
        )
    output, drawn = translated(images, rng, canvas_size)
    count, patches = len(images), num_clutter_patches
    canvas_height, canvas_width = output.shape[1:3]
    drawn["patch_source"] = _other_indices(
        rng, count, (count, patches), len(source), exclude_self=clutter_images is None
    )
    drawn["patch_crop_x"] = rng.integers(0, source.shape[2] - size + 1, size=(count, patches))
    drawn["patch_crop_y"] = rng.integers(0, source.shape[1] - size + 1, size=(count, patches))
    drawn["patch_x"] = rng.integers(0, canvas_width - size + 1, size=(count, patches))
    drawn["patch_y"] = rng.integers(0, canvas_height - size + 1, size=(count, patches))
    output = paste_patches(output, source, drawn, size)
    return output, drawn


def paste_patches(canvases, source, drawn, size):
    """Puts the patches described by ``drawn`` on ``canvases`` (brighter wins)."""
    canvases = canvases.copy()
    offsets = np.arange(size)
    rows = np.arange(len(canvases))[:, None, None]
    for patch in range(drawn["patch_source"].shape[1]):
        crop_rows = drawn["patch_crop_y"][:, patch, None, None] + offsets[None, :, None]
        crop_columns = drawn["patch_crop_x"][:, patch, None, None] + offsets[None, None, :]
        crops = source[drawn["patch_source"][:, patch, None, None], crop_rows, crop_columns]
        target_rows = drawn["patch_y"][:, patch, None, None] + offsets[None, :, None]
        target_columns = drawn["patch_x"][:, patch, None, None] + offsets[None, None, :]
        canvases[rows, target_rows, target_columns] = np.maximum(
            canvases[rows, target_rows, target_columns], crops
        )
    return canvases


def addition(images, rng, labels, rotation_range=(-45.0, 45.0), scale_range=(0.7, 1.2),
             canvas_size=42):
    """Two digits, each RTS-distorted on its own channel; label is their sum."""
    if images.shape[-1] != 1:
        raise ValueError(
            "`addition` needs single-channel digits; it puts two of them on "
            f"two channels. Received: images.shape={images.shape}"
        )
    count = len(images)
    partner = _other_indices(rng, count, (count,), count, exclude_self=True)
    pairs = np.concatenate([images, images[partner]])
    output, drawn = rts(pairs, rng, rotation_range, scale_range, canvas_size)
    output = np.concatenate([output[:count], output[count:]], axis=-1)
    drawn = {name: np.stack([value[:count], value[count:]], -1) for name, value in drawn.items()}
    drawn["partner"] = partner
    return output, labels + labels[partner], drawn


_GENERATORS = {
    "rotated": rotated,
    "rts": rts,
    "projective": projective,
    "elastic": elastic,
    "translated": translated,
    "cluttered": cluttered,
    "addition": addition,
}


def distortion_parameters(distortion):
    """The names and paper defaults of the parameters of ``distortion``."""
    check_distortion(distortion)
    signature = inspect.signature(_GENERATORS[distortion])
    return {
        name: parameter.default
        for name, parameter in signature.parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


def check_distortion(distortion):
    check_choice("distortion", distortion, DISTORTIONS, allow_none=True)


def distort(images, distortion, seed=0, labels=None, compile_sampler=None, **params):
    """Applies a paper distortion to a batch of images.

    Args:
        images: NHWC array (uint8 0..255, or float).
        distortion: one of ``DISTORTIONS``.
        seed: an int or a sequence of ints (``numpy.random.default_rng``);
            the same seed gives the same output.
        labels: int labels of ``images``; required by ``addition``, passed
            through unchanged by the others.
        compile_sampler: compile the sampler with the backend's compiler
            (XLA, ``jax.jit``): worth it for large inputs or many calls of
            one batch shape. ``None`` compiles for inputs of at least
            ``CHUNK_SIZE`` images.
        **params: the distortion's parameters (see ``distortion_parameters``);
            the defaults are the paper's.

    Returns:
        A ``DistortionResult`` with ``images`` (uint8 for uint8 input),
        ``labels`` and the ``parameters`` drawn (see the module docstring).
    """
    check_distortion(distortion)
    allowed = distortion_parameters(distortion)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"Unknown parameter(s) {unknown} for distortion {distortion!r}. "
            f"Expected some of {sorted(allowed)}. Received: {params!r}"
        )
    images, labels = check_image_batch(images, labels)
    if distortion == "addition" and labels is None:
        raise ValueError("Distortion 'addition' needs `labels`: its label is the sum.")
    rng = np.random.default_rng(seed)
    with sampler_compilation(compile_sampler):
        if distortion == "addition":
            output, labels, drawn = addition(images, rng, labels, **params)
        else:
            output, drawn = _GENERATORS[distortion](images, rng, **params)
    return DistortionResult(images=output, labels=labels, parameters=drawn)
