"""`BilinearInterpolation`: the bilinear sampler of the transformer."""

import keras

from stn_keras.layers.grid_sample import GridSample


@keras.saving.register_keras_serializable(package="stn_keras")
class BilinearInterpolation(GridSample):
    """Samples images at a grid of normalised coordinates, bilinearly.

    ``GridSample`` with ``mode="bilinear"``: identical, values and
    gradients, to ``torch.nn.functional.grid_sample(mode="bilinear")``. The
    grid is usually made by one of the grid generators
    (``AffineGridGenerator``...). The output takes its height and width
    from the grid, so it may differ from the input's.

    Coordinates are always handled in float32 (float64 for a float64 grid),
    also under mixed precision, and the images are sampled in the layer's
    compute dtype.

    The sampler of Jaderberg et al., "Spatial Transformer Networks",
    NeurIPS 2015 (arXiv:1506.02025), section 3.3.

    Args:
        padding_mode, align_corners, data_format: as in ``GridSample``
            (``"zeros"``/``"border"``/``"reflection"``; the grid's
            convention; the images' layout or ``None``).
        **kwargs: base ``keras.layers.Layer`` arguments.

    Input shape:
        A list ``[images, grid]``: images ``(batch, height, width,
        channels)`` (channels_last) or ``(batch, channels, height, width)``
        (channels_first), and grid ``(batch, out_height, out_width, 2)``
        (volumes of rank 5 with a 3-D grid are sampled trilinearly).

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
        super().__init__(
            mode="bilinear",
            padding_mode=padding_mode,
            align_corners=align_corners,
            data_format=data_format,
            **kwargs,
        )

    def get_config(self):
        config = super().get_config()
        del config["mode"]
        return config
