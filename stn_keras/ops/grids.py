"""Sampling-grid generators of the spatial transformer (Jaderberg et al. 2015).

Every generator maps transform parameters ``theta`` of shape
``(batch, num_parameters)`` to a sampling grid of shape
``(batch, height, width, 2)``. The last axis holds ``(x, y)`` source
coordinates normalised to ``[-1, 1]``, the convention of
``torch.nn.functional.affine_grid``: ``-1`` and ``+1`` are the centres of the
corner pixels when ``align_corners=True``, and the outer edges of the corner
pixels when ``align_corners=False``.

All functions use ``keras.ops`` only, so they run and differentiate on every
Keras backend. Constant parts of a grid (the target lattice, the thin-plate
spline kernel) are computed once in numpy, in float64, and embedded as
constants.
"""

import keras
import numpy as np
from keras import ops

from stn_keras.validation import check_int_pair

TRANSFORMS = ("affine", "attention", "similarity", "projective", "tps")
DEFAULT_TPS_GRID_SHAPE = (4, 4)


def _normalised_coordinates(size, align_corners):
    """Pixel-centre coordinates of an axis of ``size`` pixels in [-1, 1]."""
    if size == 1:
        # torch places the single sample at the centre whatever the convention.
        return np.zeros((1,), dtype=np.float64)
    coordinates = np.linspace(-1.0, 1.0, size, dtype=np.float64)
    if not align_corners:
        coordinates = coordinates * (size - 1) / size
    return coordinates


def validate_output_size(output_size, name="output_size"):
    """Returns ``output_size`` as a ``(height, width)`` tuple of positive ints."""
    return check_int_pair(
        name, output_size, 1, "height, width", allow_single=True
    )


def validate_tps_grid_shape(grid_shape):
    """Returns a thin-plate-spline control lattice shape ``(rows, columns)``."""
    return check_int_pair(
        "grid_shape", grid_shape, 2, "rows, columns of the control lattice"
    )


def base_grid(output_size, align_corners=False):
    """Homogeneous target coordinates ``(height * width, 3)`` as ``(x, y, 1)``.

    Rows are in row-major order (y outer, x inner), as the output pixels.
    """
    height, width = validate_output_size(output_size)
    x = _normalised_coordinates(width, align_corners)
    y = _normalised_coordinates(height, align_corners)
    grid_x, grid_y = np.meshgrid(x, y)
    return np.stack(
        [grid_x.ravel(), grid_y.ravel(), np.ones(height * width)], axis=-1
    )


def num_parameters(transform, tps_grid_shape=DEFAULT_TPS_GRID_SHAPE):
    """Number of parameters the localisation network regresses."""
    validate_transform(transform)
    if transform == "tps":
        rows, columns = validate_tps_grid_shape(tps_grid_shape)
        return 2 * rows * columns
    return {"affine": 6, "attention": 3, "similarity": 4, "projective": 8}[
        transform
    ]


def identity_parameters(transform, tps_grid_shape=DEFAULT_TPS_GRID_SHAPE):
    """Parameters for which ``transform`` samples the input unchanged."""
    validate_transform(transform)
    if transform == "tps":
        return np.zeros(num_parameters("tps", tps_grid_shape), dtype=np.float32)
    return np.asarray(
        {
            "affine": [1, 0, 0, 0, 1, 0],
            "attention": [1, 0, 0],
            "similarity": [0, 1, 0, 0],
            "projective": [1, 0, 0, 0, 1, 0, 0, 0],
        }[transform],
        dtype=np.float32,
    )


def validate_transform(transform):
    """Returns ``transform`` if it names a known transform, else raises."""
    if transform not in TRANSFORMS:
        raise ValueError(
            f"Unknown transform. Expected one of {TRANSFORMS}. "
            f"Received: transform={transform!r}"
        )
    return transform


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
    """``(B, rows, 3)`` matrices applied to the target lattice -> ``(B, P, rows)``."""
    lattice = base_grid(output_size, align_corners)
    x, y = (
        ops.convert_to_tensor(lattice[None, :, axis, None], theta_matrix.dtype)
        for axis in (0, 1)
    )
    # Written out rather than as a (P, 3) x (B, 3, rows) matmul: XLA fuses
    # this into one pass, about 3x faster than its batched tiny-matmul.
    return (
        x * theta_matrix[:, None, :, 0]
        + y * theta_matrix[:, None, :, 1]
        + theta_matrix[:, None, :, 2]
    )


def _to_grid(points, output_size):
    height, width = output_size
    return ops.reshape(points, (-1, height, width, 2))


def affine_grid(theta, output_size, align_corners=False):
    """Sampling grid of an affine transform, as ``torch...affine_grid``.

    Args:
        theta: ``(batch, 6)`` or ``(batch, 2, 3)``: the rows of the matrix
            mapping target ``(x, y, 1)`` to source ``(x, y)``.
        output_size: ``(height, width)`` of the grid (an int for square).
        align_corners: whether ``-1``/``+1`` are the centres (``True``) or the
            outer edges (``False``) of the corner pixels.

    Returns:
        Grid of shape ``(batch, height, width, 2)``, last axis ``(x, y)``.
    """
    output_size = validate_output_size(output_size)
    theta = ops.convert_to_tensor(theta)
    if len(theta.shape) == 3:
        if tuple(theta.shape[1:]) != (2, 3):
            raise ValueError(
                "`theta` for the affine transform must have shape (batch, 6) "
                f"or (batch, 2, 3). Received: theta.shape={tuple(theta.shape)}"
            )
        theta = ops.reshape(theta, (-1, 6))
    theta = _as_parameter_matrix(theta, 6, "affine")
    matrix = ops.reshape(theta, (-1, 2, 3))
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
    output_size = validate_output_size(output_size)
    theta = _as_parameter_matrix(theta, 8, "projective")
    ones = ops.ones_like(theta[:, :1])
    matrix = ops.reshape(ops.concatenate([theta, ones], axis=-1), (-1, 3, 3))
    points = _apply_homogeneous(matrix, output_size, align_corners)
    return _to_grid(points[..., :2] / points[..., 2:], output_size)


def tps_control_points(grid_shape=DEFAULT_TPS_GRID_SHAPE):
    """The ``(rows * columns, 2)`` control lattice ``(x, y)`` over [-1, 1]."""
    rows, columns = validate_tps_grid_shape(grid_shape)
    grid_x, grid_y = np.meshgrid(
        np.linspace(-1.0, 1.0, columns), np.linspace(-1.0, 1.0, rows)
    )
    return np.stack([grid_x.ravel(), grid_y.ravel()], axis=-1)


def _tps_kernel(squared_distance):
    """``U(r) = r^2 log r^2`` with ``U(0) = 0``."""
    safe = np.where(squared_distance > 0, squared_distance, 1.0)
    return np.where(squared_distance > 0, squared_distance * np.log(safe), 0.0)


def tps_displacement_matrix(output_size, grid_shape, align_corners=False):
    """``(height * width, K)`` matrix mapping control offsets to grid offsets.

    A thin-plate spline through the control points is linear in their
    positions, and it reproduces affine maps exactly, so the grid is the
    identity lattice plus this matrix times the control-point offsets.
    """
    control = tps_control_points(grid_shape)
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
    grid_shape=DEFAULT_TPS_GRID_SHAPE,
    align_corners=False,
):
    """Sampling grid of a thin-plate spline (the paper's TPS transform).

    ``theta`` is ``(batch, 2 * rows * columns)``: the ``(dx, dy)`` offset, in
    normalised units, of each control point of a ``grid_shape`` lattice
    spread evenly over ``[-1, 1]`` (row-major, x fastest). The spline maps
    each lattice point ``c`` of the output to ``c + offset`` in the input.
    Identity: all zeros.
    """
    output_size = validate_output_size(output_size)
    grid_shape = validate_tps_grid_shape(grid_shape)
    num_control = grid_shape[0] * grid_shape[1]
    theta = _as_parameter_matrix(theta, 2 * num_control, "tps")
    displacement = ops.convert_to_tensor(
        tps_displacement_matrix(output_size, grid_shape, align_corners),
        dtype=theta.dtype,
    )
    identity = ops.convert_to_tensor(
        base_grid(output_size, align_corners)[:, :2], dtype=theta.dtype
    )
    offsets = ops.reshape(theta, (-1, num_control, 2))
    return _to_grid(identity + ops.matmul(displacement, offsets), output_size)


def make_grid(
    transform,
    theta,
    output_size,
    align_corners=False,
    tps_grid_shape=DEFAULT_TPS_GRID_SHAPE,
):
    """Dispatches to the grid generator of ``transform`` by name."""
    validate_transform(transform)
    if transform == "tps":
        return tps_grid(theta, output_size, tps_grid_shape, align_corners)
    generator = {
        "affine": affine_grid,
        "attention": attention_grid,
        "similarity": similarity_grid,
        "projective": projective_grid,
    }[transform]
    return generator(theta, output_size, align_corners)
