"""Differentiable bilinear sampling, as ``torch.nn.functional.grid_sample``.

The semantics follow PyTorch's ``grid_sample(mode="bilinear")`` exactly,
values and gradients:

* normalised coordinates become pixel coordinates as
  ``(x + 1) / 2 * (W - 1)`` (``align_corners=True``) or
  ``((x + 1) * W - 1) / 2`` (``align_corners=False``);
* ``padding_mode="border"`` clamps pixel coordinates into the image and
  ``"reflection"`` reflects them at the image edges before clamping; the
  gradient of the clamp is zero at and beyond the edges;
* the bilinear weights come from the unclamped floor of the coordinates, and
  corners outside the image read as zero (only the gather indices are
  clamped, so the identity grid returns the input exactly, last row and
  column included).

To keep the gather cheap, the image is zero-padded by two pixels and its four
bilinear neighbours are packed next to each other along the channel axis,
so each output pixel needs one gather of ``4 * channels`` values instead of
four gathers, and the backward pass one scatter instead of four.
"""

import keras
from keras import ops

PADDING_MODES = ("zeros", "border", "reflection")
DATA_FORMATS = ("channels_last", "channels_first")
# Pixels of zero padding on each side. Corner indices are clamped into
# [-PAD, size - 1 + PAD - 1] so that a corner outside the image always lands
# on padding and reads zero, whatever its distance from the image.
PAD = 2


def validate_padding_mode(padding_mode):
    if padding_mode not in PADDING_MODES:
        raise ValueError(
            f"Unknown padding mode. Expected one of {PADDING_MODES}. "
            f"Received: padding_mode={padding_mode!r}"
        )
    return padding_mode


def validate_data_format(data_format):
    data_format = data_format or keras.config.image_data_format()
    if data_format not in DATA_FORMATS:
        raise ValueError(
            f"Unknown data format. Expected one of {DATA_FORMATS} or None. "
            f"Received: data_format={data_format!r}"
        )
    return data_format


def _unnormalise(coordinate, size, align_corners):
    if align_corners:
        return (coordinate + 1.0) * (0.5 * (size - 1))
    return ((coordinate + 1.0) * size - 1.0) * 0.5


def _clip_with_zero_gradient_at_edges(coordinate, size):
    """Clamps into ``[0, size - 1]``; like torch, the edges pass no gradient."""
    upper = float(size - 1)
    inside = ops.logical_and(coordinate > 0.0, coordinate < upper)
    clamped = ops.where(coordinate >= upper, upper, 0.0)
    return ops.where(inside, coordinate, ops.cast(clamped, coordinate.dtype))


def _reflect(coordinate, twice_low, twice_high):
    """Reflects ``coordinate`` into ``[twice_low / 2, twice_high / 2]``."""
    if twice_low == twice_high:
        return ops.zeros_like(coordinate)
    low = twice_low / 2.0
    span = (twice_high - twice_low) / 2.0
    shifted = coordinate - low
    # Like torch, the point exactly on the mirror counts as inside (+1).
    sign = ops.where(shifted < 0.0, -1.0, 1.0)
    distance = shifted * ops.cast(sign, shifted.dtype)
    flips = ops.stop_gradient(ops.floor(distance / span))
    extra = distance - flips * span
    even = ops.equal(ops.mod(flips, 2.0), 0.0)
    return ops.where(even, extra + low, span - extra + low)


def _source_coordinate(coordinate, size, padding_mode, align_corners):
    coordinate = _unnormalise(coordinate, size, align_corners)
    if padding_mode == "reflection":
        if align_corners:
            coordinate = _reflect(coordinate, 0, 2 * (size - 1))
        else:
            coordinate = _reflect(coordinate, -1, 2 * size - 1)
    if padding_mode in ("border", "reflection"):
        coordinate = _clip_with_zero_gradient_at_edges(coordinate, size)
    return coordinate


def _corner_index(floor_coordinate, size):
    """Top/left corner index in the padded image, safe for NaN and inf."""
    # A NaN coordinate yields NaN weights, so its output is NaN; its index
    # only has to be valid.
    safe = ops.where(ops.isnan(floor_coordinate), -PAD, floor_coordinate)
    return ops.cast(ops.clip(safe, -PAD, size), "int32") + PAD


def _neighbourhoods(images):
    """``(B, H + 3, W + 3, 4C)``: each pixel's 2x2 neighbourhood, packed."""
    padded = ops.pad(images, ((0, 0), (PAD, PAD), (PAD, PAD), (0, 0)))
    return ops.concatenate(
        [
            padded[:, :-1, :-1],
            padded[:, :-1, 1:],
            padded[:, 1:, :-1],
            padded[:, 1:, 1:],
        ],
        axis=-1,
    )


def _check_shapes(images, grid):
    if len(images.shape) != 4:
        raise ValueError(
            "`images` must be a rank-4 tensor (batch, height, width, "
            "channels) in channels_last or (batch, channels, height, width) "
            f"in channels_first. Received: images.shape={tuple(images.shape)}"
        )
    if len(grid.shape) != 4 or grid.shape[-1] != 2:
        raise ValueError(
            "`grid` must have shape (batch, height, width, 2) with (x, y) "
            f"in its last axis. Received: grid.shape={tuple(grid.shape)}"
        )
    images_batch, grid_batch = images.shape[0], grid.shape[0]
    if images_batch is not None and grid_batch is not None:
        if images_batch != grid_batch:
            raise ValueError(
                "`images` and `grid` must have the same batch size. Received: "
                f"images.shape={tuple(images.shape)}, "
                f"grid.shape={tuple(grid.shape)}"
            )


def bilinear_sample(
    images,
    grid,
    padding_mode="zeros",
    align_corners=False,
    data_format="channels_last",
):
    """Samples ``images`` at ``grid`` with bilinear interpolation.

    Identical to ``torch.nn.functional.grid_sample(images, grid,
    mode="bilinear", padding_mode=..., align_corners=...)`` (with the layout
    of ``images`` given by ``data_format``), and differentiable with respect
    to both ``images`` and ``grid``.

    Args:
        images: ``(batch, height, width, channels)`` (``channels_last``) or
            ``(batch, channels, height, width)`` (``channels_first``).
        grid: ``(batch, out_height, out_width, 2)``: ``(x, y)`` source
            coordinates in ``[-1, 1]``, as made by the grid generators.
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``: what
            samples outside the image read.
        align_corners: the convention of the grid (see ``affine_grid``).
        data_format: ``"channels_last"``, ``"channels_first"`` or ``None``
            for Keras' configured image data format.

    Returns:
        The sampled images, ``(batch, out_height, out_width, channels)`` in
        the layout of ``data_format``. The dtype is that of ``images`` if it
        is floating, else that of ``grid``. Coordinates are computed in at
        least float32, whatever the dtype of ``images``.
    """
    padding_mode = validate_padding_mode(padding_mode)
    data_format = validate_data_format(data_format)
    images = ops.convert_to_tensor(images)
    grid = ops.convert_to_tensor(grid)
    _check_shapes(images, grid)
    if data_format == "channels_first":
        images = ops.transpose(images, (0, 2, 3, 1))

    coordinate_dtype = keras.backend.standardize_dtype(grid.dtype)
    if coordinate_dtype != "float64":
        coordinate_dtype = "float32"
    grid = ops.cast(grid, coordinate_dtype)
    images_dtype = keras.backend.standardize_dtype(images.dtype)
    output_dtype = images_dtype if "float" in images_dtype else coordinate_dtype
    images = ops.cast(images, output_dtype)

    batch, height, width, channels = ops.shape(images)
    out_height, out_width = ops.shape(grid)[1], ops.shape(grid)[2]
    x = _source_coordinate(grid[..., 0], width, padding_mode, align_corners)
    y = _source_coordinate(grid[..., 1], height, padding_mode, align_corners)

    x0 = ops.stop_gradient(ops.floor(x))
    y0 = ops.stop_gradient(ops.floor(y))
    right = x - x0
    down = y - y0
    left = 1.0 - right
    up = 1.0 - down
    weights = ops.stack(
        [up * left, up * right, down * left, down * right], axis=-1
    )

    padded_width = width + 2 * PAD - 1
    padded_area = (height + 2 * PAD - 1) * padded_width
    batch_offset = ops.reshape(ops.arange(batch, dtype="int32"), (-1, 1, 1))
    flat_index = (
        batch_offset * padded_area
        + _corner_index(y0, height) * padded_width
        + _corner_index(x0, width)
    )
    neighbourhoods = ops.reshape(_neighbourhoods(images), (-1, 4 * channels))
    corners = ops.take(neighbourhoods, ops.reshape(flat_index, (-1,)), axis=0)
    corners = ops.reshape(corners, (batch, out_height, out_width, 4, channels))
    weights = ops.cast(weights, output_dtype)
    output = ops.sum(corners * weights[..., None], axis=-2)
    if data_format == "channels_first":
        output = ops.transpose(output, (0, 3, 1, 2))
    return output
