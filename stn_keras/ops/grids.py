"""Sampling-grid generators of the spatial transformer (Jaderberg et al. 2015).

Every generator maps transform parameters ``theta`` of shape
``(batch, num_parameters)`` to a sampling grid of shape
``(batch, height, width, 2)``. The last axis holds ``(x, y)`` source
coordinates normalised to ``[-1, 1]``, the convention of
``torch.nn.functional.affine_grid``: ``-1`` and ``+1`` are the centres of the
corner pixels when ``align_corners=True``, and the outer edges of the corner
pixels when ``align_corners=False``. The affine transform also has a
volumetric form: 12 parameters and an ``(x, y, z)`` grid
``(batch, depth, height, width, 3)``.

All functions use ``keras.ops`` only, so they run and differentiate on every
Keras backend. Constant parts of a grid (the target lattice, the thin-plate
spline kernel) are computed once in numpy, in float64, and embedded as
constants. No grid goes through a matmul: products with the parameters are
written out elementwise, so reduced-precision matmuls (TF32 on NVIDIA GPUs,
JAX's default precision) cannot touch them and they match torch to float32
rounding on every device.
"""

import keras
import numpy as np
from keras import ops

from stn_keras.validation import check_choice
from stn_keras.validation import check_int_pair
from stn_keras.validation import check_int_tuple

TRANSFORMS = ("affine", "attention", "similarity", "projective", "tps")
# The paper's thin-plate-spline control lattice, (rows, columns).
DEFAULT_TPS_CONTROL_SHAPE = (4, 4)


def normalized_to_pixel(coordinate, size, align_corners=False):
    """Normalised ``[-1, 1]`` coordinates -> pixel coordinates along an axis.

    Pixel ``i`` of an axis of ``size`` pixels is centred at ``i``. With
    ``align_corners=True``, ``-1`` and ``+1`` are the centres of the first
    and last pixels: ``(x + 1) / 2 * (size - 1)``. With
    ``align_corners=False``, they are the outer edges of those pixels,
    ``-0.5`` and ``size - 0.5``: ``((x + 1) * size - 1) / 2``. These are the
    conventions, and the float arithmetic, of
    ``torch.nn.functional.grid_sample``.

    Args:
        coordinate: normalised coordinates: a number, a numpy array or a
            backend tensor.
        size: the number of pixels along the axis: an int, or an array or
            tensor (of ``coordinate``'s dtype) broadcasting against it.
        align_corners: the convention, as above.

    Returns:
        Pixel coordinates of the type of ``coordinate``.
    """
    if align_corners:
        return (coordinate + 1.0) * (0.5 * (size - 1))
    return ((coordinate + 1.0) * size - 1.0) * 0.5


def pixel_to_normalized(pixel, size, align_corners=False):
    """Pixel coordinates -> normalised ``[-1, 1]`` coordinates along an axis.

    The inverse of `normalized_to_pixel`: ``2 * i / (size - 1) - 1`` with
    ``align_corners=True`` and ``(2 * i + 1) / size - 1`` with
    ``align_corners=False``. A single pixel (``size == 1``) sits at ``0``
    whatever the convention, as torch places it.

    Args:
        pixel: pixel coordinates (pixel ``i`` centred at ``i``): a number, a
            numpy array or a backend tensor.
        size: the number of pixels along the axis: an int, or a tensor
            of ``pixel``'s dtype.
        align_corners: the convention of `normalized_to_pixel`.

    Returns:
        Normalised coordinates of the type of ``pixel``.
    """
    if not align_corners:
        return (2.0 * pixel + 1.0) / size - 1.0
    span = size - 1
    span = ops.maximum(span, 1) if ops.is_tensor(span) else max(span, 1)
    # (size - 1) / span is exactly 1, or 0 for a single pixel.
    return 2.0 * pixel / span - (size - 1) / span


def _normalised_coordinates(size, align_corners):
    """Pixel-centre coordinates of an axis of ``size`` pixels, in float64."""
    return pixel_to_normalized(
        np.arange(size, dtype=np.float64), size, align_corners
    )


def spatial_rank_of(output_size):
    """2 for an image size (an int or a pair), 3 for ``(depth, height, width)``."""
    try:
        return 3 if len(output_size) == 3 else 2
    except TypeError:
        return 2


def check_output_size(output_size, spatial_rank=2, name="output_size"):
    """Returns ``output_size`` as a tuple of ``spatial_rank`` positive ints.

    ``(height, width)`` for images (an int for square), ``(depth, height,
    width)`` for volumes (an int for a cube).
    """
    meaning = "height, width" if spatial_rank == 2 else "depth, height, width"
    return check_int_tuple(
        name, output_size, spatial_rank, 1, meaning, allow_single=True
    )


def check_control_shape(control_shape):
    """Returns a thin-plate-spline control lattice shape ``(rows, columns)``."""
    return check_int_pair(
        "control_shape", control_shape, 2, "rows, columns of the control lattice"
    )


def check_transform(transform, spatial_rank=2):
    """Returns ``transform`` if it names a transform of that rank, else raises."""
    check_choice("transform", transform, TRANSFORMS)
    if spatial_rank == 3 and transform != "affine":
        raise ValueError(
            "Only the affine transform has a volumetric (3-D) form. "
            f"Received: transform={transform!r} with a 3-D output size"
        )
    return transform


def base_grid(output_size, align_corners=False):
    """Homogeneous target coordinates ``(P, n + 1)`` as ``(x, y[, z], 1)``.

    ``output_size`` is ``(height, width)`` (``P = height * width``) or
    ``(depth, height, width)``. Rows are in row-major order (x fastest), as
    the output pixels.
    """
    output_size = check_output_size(output_size, spatial_rank_of(output_size))
    axes = [_normalised_coordinates(size, align_corners) for size in output_size]
    mesh = np.meshgrid(*axes, indexing="ij")
    columns = [axis.ravel() for axis in reversed(mesh)]
    return np.stack(columns + [np.ones(mesh[0].size)], axis=-1)


def num_parameters(transform, control_shape=DEFAULT_TPS_CONTROL_SHAPE, spatial_rank=2):
    """Number of parameters the localisation network regresses."""
    check_transform(transform, spatial_rank)
    if spatial_rank == 3:
        return 12
    if transform == "tps":
        rows, columns = check_control_shape(control_shape)
        return 2 * rows * columns
    return {"affine": 6, "attention": 3, "similarity": 4, "projective": 8}[
        transform
    ]


def identity_parameters(
    transform, control_shape=DEFAULT_TPS_CONTROL_SHAPE, spatial_rank=2
):
    """Parameters for which ``transform`` samples the input unchanged."""
    check_transform(transform, spatial_rank)
    if spatial_rank == 3:
        return np.eye(3, 4, dtype=np.float32).ravel()
    if transform == "tps":
        return np.zeros(num_parameters("tps", control_shape), dtype=np.float32)
    return np.asarray(
        {
            "affine": [1, 0, 0, 0, 1, 0],
            "attention": [1, 0, 0],
            "similarity": [0, 1, 0, 0],
            "projective": [1, 0, 0, 0, 1, 0, 0, 0],
        }[transform],
        dtype=np.float32,
    )


def _as_parameter_matrix(theta, expected, name):
    """Checks the static shape of ``theta`` and returns it as ``(B, n)``."""
    theta = ops.convert_to_tensor(theta)
    if not _is_floating(theta.dtype):
        theta = ops.cast(theta, "float32")
    shape = tuple(theta.shape)
    size = shape[-1] if len(shape) == 2 else None
    if len(shape) != 2 or (size is not None and size != expected):
        raise ValueError(
            f"`theta` for the {name} transform must have shape "
            f"(batch, {expected}). Received: theta.shape={shape}"
        )
    return theta


def _is_floating(dtype):
    return "float" in keras.backend.standardize_dtype(dtype)


def _apply_homogeneous(theta_matrix, output_size, align_corners):
    """``(B, rows, n + 1)`` matrices applied to the lattice -> ``(B, *output_size, rows)``.

    The lattice is separable: its x coordinate varies along the width only,
    y along the height, z along the depth. So each column of the matrix
    multiplies one short axis of coordinates, and broadcasting the terms
    together builds the grid in two full-size additions. Written out rather
    than as a matmul: no reduced-precision matmul can round it, and the sum
    runs in the order of torch's ``(x, y[, z], 1)`` product.
    """
    spatial_rank = len(output_size)
    rows = theta_matrix.shape[1]
    points = None
    for axis in range(spatial_rank):
        # Coordinate ``axis`` of (x, y[, z]) runs along spatial axis
        # ``spatial_rank - 1 - axis`` (x along the width, the last one).
        along = spatial_rank - 1 - axis
        lattice_shape = [1] * (spatial_rank + 2)
        lattice_shape[1 + along] = output_size[along]
        coordinates = _normalised_coordinates(output_size[along], align_corners)
        column = ops.convert_to_tensor(
            coordinates.reshape(lattice_shape), theta_matrix.dtype
        )
        factor = ops.reshape(
            theta_matrix[:, :, axis], (-1,) + (1,) * spatial_rank + (rows,)
        )
        term = column * factor
        points = term if points is None else points + term
    translation = ops.reshape(
        theta_matrix[:, :, -1], (-1,) + (1,) * spatial_rank + (rows,)
    )
    return points + translation


def _to_grid(points, output_size):
    return ops.reshape(points, (-1, *output_size, len(output_size)))


def affine_grid(theta, output_size, align_corners=False):
    """Sampling grid of an affine transform, as ``torch...affine_grid``.

    Images and volumes: with ``output_size`` ``(height, width)`` theta maps
    target ``(x, y, 1)`` to source ``(x, y)``; with ``(depth, height,
    width)`` it maps ``(x, y, z, 1)`` to ``(x, y, z)``.

    Args:
        theta: ``(batch, 6)`` or ``(batch, 2, 3)`` for images, ``(batch,
            12)`` or ``(batch, 3, 4)`` for volumes: the rows of the matrix.
        output_size: ``(height, width)`` of the grid (an int for square) or
            ``(depth, height, width)``.
        align_corners: whether ``-1``/``+1`` are the centres (``True``) or the
            outer edges (``False``) of the corner pixels.

    Returns:
        Grid ``(batch, height, width, 2)`` with last axis ``(x, y)``, or
        ``(batch, depth, height, width, 3)`` with ``(x, y, z)``.
    """
    spatial_rank = spatial_rank_of(output_size)
    output_size = check_output_size(output_size, spatial_rank)
    rows, columns = spatial_rank, spatial_rank + 1
    theta = ops.convert_to_tensor(theta)
    if len(theta.shape) == 3:
        if tuple(theta.shape[1:]) != (rows, columns):
            raise ValueError(
                f"`theta` for the {spatial_rank}-D affine transform must have "
                f"shape (batch, {rows * columns}) or (batch, {rows}, "
                f"{columns}). Received: theta.shape={tuple(theta.shape)}"
            )
        theta = ops.reshape(theta, (-1, rows * columns))
    theta = _as_parameter_matrix(
        theta, rows * columns, f"{spatial_rank}-D affine"
    )
    matrix = ops.reshape(theta, (-1, rows, columns))
    return _to_grid(
        _apply_homogeneous(matrix, output_size, align_corners), output_size
    )


def attention_matrix(theta):
    """``(B, 3)`` ``(scale, tx, ty)`` -> affine ``(B, 6)``: crop, zoom, shift."""
    theta = _as_parameter_matrix(theta, 3, "attention")
    scale, translate_x, translate_y = ops.unstack(theta, num=3, axis=-1)
    zeros = ops.zeros_like(scale)
    return ops.stack(
        [scale, zeros, translate_x, zeros, scale, translate_y], axis=-1
    )


def attention_grid(theta, output_size, align_corners=False):
    """Sampling grid of the paper's attention transform.

    ``theta`` is ``(batch, 3)``: isotropic ``scale``, then ``tx``, ``ty``.
    Identity: ``(1, 0, 0)``.
    """
    return affine_grid(attention_matrix(theta), output_size, align_corners)


def similarity_matrix(theta):
    """``(B, 4)`` ``(angle, scale, tx, ty)`` -> affine ``(B, 6)``."""
    theta = _as_parameter_matrix(theta, 4, "similarity")
    angle, scale, translate_x, translate_y = ops.unstack(theta, num=4, axis=-1)
    cosine = scale * ops.cos(angle)
    sine = scale * ops.sin(angle)
    return ops.stack(
        [cosine, -sine, translate_x, sine, cosine, translate_y], axis=-1
    )


def similarity_grid(theta, output_size, align_corners=False):
    """Sampling grid of a similarity transform (rotation, scale, shift).

    ``theta`` is ``(batch, 4)``: ``angle`` in radians (counter-clockwise in
    ``(x, y)`` with y pointing down the image, i.e. clockwise on screen),
    isotropic ``scale``, ``tx``, ``ty``. Identity: ``(0, 1, 0, 0)``.
    """
    return affine_grid(similarity_matrix(theta), output_size, align_corners)


def projective_grid(theta, output_size, align_corners=False):
    """Sampling grid of a projective transform (homography).

    ``theta`` is ``(batch, 8)``: the first eight entries, row-major, of a
    3x3 matrix whose last entry is fixed to 1. Identity:
    ``(1, 0, 0, 0, 1, 0, 0, 0)``. With its last row ``(0, 0, 1)`` it is the
    affine transform of its first six entries. Target points whose
    denominator ``g x + h y + 1`` reaches zero have no image; the grid is
    then infinite or NaN there and the sampler returns NaN, never a made-up
    value.
    """
    output_size = check_output_size(output_size)
    theta = _as_parameter_matrix(theta, 8, "projective")
    ones = ops.ones_like(theta[:, :1])
    matrix = ops.reshape(ops.concatenate([theta, ones], axis=-1), (-1, 3, 3))
    points = _apply_homogeneous(matrix, output_size, align_corners)
    return _to_grid(points[..., :2] / points[..., 2:], output_size)


def tps_control_points(control_shape=DEFAULT_TPS_CONTROL_SHAPE):
    """The ``(rows * columns, 2)`` control lattice ``(x, y)`` over [-1, 1]."""
    rows, columns = check_control_shape(control_shape)
    grid_x, grid_y = np.meshgrid(
        np.linspace(-1.0, 1.0, columns), np.linspace(-1.0, 1.0, rows)
    )
    return np.stack([grid_x.ravel(), grid_y.ravel()], axis=-1)


def _tps_kernel(squared_distance):
    """``U(r) = r^2 log r^2`` with ``U(0) = 0``."""
    safe = np.where(squared_distance > 0, squared_distance, 1.0)
    return np.where(squared_distance > 0, squared_distance * np.log(safe), 0.0)


def tps_displacement_matrix(
    output_size, control_shape=DEFAULT_TPS_CONTROL_SHAPE, align_corners=False
):
    """``(height * width, K)`` matrix mapping control offsets to grid offsets.

    A thin-plate spline through the control points is linear in their
    positions, and it reproduces affine maps exactly, so the grid is the
    identity lattice plus this matrix times the control-point offsets.
    """
    control = tps_control_points(control_shape)
    num_control = control.shape[0]
    system = np.zeros((num_control + 3, num_control + 3))
    differences = control[:, None, :] - control[None, :, :]
    system[:num_control, :num_control] = _tps_kernel(
        np.sum(differences**2, axis=-1)
    )
    affine_part = np.concatenate([np.ones((num_control, 1)), control], axis=1)
    system[:num_control, num_control:] = affine_part
    system[num_control:, :num_control] = affine_part.T
    inverse = np.linalg.inv(system)[:, :num_control]
    target = base_grid(output_size, align_corners)[:, :2]
    radial = _tps_kernel(
        np.sum((target[:, None, :] - control[None, :, :]) ** 2, axis=-1)
    )
    features = np.concatenate(
        [radial, np.ones((target.shape[0], 1)), target], axis=1
    )
    return features @ inverse


def tps_grid(
    theta,
    output_size,
    control_shape=DEFAULT_TPS_CONTROL_SHAPE,
    align_corners=False,
):
    """Sampling grid of a thin-plate spline (the paper's TPS transform).

    ``theta`` is ``(batch, 2 * rows * columns)``: the ``(dx, dy)`` offset, in
    normalised units, of each control point of a ``control_shape`` lattice
    spread evenly over ``[-1, 1]`` (row-major, x fastest). The spline maps
    each lattice point ``c`` of the output to ``c + offset`` in the input.
    Identity: all zeros.
    """
    output_size = check_output_size(output_size)
    control_shape = check_control_shape(control_shape)
    num_control = control_shape[0] * control_shape[1]
    theta = _as_parameter_matrix(theta, 2 * num_control, "tps")
    displacement = ops.convert_to_tensor(
        tps_displacement_matrix(output_size, control_shape, align_corners),
        dtype=theta.dtype,
    )
    identity = ops.convert_to_tensor(
        base_grid(output_size, align_corners)[:, :2], dtype=theta.dtype
    )
    offsets = ops.reshape(theta, (-1, 1, num_control, 2))
    # A broadcast product summed over the control points, not a matmul:
    # TF32 (and JAX's default matmul precision on GPU) would round it to
    # about 1e-4.
    moved = ops.sum(displacement[None, :, :, None] * offsets, axis=2)
    return _to_grid(identity + moved, output_size)


def make_grid(
    transform,
    theta,
    output_size,
    align_corners=False,
    control_shape=DEFAULT_TPS_CONTROL_SHAPE,
):
    """Dispatches to the grid generator of ``transform`` by name.

    ``control_shape`` is the TPS control lattice; a 3-D ``output_size`` needs
    the affine transform.
    """
    check_transform(transform, spatial_rank_of(output_size))
    if transform == "tps":
        return tps_grid(theta, output_size, control_shape, align_corners)
    generator = {
        "affine": affine_grid,
        "attention": attention_grid,
        "similarity": similarity_grid,
        "projective": projective_grid,
    }[transform]
    return generator(theta, output_size, align_corners)
