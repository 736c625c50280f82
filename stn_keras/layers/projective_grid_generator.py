"""`ProjectiveGridGenerator`: sampling grid of a projective transform (homography)."""

import keras

from stn_keras.layers.grid_generator import GridGenerator


@keras.saving.register_keras_serializable(package="stn_keras")
class ProjectiveGridGenerator(GridGenerator):
    """Sampling grid of a projective transform (homography): 8
    parameters, the first eight row-major entries of a 3x3 matrix whose last
    entry is fixed to 1. Identity: ``(1, 0, 0, 0, 1, 0, 0, 0)``.

    The grid generator of Jaderberg et al., "Spatial Transformer Networks",
    NeurIPS 2015 (arXiv:1506.02025), section 3.2.

    Args:
        output_size: ``(height, width)`` of the grid, or an int for square.
        align_corners: whether ``-1``/``+1`` are the centres (``True``) or
            the outer edges (``False``) of the corner pixels.
        **kwargs: base ``keras.layers.Layer`` arguments.

    Input shape:
        theta: ``(batch, 8)``.

    Output shape:
        ``(batch, height, width, 2)``: source ``(x, y)`` in ``[-1, 1]``.

    Example:

    >>> generator = ProjectiveGridGenerator(output_size=(4, 5))
    >>> theta = generator.identity_parameters()[None]
    >>> tuple(generator(theta).shape)
    (1, 4, 5, 2)
    """

    transform = "projective"
