"""`AffineGridGenerator`: sampling grid of an affine transform."""

import keras

from stn_keras.layers.grid_generator import GridGenerator


@keras.saving.register_keras_serializable(package="stn_keras")
class AffineGridGenerator(GridGenerator):
    """Sampling grid of an affine transform: 6 parameters, the rows of the 2x3
    matrix mapping target ``(x, y, 1)`` to source ``(x, y)``, exactly as
    ``torch.nn.functional.affine_grid``. Identity: ``(1, 0, 0, 0, 1, 0)``.
    With a 3-D ``output_size`` ``(depth, height, width)``, the volumetric
    form: 12 parameters, the rows of the 3x4 matrix mapping ``(x, y, z, 1)``
    to ``(x, y, z)``.

    The grid generator of Jaderberg et al., "Spatial Transformer Networks",
    NeurIPS 2015 (arXiv:1506.02025), section 3.2.

    Args:
        output_size: ``(height, width)`` of the grid, an int for square, or
            ``(depth, height, width)`` for volumes.
        align_corners: whether ``-1``/``+1`` are the centres (``True``) or
            the outer edges (``False``) of the corner pixels.
        **kwargs: base ``keras.layers.Layer`` arguments.

    Input shape:
        theta: ``(batch, 6)`` or ``(batch, 2, 3)``; volumes: ``(batch, 12)``
        or ``(batch, 3, 4)``.

    Output shape:
        ``(batch, height, width, 2)``: source ``(x, y)`` in ``[-1, 1]``;
        volumes: ``(batch, depth, height, width, 3)``, source ``(x, y, z)``.

    Example:

    >>> generator = AffineGridGenerator(output_size=(4, 5))
    >>> theta = generator.identity_parameters()[None]
    >>> tuple(generator(theta).shape)
    (1, 4, 5, 2)
    """

    transform = "affine"
