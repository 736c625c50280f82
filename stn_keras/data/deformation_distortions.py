"""P and E: the digit deformed in place by a homography or a thin-plate spline.

The paper's distortions (Jaderberg et al. 2015, appendix A.4) that bend the
digit on a canvas of its own size: the image's corners moved by Gaussian
noise (projective), or thin-plate-spline control points moved by it
(elastic), after a random scale. Drawn in numpy from ``rng``, sampled with
``warping.warp``; each returns the images and the parameters drawn
(described in ``distortions``).
"""

import numpy as np

from stn_keras.data.warping import warp
from stn_keras.ops import DEFAULT_TPS_CONTROL_SHAPE
from stn_keras.ops import tps_control_points
from stn_keras.validation import check_number
from stn_keras.validation import check_number_pair

# Corners of the normalised image square, in the order of ``corner_offsets``.
CORNERS = np.array([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]])


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
    corner_noise_std = check_number("corner_noise_std", corner_noise_std, 0)
    count = len(images)
    height, width = images.shape[1:3]
    scale = rng.uniform(*scale_range, size=count)
    corner_offsets = rng.normal(0.0, corner_noise_std, size=(count, 4, 2))
    pixels_to_normalised = np.array([2.0 / width, 2.0 / height])
    # Where each image corner lands in the output, normalised.
    moved = scale[:, None, None] * CORNERS + corner_offsets * pixels_to_normalised
    # The sampling grid maps output coordinates back to the image.
    theta = homographies(moved, np.broadcast_to(CORNERS, moved.shape))
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
    noise_std = check_number("control_point_noise_std", control_point_noise_std, 0)
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
        images, "tps", offsets.reshape(count, 2 * len(control)), (height, width), control_shape
    )
    return output, {"scale": scale, "control_point_offsets": control_point_offsets}
