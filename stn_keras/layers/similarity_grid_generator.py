"""`SimilarityGridGenerator`: sampling grid of a similarity transform."""

import keras

from stn_keras.layers.grid_generator import GridGenerator


@keras.saving.register_keras_serializable(package="stn_keras")
class SimilarityGridGenerator(GridGenerator):
    """Sampling grid of a similarity transform: 4 parameters
    ``(angle, scale, tx, ty)``, the angle in radians. Identity:
    ``(0, 1, 0, 0)``.

    The grid generator of Jaderberg et al., "Spatial Transformer Networks",
    NeurIPS 2015 (arXiv:1506.02025), section 3.2.

    Args:
        output_size: ``(height, width)`` of the grid, or an int for square.
        align_corners: whether ``-1``/``+1`` are the centres (``True``) or
            the outer edges (``False``) of the corner pixels.
        **kwargs: base ``keras.layers.Layer`` arguments.

    Input shape:
        theta: ``(batch, 4)``.

    Output shape:
        ``(batch, height, width, 2)``: source ``(x, y)`` in ``[-1, 1]``.

    Example:

    >>> generator = SimilarityGridGenerator(output_size=(4, 5))
    >>> theta = generator.identity_parameters()[None]
    >>> tuple(generator(theta).shape)
    (1, 4, 5, 2)
    """

    transform = "similarity"
