"""Where an image lands on a canvas: the affine map of a placement.

One geometry for the two kinds of randomness of the data layer: the paper's
distortions place a digit on a larger canvas (``placement_distortions``),
and the augmentation re-poses an image on a canvas of its own size
(``augmentation``). Both then sample with ``warping.warp``.
"""

import numpy as np


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
