"""Differentiable sampling, as ``torch.nn.functional.grid_sample``.

``grid_sample`` reads images ``(B, H, W, C)`` at a grid ``(B, h, w, 2)`` of
``(x, y)`` points, or volumes ``(B, D, H, W, C)`` at a grid
``(B, d, h, w, 3)`` of ``(x, y, z)`` points, and follows PyTorch's
``grid_sample`` exactly, values and gradients, for every mode, padding mode
and ``align_corners``:

* normalised coordinates become pixel coordinates as
  ``(x + 1) / 2 * (W - 1)`` (``align_corners=True``) or
  ``((x + 1) * W - 1) / 2`` (``align_corners=False``);
* ``"bilinear"`` (trilinear on volumes) and ``"nearest"``: with
  ``padding_mode="border"`` the pixel coordinates are clamped into the image,
  with ``"reflection"`` reflected at its edges and then clamped; the clamp
  passes no gradient at and beyond the edges. The linear weights come from
  the floor of the (clamped) coordinates and corners outside the image read
  zero; ``"nearest"`` rounds half to even and passes no gradient to the grid;
* ``"bicubic"`` (images only): torch's cubic convolution (``A = -0.75``) on
  the 4x4 neighbourhood of the unclamped coordinate; the padding mode applies
  to each of the 16 taps (clamped or reflected onto an image pixel, or zero
  outside the image).

Implementation: the image is zero-padded by ``PAD`` pixels on each side, so
that any tap outside the image, clamped into the padding, reads zero whatever
its distance. For the linear modes each table row packs a pixel's whole
``2^n`` neighbourhood along the channel axis, so each output point is one
gather. Sampling is two stages, reading the taps and weighing them; in a
TensorFlow graph each runs as a compiled XLA computation (``_stage``), the
fastest form measured there (docs/BENCHMARKS.md, issue 16). On the PyTorch
backend the native ``torch.nn.functional.grid_sample`` is called: the same
function by construction, and 3-8x faster than composed ops there.
"""

import functools
import itertools

import keras
from keras import ops

from stn_keras.ops.grids import normalized_to_pixel
from stn_keras.ops.tensorflow_speedups import speedups_apply
from stn_keras.validation import check_choice
from stn_keras.validation import check_data_format

MODES = ("nearest", "bilinear", "bicubic")
PADDING_MODES = ("zeros", "border", "reflection")
# Pixels of zero padding on each side. Tap indices are clamped into the
# padding, so that a tap outside the image always reads zero.
PAD = 2
# torch's cubic convolution constant (Keys' kernel with a = -0.75).
CUBIC_A = -0.75


def check_mode(mode):
    """Returns ``mode`` if it names a sampling mode, else raises."""
    return check_choice("mode", mode, MODES, "sampling mode")


def check_padding_mode(padding_mode):
    """Returns ``padding_mode`` if it names a padding mode, else raises."""
    return check_choice("padding_mode", padding_mode, PADDING_MODES, "padding mode")


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


def _apply_padding(coordinate, size, padding_mode, align_corners):
    """Pixel coordinate moved into the image by ``border``/``reflection``."""
    if padding_mode == "reflection":
        if align_corners:
            coordinate = _reflect(coordinate, 0, 2 * (size - 1))
        else:
            coordinate = _reflect(coordinate, -1, 2 * size - 1)
    if padding_mode in ("border", "reflection"):
        coordinate = _clip_with_zero_gradient_at_edges(coordinate, size)
    return coordinate


def _padded_index(index, size, taps):
    """Integer index into the padded image, safe for NaN and inf.

    Indices before or after the image land on its zero padding. A NaN
    coordinate gives NaN weights (so a NaN output in the linear and cubic
    modes); its index only has to be valid. ``taps`` is 2 where the row read
    also holds the next pixel along that axis.
    """
    safe = ops.where(ops.isnan(index), -PAD, index)
    return ops.cast(ops.clip(safe, -PAD, size + PAD - taps), "int32") + PAD


def _neighbourhood_table(images, packed):
    """Flat ``(rows, corners * C)`` table of the padded pixels.

    With ``packed``, each row holds a pixel's whole linear neighbourhood
    (``2^n`` corners: the pixel and its successors along every spatial axis,
    corners in ``itertools.product`` order over the axes), so one gather
    reads everything an output point needs; else a row is one pixel.
    Returns the table and the spatial shape its rows enumerate (per batch
    entry, row-major).
    """
    spatial_rank = len(images.shape) - 2
    padded = ops.pad(images, ((0, 0),) + ((PAD, PAD),) * spatial_rank + ((0, 0),))
    if packed:
        corners = [
            padded[(slice(None),) + tuple(slice(step, step - 1 or None) for step in steps)]
            for steps in itertools.product((0, 1), repeat=spatial_rank)
        ]
        padded = ops.concatenate(corners, axis=-1)
    shape = ops.shape(padded)
    return ops.reshape(padded, (-1, shape[-1])), shape[1:-1]


def _flat_index(indices, table_shape, batch):
    """Row of the table for per-axis ``indices`` (each ``(B, ...)``)."""
    flat = indices[0]
    for index, size in zip(indices[1:], table_shape[1:]):
        flat = flat * size + index
    volume = 1
    for size in table_shape:
        volume = volume * size
    batch_offset = ops.arange(batch, dtype="int32") * volume
    return flat + ops.reshape(batch_offset, (-1,) + (1,) * (len(flat.shape) - 1))


def _cubic_coefficients(t):
    """torch's four cubic-convolution weights for taps at -1, 0, 1, 2."""

    def near(x):  # |x| <= 1
        return ((CUBIC_A + 2.0) * x - (CUBIC_A + 3.0)) * x * x + 1.0

    def far(x):  # 1 < |x| < 2
        return ((CUBIC_A * x - 5.0 * CUBIC_A) * x + 8.0 * CUBIC_A) * x - 4.0 * CUBIC_A

    return [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]


def _taps(grid, sizes, mode, padding_mode, align_corners):
    """Per spatial axis: the tap indices into the padded image and weights.

    Returns ``(indices, weights)``: ``indices[axis]`` and ``weights[axis]``
    are lists over the taps of that axis (the weights of ``"nearest"`` are
    ``None``; the linear modes give the floor index only, their table rows
    holding the whole neighbourhood).
    """
    spatial_rank = len(sizes)
    # The last axis of the grid is (x, y[, z]): x runs along the last
    # spatial axis (width), so the axes are read in reverse.
    coordinates = [grid[..., spatial_rank - 1 - axis] for axis in range(spatial_rank)]
    indices, weights = [], []
    for coordinate, size in zip(coordinates, sizes):
        pixel = normalized_to_pixel(coordinate, size, align_corners)
        if mode == "bicubic":
            floor = ops.stop_gradient(ops.floor(pixel))
            axis_indices = []
            for offset in (-1.0, 0.0, 1.0, 2.0):
                # Each tap is moved into the image on its own, as torch does.
                tap = _apply_padding(
                    floor + offset, size, padding_mode, align_corners
                )
                tap = ops.stop_gradient(ops.round(tap))
                axis_indices.append(_padded_index(tap, size, 1))
            indices.append(axis_indices)
            weights.append(_cubic_coefficients(pixel - floor))
            continue
        pixel = _apply_padding(pixel, size, padding_mode, align_corners)
        if mode == "nearest":
            # ops.round rounds half to even on every backend, as torch.
            nearest = ops.stop_gradient(ops.round(pixel))
            indices.append([_padded_index(nearest, size, 1)])
            weights.append(None)
            continue
        floor = ops.stop_gradient(ops.floor(pixel))
        fraction = pixel - floor
        indices.append([_padded_index(floor, size, 2)])
        weights.append([1.0 - fraction, fraction])
    return indices, weights


def _read_taps(images, grid, mode, padding_mode, align_corners):
    """The pixels each output point reads: ``(B, *out, taps, C)``.

    Differentiable with respect to ``images`` only: the grid picks rows.
    """
    shape = ops.shape(images)
    batch, sizes, channels = shape[0], shape[1:-1], shape[-1]
    out_spatial = ops.shape(grid)[1:-1]
    indices, _ = _taps(grid, sizes, mode, padding_mode, align_corners)
    packed = mode == "bilinear"
    table, table_shape = _neighbourhood_table(images, packed)
    flat_indices = [
        _flat_index(list(combination), table_shape, batch)
        for combination in itertools.product(*indices)
    ]
    flat_index = ops.reshape(ops.stack(flat_indices, axis=-1), (-1,))
    values = ops.take(table, flat_index, axis=0)
    return ops.reshape(values, (batch, *out_spatial, -1, channels))


def _weigh_taps(values, grid, sizes, mode, padding_mode, align_corners):
    """Sum of the read pixels ``values`` weighted by the grid's fractions."""
    _, weights = _taps(grid, sizes, mode, padding_mode, align_corners)
    corner_weights = []
    for combination in itertools.product(*weights):
        weight = combination[0]
        for factor in combination[1:]:
            weight = weight * factor
        corner_weights.append(weight)
    corner_weights = ops.cast(ops.stack(corner_weights, axis=-1), values.dtype)
    return ops.sum(values * corner_weights[..., None], axis=-2)


def _check_shapes(images, grid, mode):
    rank = len(images.shape)
    if rank not in (4, 5):
        raise ValueError(
            "`images` must be a rank-4 batch of images (batch, height, width, "
            "channels) or a rank-5 batch of volumes (batch, depth, height, "
            "width, channels) (channels first with data_format="
            f"'channels_first'). Received: images.shape={tuple(images.shape)}"
        )
    axes = "(x, y)" if rank == 4 else "(x, y, z)"
    if len(grid.shape) != rank or grid.shape[-1] != rank - 2:
        raise ValueError(
            f"`grid` must have shape (batch, {'' if rank == 4 else 'depth, '}"
            f"height, width, {rank - 2}) with {axes} in its last axis for "
            f"rank-{rank} images. Received: grid.shape={tuple(grid.shape)}, "
            f"images.shape={tuple(images.shape)}"
        )
    if mode == "bicubic" and rank == 5:
        raise ValueError(
            "mode='bicubic' samples images (rank 4) only, as torch; use "
            "'bilinear' (trilinear) or 'nearest' for volumes. Received: "
            f"images.shape={tuple(images.shape)}"
        )
    images_batch, grid_batch = images.shape[0], grid.shape[0]
    if images_batch is not None and grid_batch is not None:
        if images_batch != grid_batch:
            raise ValueError(
                "`images` and `grid` must have the same batch size. Received: "
                f"images.shape={tuple(images.shape)}, "
                f"grid.shape={tuple(grid.shape)}"
            )


def _native_sampler():
    """The backend's own grid_sample (channels first), or ``None``.

    Only PyTorch has one. The tests also run the ``keras.ops`` sampler on
    PyTorch by replacing this function, so both paths are held to torch.
    """
    if keras.backend.backend() != "torch":
        return None
    import torch.nn.functional as F

    return F.grid_sample


_compiled_stages = {}


def _stage(function, compilable, **settings):
    """``function`` bound to its ``settings``, compiled where it pays.

    In a TensorFlow graph (``model.fit``, ``predict``, ``tf.function``)
    without XLA, each of the sampler's two stages runs as its own XLA
    computation, forward and backward: fused, a stage is several times
    faster than as separate graph ops, while the rest of the step keeps
    TensorFlow's oneDNN convolutions (XLA's are slower on CPU). There are two
    stages so that reading the pixels, whose gradient is a scatter into the
    images, runs its backward only when something needs the images'
    gradient (the images fed to a model are data). Inside an XLA
    computation the stages are simply inlined.
    """
    bound = functools.partial(function, **settings)
    if not (compilable and speedups_apply()):
        return bound
    import tensorflow as tf

    if tf.executing_eagerly():
        return bound
    key = (function.__name__, tuple(sorted(settings.items())))
    if key not in _compiled_stages:
        _compiled_stages[key] = _compile_with_gradient(bound)
    return _compiled_stages[key]


def _compile_with_gradient(function):
    """``function`` of tensors as one XLA computation, and its gradient as another.

    TensorFlow does not compile the gradient of a ``jit_compile`` function
    on its own; it runs it as graph ops, slower than the forward pass. The
    backward computation here is ``function``'s own automatic derivative,
    so higher-order gradients still differentiate through it.
    """
    import tensorflow as tf

    forward = tf.function(function, jit_compile=True, autograph=False)

    def vector_jacobian_product(inputs, upstream):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            output = function(*inputs)
        return tape.gradient(
            output,
            inputs,
            output_gradients=upstream,
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )

    backward = tf.function(vector_jacobian_product, jit_compile=True, autograph=False)

    @tf.custom_gradient
    def compiled(*inputs):
        def gradient(upstream):
            return backward(list(inputs), upstream)

        return forward(*inputs), gradient

    return compiled


def _keras_grid_sample(images, grid, mode, padding_mode, align_corners):
    """``keras.ops`` sampler of channels-last ``images``."""
    sizes = ops.shape(images)[1:-1]
    # Compiled stages take the image size as a setting, so it must be static.
    static = all(isinstance(size, int) for size in sizes)
    settings = {"mode": mode, "padding_mode": padding_mode, "align_corners": align_corners}
    # The grid only picks the rows read: no gradient flows to it there.
    values = _stage(_read_taps, static, **settings)(images, ops.stop_gradient(grid))
    if mode == "nearest":
        return values[..., 0, :]
    weigh = _stage(_weigh_taps, static, sizes=tuple(sizes) if static else sizes, **settings)
    return weigh(values, grid)


def grid_sample(
    images,
    grid,
    mode="bilinear",
    padding_mode="zeros",
    align_corners=False,
    data_format=None,
):
    """Samples images or volumes at a grid, as ``torch...grid_sample``.

    Identical, values and gradients (first and second order), to
    ``torch.nn.functional.grid_sample(images, grid, mode, padding_mode,
    align_corners)`` with the layout of ``images`` given by ``data_format``.

    Args:
        images: ``(batch, height, width, channels)`` or volumes ``(batch,
            depth, height, width, channels)`` (channels_last), or
            ``(batch, channels, ...)`` (channels_first).
        grid: ``(batch, out_height, out_width, 2)`` of ``(x, y)``, or for
            volumes ``(batch, out_depth, out_height, out_width, 3)`` of
            ``(x, y, z)``: source coordinates in ``[-1, 1]``, as made by the
            grid generators.
        mode: ``"bilinear"`` (trilinear on volumes), ``"nearest"`` or
            ``"bicubic"`` (images only).
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``: what
            samples outside the image read.
        align_corners: the convention of the grid (see ``affine_grid``).
        data_format: ``"channels_last"``, ``"channels_first"`` or ``None``
            for Keras' configured image data format.

    Returns:
        The sampled images, with the grid's spatial shape, in the layout of
        ``data_format``. The dtype is that of ``images`` if it is floating,
        else that of ``grid``. Coordinates are computed in at least float32,
        whatever the dtype of ``images``.

    Example:

    >>> images = np.random.rand(2, 8, 8, 3).astype("float32")
    >>> grid = affine_grid(np.tile([[1, 0, 0, 0, 1, 0]], (2, 1)), (4, 4))
    >>> tuple(grid_sample(images, grid, mode="bicubic").shape)
    (2, 4, 4, 3)
    """
    mode = check_mode(mode)
    padding_mode = check_padding_mode(padding_mode)
    data_format = check_data_format(data_format)
    images = ops.convert_to_tensor(images)
    grid = ops.convert_to_tensor(grid)
    _check_shapes(images, grid, mode)

    coordinate_dtype = keras.backend.standardize_dtype(grid.dtype)
    if coordinate_dtype != "float64":
        coordinate_dtype = "float32"
    grid = ops.cast(grid, coordinate_dtype)
    images_dtype = keras.backend.standardize_dtype(images.dtype)
    output_dtype = images_dtype if "float" in images_dtype else coordinate_dtype

    rank = len(images.shape)
    to_last = (0, *range(2, rank), 1)
    to_first = (0, rank - 1, *range(1, rank - 1))
    native = _native_sampler()
    if native is not None:
        if data_format == "channels_last":
            images = ops.transpose(images, to_first)
        output = native(
            ops.cast(images, coordinate_dtype),
            grid,
            mode=mode,
            padding_mode=padding_mode,
            align_corners=align_corners,
        )
        output = ops.cast(output, output_dtype)
        if data_format == "channels_last":
            output = ops.transpose(output, to_last)
        return output

    if data_format == "channels_first":
        images = ops.transpose(images, to_last)
    output = _keras_grid_sample(
        ops.cast(images, output_dtype), grid, mode, padding_mode, align_corners
    )
    if data_format == "channels_first":
        output = ops.transpose(output, to_first)
    return output


def bilinear_sample(
    images,
    grid,
    padding_mode="zeros",
    align_corners=False,
    data_format="channels_last",
):
    """``grid_sample(images, grid, "bilinear", ...)``; see ``grid_sample``.

    Identical to ``torch.nn.functional.grid_sample(images, grid,
    mode="bilinear", padding_mode=..., align_corners=...)``, values and
    gradients. ``data_format`` defaults to ``"channels_last"`` here.
    """
    return grid_sample(
        images,
        grid,
        mode="bilinear",
        padding_mode=padding_mode,
        align_corners=align_corners,
        data_format=data_format,
    )
