"""`GridSample`: the differentiable sampler, in every mode, for images and volumes."""

import keras
from keras import ops

from stn_keras.ops import sampling
from stn_keras.validation import check_bool
from stn_keras.validation import check_data_format


@keras.saving.register_keras_serializable(package="stn_keras")
class GridSample(keras.layers.Layer):
    """Samples images or volumes at a grid of normalised coordinates.

    Identical, values and gradients, to ``torch.nn.functional.grid_sample``
    in each of its modes. The grid is usually made by one of the grid
    generators (``AffineGridGenerator``...). The output takes its spatial
    shape from the grid, so it may differ from the input's.

    Coordinates are always handled in float32 (float64 for a float64 grid),
    also under mixed precision, and the images are sampled in the layer's
    compute dtype.

    The sampler of Jaderberg et al., "Spatial Transformer Networks",
    NeurIPS 2015 (arXiv:1506.02025), section 3.3, with the sampling kernels
    of PyTorch's ``grid_sample``.

    Args:
        mode: ``"bilinear"`` (trilinear on volumes), ``"nearest"`` or
            ``"bicubic"`` (images only; torch's cubic convolution, A=-0.75).
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
        channels)`` with grid ``(batch, out_height, out_width, 2)``, or
        volumes ``(batch, depth, height, width, channels)`` with grid
        ``(batch, out_depth, out_height, out_width, 3)``; channels on axis 1
        with ``channels_first``.

    Output shape:
        ``(batch, *grid.shape[1:-1], channels)`` (channels_last) or
        ``(batch, channels, *grid.shape[1:-1])`` (channels_first).

    Example:

    >>> images = np.random.rand(2, 28, 28, 1).astype("float32")
    >>> theta = np.tile([[0.5, 0.0, 0.0, 0.0, 0.5, 0.0]], (2, 1))
    >>> grid = AffineGridGenerator(output_size=(14, 14))(theta)
    >>> tuple(GridSample(mode="bicubic")([images, grid]).shape)
    (2, 14, 14, 1)
    """

    def __init__(
        self,
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
        data_format=None,
        **kwargs,
    ):
        # The grid must not be cast to float16 under mixed precision.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.mode = sampling.check_mode(mode)
        self.padding_mode = sampling.check_padding_mode(padding_mode)
        self.align_corners = check_bool("align_corners", align_corners)
        self.data_format = check_data_format(data_format)

    def _split_inputs(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(
                f"{type(self).__name__} '{self.name}' must be called on a "
                f"list [images, grid]. Received: {inputs!r}"
            )
        return inputs

    def build(self, input_shape):
        images_shape, grid_shape = self._split_inputs(input_shape)
        rank = len(images_shape)
        if (
            rank not in (4, 5)
            or len(grid_shape) != rank
            or grid_shape[-1] != rank - 2
            or (self.mode == "bicubic" and rank == 5)
        ):
            raise ValueError(
                f"{type(self).__name__} '{self.name}' expects images of rank "
                "4 with a grid (batch, out_height, out_width, 2), or (except "
                "for mode='bicubic') volumes of rank 5 with a grid (batch, "
                "out_depth, out_height, out_width, 3). Received: "
                f"images.shape={tuple(images_shape)}, "
                f"grid.shape={tuple(grid_shape)}, mode={self.mode!r}"
            )

    def call(self, inputs):
        images, grid = self._split_inputs(inputs)
        images = ops.cast(images, self.compute_dtype)
        return sampling.grid_sample(
            images,
            grid,
            mode=self.mode,
            padding_mode=self.padding_mode,
            align_corners=self.align_corners,
            data_format=self.data_format,
        )

    def compute_output_shape(self, input_shape):
        images_shape, grid_shape = self._split_inputs(input_shape)
        if self.data_format == "channels_first":
            return (images_shape[0], images_shape[1], *grid_shape[1:-1])
        return (images_shape[0], *grid_shape[1:-1], images_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "mode": self.mode,
                "padding_mode": self.padding_mode,
                "align_corners": self.align_corners,
                "data_format": self.data_format,
            }
        )
        return config
