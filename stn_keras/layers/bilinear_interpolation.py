"""`BilinearInterpolation`: the differentiable sampler of the transformer."""

import keras
from keras import ops

from stn_keras.ops import sampling
from stn_keras.validation import check_bool


@keras.saving.register_keras_serializable(package="stn_keras")
class BilinearInterpolation(keras.layers.Layer):
    """Samples images at a grid of normalised coordinates, bilinearly.

    Identical, values and gradients, to
    ``torch.nn.functional.grid_sample(mode="bilinear")``. The grid is usually
    made by one of the grid generators (``AffineGridGenerator``...). The
    output takes its height and width from the grid, so it may differ from
    the input's.

    Coordinates are always handled in float32 (float64 for a float64 grid),
    also under mixed precision, and the images are sampled in the layer's
    compute dtype.

    The sampler of Jaderberg et al., "Spatial Transformer Networks",
    NeurIPS 2015 (arXiv:1506.02025), section 3.3.

    Args:
        padding_mode: what samples outside the image read: ``"zeros"``,
            ``"border"`` (the nearest edge pixel) or ``"reflection"`` (the
            image mirrored at its edges).
        align_corners: whether ``-1``/``+1`` in the grid are the centres
            (``True``) or the outer edges (``False``) of the corner pixels.
            Use the value the grid was generated with.
        data_format: ``"channels_last"``, ``"channels_first"`` or ``None``
            for ``keras.config.image_data_format()``.
        **kwargs: base ``keras.layers.Layer`` arguments.

    Input shape:
        A list ``[images, grid]``: images ``(batch, height, width,
        channels)`` (channels_last) or ``(batch, channels, height, width)``
        (channels_first), and grid ``(batch, out_height, out_width, 2)``.

    Output shape:
        ``(batch, out_height, out_width, channels)`` (channels_last) or
        ``(batch, channels, out_height, out_width)`` (channels_first).

    Example:

    >>> images = np.random.rand(2, 28, 28, 1).astype("float32")
    >>> theta = np.tile([[0.5, 0.0, 0.0, 0.0, 0.5, 0.0]], (2, 1))
    >>> grid = AffineGridGenerator(output_size=(14, 14))(theta)
    >>> tuple(BilinearInterpolation()([images, grid]).shape)
    (2, 14, 14, 1)
    """

    def __init__(
        self,
        padding_mode="zeros",
        align_corners=False,
        data_format=None,
        **kwargs,
    ):
        # The grid must not be cast to float16 under mixed precision.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.padding_mode = sampling.validate_padding_mode(padding_mode)
        self.align_corners = check_bool("align_corners", align_corners)
        self.data_format = sampling.validate_data_format(data_format)

    def _split_inputs(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(
                f"BilinearInterpolation '{self.name}' must be called on a "
                f"list [images, grid]. Received: {inputs!r}"
            )
        return inputs

    def build(self, input_shape):
        images_shape, grid_shape = self._split_inputs(input_shape)
        if len(images_shape) != 4 or len(grid_shape) != 4 or grid_shape[-1] != 2:
            raise ValueError(
                f"BilinearInterpolation '{self.name}' expects images of rank "
                "4 and a grid of shape (batch, out_height, out_width, 2). "
                f"Received: images.shape={tuple(images_shape)}, "
                f"grid.shape={tuple(grid_shape)}"
            )

    def call(self, inputs):
        images, grid = self._split_inputs(inputs)
        images = ops.cast(images, self.compute_dtype)
        return sampling.bilinear_sample(
            images,
            grid,
            padding_mode=self.padding_mode,
            align_corners=self.align_corners,
            data_format=self.data_format,
        )

    def compute_output_shape(self, input_shape):
        images_shape, grid_shape = self._split_inputs(input_shape)
        if self.data_format == "channels_first":
            return (images_shape[0], images_shape[1], *grid_shape[1:3])
        return (images_shape[0], *grid_shape[1:3], images_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "padding_mode": self.padding_mode,
                "align_corners": self.align_corners,
                "data_format": self.data_format,
            }
        )
        return config
