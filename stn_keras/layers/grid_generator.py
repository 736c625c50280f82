"""Base class of the grid-generator layers."""

import keras
from keras import ops

from stn_keras.ops import grids
from stn_keras.validation import check_bool


def grid_dtype(theta_dtype):
    """``"float64"`` for a float64 theta, else ``"float32"``.

    ``theta_dtype`` may be any backend's dtype object (``torch.float64``,
    ``tf.float64``...) or its name.
    """
    if keras.backend.standardize_dtype(theta_dtype) == "float64":
        return "float64"
    return "float32"


def document_planar_generator(generator_class):
    """Completes the docstring of a grid generator of an image transform.

    The class's own docstring says what its parameters are; this appends the
    reference, Args, shapes and example that the attention, similarity and
    projective generators share, with their parameter count and name.
    """
    num_parameters = grids.num_parameters(generator_class.transform)
    name = generator_class.__name__
    generator_class.__doc__ += f"""
    The grid generator of Jaderberg et al., "Spatial Transformer Networks",
    NeurIPS 2015 (arXiv:1506.02025), section 3.2.

    Args:
        output_size: ``(height, width)`` of the grid, or an int for square.
        align_corners: whether ``-1``/``+1`` are the centres (``True``) or
            the outer edges (``False``) of the corner pixels.
        **kwargs: base ``keras.layers.Layer`` arguments.

    Input shape:
        theta: ``(batch, {num_parameters})``.

    Output shape:
        ``(batch, height, width, 2)``: source ``(x, y)`` in ``[-1, 1]``.

    Example:

    >>> generator = {name}(output_size=(4, 5))
    >>> theta = generator.identity_parameters()[None]
    >>> tuple(generator(theta).shape)
    (1, 4, 5, 2)
    """
    return generator_class


class GridGenerator(keras.layers.Layer):
    """Base layer turning transform parameters into a sampling grid.

    Subclasses set ``transform`` to one of ``stn_keras.ops.TRANSFORMS``. The
    grid is always computed in float32 (or float64 for float64 inputs): under
    mixed precision a float16 grid would misplace samples by up to a
    quarter of a pixel in a 224-pixel image.

    Args:
        output_size: ``(height, width)`` of the grid, or an int for square
            (the affine transform also takes ``(depth, height, width)`` for
            a volumetric grid).
        align_corners: whether ``-1``/``+1`` are the centres (``True``) or
            the outer edges (``False``) of the corner pixels; the convention
            of ``torch.nn.functional.affine_grid``.
        **kwargs: base ``keras.layers.Layer`` arguments (``name``,
            ``dtype``...).
    """

    transform = None

    def __init__(self, output_size, align_corners=False, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        spatial_rank = grids.spatial_rank_of(output_size)
        grids.check_transform(self.transform, spatial_rank)
        self.output_size = grids.check_output_size(output_size, spatial_rank)
        self.align_corners = check_bool("align_corners", align_corners)

    @property
    def spatial_rank(self):
        return len(self.output_size)

    @property
    def num_parameters(self):
        return grids.num_parameters(
            self.transform, spatial_rank=self.spatial_rank, **self._grid_options()
        )

    def identity_parameters(self):
        """The parameters for which the grid samples the input unchanged."""
        return grids.identity_parameters(
            self.transform, spatial_rank=self.spatial_rank, **self._grid_options()
        )

    def _grid_options(self):
        """Transform-specific keyword arguments of the `grids` functions."""
        return {}

    def build(self, input_shape):
        shape = tuple(input_shape)
        matrix_form = self.transform == "affine" and shape[1:] == (
            self.spatial_rank,
            self.spatial_rank + 1,
        )
        if not matrix_form and (
            len(shape) != 2 or shape[-1] not in (None, self.num_parameters)
        ):
            raise ValueError(
                f"{type(self).__name__} '{self.name}' expects theta of shape "
                f"(batch, {self.num_parameters}) for the {self.transform} "
                f"transform. Received: theta.shape={shape}"
            )

    def call(self, theta):
        theta = ops.convert_to_tensor(theta)
        return grids.make_grid(
            self.transform,
            ops.cast(theta, grid_dtype(theta.dtype)),
            self.output_size,
            align_corners=self.align_corners,
            **self._grid_options(),
        )

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.output_size, self.spatial_rank)

    def compute_output_spec(self, theta):
        return keras.KerasTensor(
            self.compute_output_shape(theta.shape), dtype=grid_dtype(theta.dtype)
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "output_size": self.output_size,
                "align_corners": self.align_corners,
            }
        )
        return config
