"""Training-time augmentation of natural images (traffic signs and the like).

The paper's distortions (``distortions.py``) make the MNIST *tasks*; this is
the other kind of randomness: small changes of pose and lighting drawn
afresh for every training batch so that a model that would memorise a small
data set (GTSRB's 1,300 physical signs) sees new pictures of them instead.

Each image is rotated, scaled and shifted about its centre by a random
affine map, optionally bent by a small random thin-plate spline (elastic
jitter: new handwriting of the same digit), sampled bilinearly once with
the library's own grid generator and sampler, with ``padding_mode="border"``
by default so no black corners appear; then its contrast and brightness are
jittered. Everything is drawn in numpy from ``seed`` before sampling: the
same seed gives the same pictures on every backend. No flips: they change a
sign's meaning.
"""

import numpy as np

from stn_keras.data.placement import placement_parameters
from stn_keras.data.warping import sampler_compilation
from stn_keras.data.warping import warp
from stn_keras.ops import DEFAULT_TPS_CONTROL_SHAPE
from stn_keras.ops import check_padding_mode
from stn_keras.ops import tps_control_points
from stn_keras.validation import check_image_batch
from stn_keras.validation import check_int_pair
from stn_keras.validation import check_number
from stn_keras.validation import check_number_pair

# The defaults: mild enough that every sign stays recognisable and inside
# the picture (a 10% shift of a 32x32 image is 3.2 pixels).
AUGMENTATION_DEFAULTS = {
    "rotation_range": (-10.0, 10.0),
    "scale_range": (0.9, 1.1),
    "translation_range": 0.1,
    "brightness_range": 0.1,
    "contrast_range": (0.7, 1.3),
    "padding_mode": "border",
    # No elastic jitter unless asked for: a sign's shape is its meaning.
    "elastic_noise_std": 0.0,
    "elastic_control_shape": DEFAULT_TPS_CONTROL_SHAPE,
}


def _fraction(name, value):
    return check_number(name, value, 0, 1)


_CHECKS = {
    "rotation_range": lambda name, value: check_number_pair(name, value, -180, 180),
    "scale_range": lambda name, value: check_number_pair(name, value, 1e-3),
    "translation_range": _fraction,
    "brightness_range": _fraction,
    "contrast_range": lambda name, value: check_number_pair(name, value, 0),
    "padding_mode": lambda name, value: check_padding_mode(value),
    "elastic_noise_std": lambda name, value: check_number(name, value, 0),
    "elastic_control_shape": lambda name, value: check_int_pair(
        name, value, 2, "rows, columns of the control lattice"
    ),
}


def check_augmentation_options(options):
    """The full set of augmentation options: ``options`` over the defaults.

    Args:
        options: a mapping of some of :data:`AUGMENTATION_DEFAULTS`' keys.

    Returns:
        A dict with every option, checked and normalised (ranges as float
        pairs).

    Raises:
        ValueError: an unknown option, or a value out of its range.
    """
    if not isinstance(options, dict):
        raise ValueError(
            f"Augmentation options must be a mapping. Received: {options!r}"
        )
    unknown = sorted(set(options) - set(AUGMENTATION_DEFAULTS))
    if unknown:
        raise ValueError(
            f"Unknown augmentation option(s) {unknown}. Expected some of "
            f"{sorted(AUGMENTATION_DEFAULTS)}. Received: {options!r}"
        )
    merged = {**AUGMENTATION_DEFAULTS, **options}
    return {name: _CHECKS[name](name, value) for name, value in merged.items()}


def draw_augmentation(rng, count, image_shape, options):
    """Draws the parameters of ``count`` augmentations (checked ``options``).

    Returns a dict of arrays, one value per image: ``angle`` (degrees,
    counter-clockwise), ``scale``, ``shift_x``, ``shift_y`` (pixels),
    ``contrast`` (factor about the image's mean) and ``brightness``
    (added, as a fraction of full scale); with a positive
    ``elastic_noise_std``, also ``control_point_offsets`` ``(N, K, 2)``:
    the Gaussian move of each thin-plate-spline control point as
    ``(dx, dy)`` pixels.
    """
    height, width = image_shape
    translation = options["translation_range"]
    brightness = options["brightness_range"]
    drawn = {
        "angle": rng.uniform(*options["rotation_range"], size=count),
        "scale": rng.uniform(*options["scale_range"], size=count),
        "shift_x": rng.uniform(-translation, translation, size=count) * width,
        "shift_y": rng.uniform(-translation, translation, size=count) * height,
        "contrast": rng.uniform(*options["contrast_range"], size=count),
        "brightness": rng.uniform(-brightness, brightness, size=count),
    }
    # Drawn last and only when asked for, so the other draws of a seed are
    # the same with or without the jitter.
    if options["elastic_noise_std"] > 0:
        rows, columns = options["elastic_control_shape"]
        drawn["control_point_offsets"] = rng.normal(
            0.0, options["elastic_noise_std"], size=(count, rows * columns, 2)
        )
    return drawn


def elastic_offsets(theta, control_point_offsets, image_shape, control_shape):
    """Thin-plate-spline offsets ``(N, 2K)``: an affine map, then a jitter.

    A thin-plate spline reproduces affine maps exactly, so the spline whose
    control points ``c`` move to ``theta(c)`` plus the jitter (pixels,
    ``(N, K, 2)``) is the affine pose followed by a smooth bend: one
    sampling for both.
    """
    height, width = image_shape
    control = tps_control_points(control_shape)
    matrices = np.asarray(theta, np.float64).reshape(-1, 2, 3)
    posed = np.einsum("nij,kj->nki", matrices[..., :2], control) + matrices[:, None, :, 2]
    pixels_to_normalised = np.array([2.0 / width, 2.0 / height])
    offsets = posed - control + control_point_offsets * pixels_to_normalised
    return offsets.reshape(len(matrices), -1)


def adjust_lighting(images, contrast, brightness):
    """Scales each image's contrast about its mean and adds a brightness.

    Args:
        images: NHWC, uint8 (0..255) or float (0..1).
        contrast: ``(N,)`` factors; 1 keeps the image.
        brightness: ``(N,)`` offsets as a fraction of full scale.

    Returns:
        The adjusted images, clipped to the full scale, in ``images``' dtype
        (rounded for uint8).
    """
    full_scale = 255.0 if images.dtype == np.uint8 else 1.0
    pixels = images.astype(np.float32)
    mean = pixels.mean(axis=(1, 2, 3), keepdims=True)
    factor = np.asarray(contrast, np.float32).reshape(-1, 1, 1, 1)
    offset = np.asarray(brightness, np.float32).reshape(-1, 1, 1, 1) * full_scale
    adjusted = np.clip((pixels - mean) * factor + mean + offset, 0.0, full_scale)
    if images.dtype == np.uint8:
        return np.round(adjusted).astype(np.uint8)
    return adjusted


def augment(images, seed=0, compile_sampler=None, **options):
    """Randomly re-poses and re-lights a batch of images.

    Args:
        images: NHWC array, uint8 (0..255) or float (0..1).
        seed: an int or a sequence of ints (``numpy.random.default_rng``);
            the same seed gives the same output.
        compile_sampler: compile the sampler with the backend's compiler
            (worth it for many calls of one batch shape, as in training);
            ``None`` compiles for large inputs only.
        **options: some of :data:`AUGMENTATION_DEFAULTS`:
            ``rotation_range`` (degrees), ``scale_range`` (factors; above 1
            enlarges), ``translation_range`` (largest shift along each axis,
            as a fraction of the image's size), ``brightness_range`` (largest
            offset, as a fraction of full scale), ``contrast_range``
            (factors about each image's mean), ``padding_mode`` (what is
            seen beyond the edge: ``"border"``, ``"zeros"`` or
            ``"reflection"``), ``elastic_noise_std`` (std in pixels of the
            random move of each thin-plate-spline control point; 0, the
            default, bends nothing), ``elastic_control_shape`` (rows,
            columns of that control lattice over the image).

    Returns:
        The augmented images, same shape and dtype.

    Example:

    >>> images = np.zeros((4, 32, 32, 3), np.uint8)
    >>> augment(images, seed=[0, 1], rotation_range=(-5, 5)).shape
    (4, 32, 32, 3)
    """
    options = check_augmentation_options(options)
    images, _ = check_image_batch(images, None)
    image_shape = images.shape[1:3]
    drawn = draw_augmentation(
        np.random.default_rng(seed), len(images), image_shape, options
    )
    # An image shifted by (dx, dy) has its top-left corner there on a canvas
    # of its own size.
    theta = placement_parameters(
        drawn["angle"],
        drawn["scale"],
        drawn["shift_x"],
        drawn["shift_y"],
        image_shape,
        image_shape,
    )
    padding_mode = options["padding_mode"]
    with sampler_compilation(compile_sampler):
        if "control_point_offsets" in drawn:
            control_shape = options["elastic_control_shape"]
            offsets = elastic_offsets(
                theta, drawn["control_point_offsets"], image_shape, control_shape
            )
            posed = warp(images, "tps", offsets, image_shape, control_shape, padding_mode)
        else:
            posed = warp(images, "affine", theta, image_shape, padding_mode=padding_mode)
    return adjust_lighting(posed, drawn["contrast"], drawn["brightness"])
