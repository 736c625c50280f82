"""`TPSGridGenerator`: sampling grid of a thin-plate spline."""

import keras

from stn_keras.layers.grid_generator import GridGenerator
from stn_keras.ops import grids
from stn_keras.validation import with_current_names


@keras.saving.register_keras_serializable(package="stn_keras")
class TPSGridGenerator(GridGenerator):
    """Sampling grid of a thin-plate spline (TPS) through a control lattice.

    The ``rows x columns`` control points are spread evenly over ``[-1, 1]``
    (4x4 in the paper). Theta holds the ``(dx, dy)`` offset of each control
    point (row-major, x fastest) in normalised units; the spline maps each
    control point ``c`` of the output to ``c + offset`` in the input and
    interpolates smoothly in between. Identity: all zeros.

    The TPS transform of Jaderberg et al., "Spatial Transformer Networks",
    NeurIPS 2015 (arXiv:1506.02025), section 3.2 and appendix A.4, after
    Bookstein, "Principal warps", PAMI 1989.

    Args:
        output_size: ``(height, width)`` of the grid, or an int for square.
        control_shape: ``(rows, columns)`` of the control lattice, each >= 2.
        align_corners: whether ``-1``/``+1`` are the centres (``True``) or
            the outer edges (``False``) of the corner pixels.
        **kwargs: base ``keras.layers.Layer`` arguments.

    Input shape:
        theta: ``(batch, 2 * rows * columns)``.

    Output shape:
        ``(batch, height, width, 2)``: source ``(x, y)`` in ``[-1, 1]``.

    Example:

    >>> generator = TPSGridGenerator(output_size=28, control_shape=(4, 4))
    >>> theta = generator.identity_parameters()[None]
    >>> tuple(generator(theta).shape)
    (1, 28, 28, 2)
    """

    transform = "tps"

    def __init__(
        self,
        output_size,
        control_shape=grids.DEFAULT_TPS_CONTROL_SHAPE,
        align_corners=False,
        **kwargs,
    ):
        super().__init__(output_size, align_corners=align_corners, **kwargs)
        self.control_shape = grids.check_control_shape(control_shape)

    def _grid_options(self):
        return {"control_shape": self.control_shape}

    def get_config(self):
        config = super().get_config()
        config["control_shape"] = self.control_shape
        return config

    @classmethod
    def from_config(cls, config):
        # Files saved before `grid_shape` became `control_shape`.
        return cls(
            **with_current_names(
                config,
                {"grid_shape": "control_shape"},
                f"the config of TPSGridGenerator '{config.get('name')}'",
            )
        )
