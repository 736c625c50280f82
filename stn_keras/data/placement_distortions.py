"""R, RTS, T, TC and addition: the digit placed on a canvas by an affine map.

The paper's distortions (Jaderberg et al. 2015, appendix A.4) that rotate,
scale and move the digit as a whole: each draws a placement in numpy from
``rng`` (``placement.placement_parameters``) and samples it with
``warping.warp``; cluttered adds patches of other digits, addition puts two
digits on two channels. Each returns the distorted images and the
parameters drawn (described in ``distortions``).
"""

import numpy as np

from stn_keras.data.placement import placement_parameters
from stn_keras.data.warping import warp
from stn_keras.validation import check_int
from stn_keras.validation import check_int_pair
from stn_keras.validation import check_number_pair


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
        or (len(source) == 0 and len(images))
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
