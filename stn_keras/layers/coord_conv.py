"""`CoordConv`: a convolution that sees where it is."""

import keras
from keras import ops

from stn_keras.ops import grids
from stn_keras.validation import check_bool
from stn_keras.validation import check_data_format


def coordinate_channels(height, width, with_r=False, align_corners=False):
    """``(height, width, 2 or 3)`` channels ``x``, ``y`` (and ``r``).

    ``x`` varies along the width and ``y`` along the height, whatever the
    aspect ratio, each in ``[-1, 1]`` measured at pixel centres: with
    ``align_corners=False`` the image's outer edges are ``-1`` and ``+1``
    (pixel ``j`` of ``W`` sits at ``(2j + 1) / W - 1``), the convention of
    the library's default grids; with ``align_corners=True`` the first and
    last pixel centres are ``-1`` and ``+1``, as in Liu et al. ``r`` is the
    distance from the image centre, ``sqrt(x^2 + y^2)``.
    """

    def axis(size):
        index = ops.cast(ops.arange(size), "float32")
        return grids.pixel_to_normalized(
            index, ops.cast(size, "float32"), align_corners
        )

    x = ops.broadcast_to(axis(width)[None, :], (height, width))
    y = ops.broadcast_to(axis(height)[:, None], (height, width))
    channels = [x, y]
    if with_r:
        channels.append(ops.sqrt(x * x + y * y))
    return ops.stack(channels, axis=-1)


@keras.saving.register_keras_serializable(package="stn_keras")
class CoordConv(keras.layers.Layer):
    """2D convolution over the input plus coordinate channels.

    Appends an ``x`` channel (varying along the width) and a ``y`` channel
    (varying along the height), both in ``[-1, 1]`` measured at pixel
    centres and correct for non-square inputs, and optionally a radius
    channel ``r = sqrt(x^2 + y^2)`` measured from the image centre; then
    applies a ``Conv2D``. The coordinate channels are computed from the
    input's actual height and width, so the layer accepts any spatial size.

    Liu et al., "An intriguing failing of convolutional neural networks and
    the CoordConv solution", NeurIPS 2018 (arXiv:1807.03247).

    Args:
        filters: number of output channels of the convolution.
        kernel_size: int or tuple of 2 ints.
        with_r: whether to append the radius channel too.
        align_corners: coordinate convention: ``False`` puts ``-1``/``+1``
            at the image's outer edges (as the library's grids), ``True`` at
            the centres of the first and last pixels (as Liu et al.).
        strides, padding, dilation_rate, activation, use_bias,
        kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer, kernel_constraint, bias_constraint: as in
        ``keras.layers.Conv2D``.
        data_format: ``"channels_last"``, ``"channels_first"`` or ``None``.
        **kwargs: base ``keras.layers.Layer`` arguments.

    Input shape:
        ``(batch, height, width, channels)`` (channels_last) or
        ``(batch, channels, height, width)`` (channels_first).

    Output shape:
        that of ``Conv2D(filters, kernel_size, ...)`` on the input.

    Example:

    >>> layer = CoordConv(8, 3, with_r=True, padding="same")
    >>> tuple(layer(np.zeros((2, 10, 14, 1), "float32")).shape)
    (2, 10, 14, 8)
    """

    def __init__(
        self,
        filters,
        kernel_size,
        with_r=False,
        align_corners=False,
        strides=(1, 1),
        padding="valid",
        data_format=None,
        dilation_rate=(1, 1),
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.with_r = check_bool("with_r", with_r)
        self.align_corners = check_bool("align_corners", align_corners)
        self.data_format = check_data_format(data_format)
        # Conv2D validates its own arguments (filters, kernel_size, padding...)
        # with clear errors, at construction time.
        self.convolution = keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            data_format=self.data_format,
            dilation_rate=dilation_rate,
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
            dtype=self.dtype_policy,
            name="convolution",
        )

    @property
    def num_coordinate_channels(self):
        return 3 if self.with_r else 2

    def _with_coordinate_channels(self, shape):
        shape = list(shape)
        axis = 1 if self.data_format == "channels_first" else -1
        if shape[axis] is not None:
            shape[axis] += self.num_coordinate_channels
        return tuple(shape)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"CoordConv '{self.name}' expects rank-4 images. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self.convolution.build(self._with_coordinate_channels(input_shape))

    def call(self, inputs):
        batch = ops.shape(inputs)[0]
        if self.data_format == "channels_first":
            height, width = ops.shape(inputs)[2], ops.shape(inputs)[3]
        else:
            height, width = ops.shape(inputs)[1], ops.shape(inputs)[2]
        coordinates = coordinate_channels(
            height, width, self.with_r, self.align_corners
        )
        coordinates = ops.cast(coordinates, inputs.dtype)
        if self.data_format == "channels_first":
            coordinates = ops.transpose(coordinates, (2, 0, 1))
        coordinates = ops.broadcast_to(
            coordinates[None], (batch, *ops.shape(coordinates))
        )
        axis = 1 if self.data_format == "channels_first" else -1
        return self.convolution(
            ops.concatenate([inputs, coordinates], axis=axis)
        )

    def compute_output_shape(self, input_shape):
        return self.convolution.compute_output_shape(
            self._with_coordinate_channels(input_shape)
        )

    def get_config(self):
        config = super().get_config()
        convolution = self.convolution.get_config()
        for key in (
            "filters",
            "kernel_size",
            "strides",
            "padding",
            "dilation_rate",
            "activation",
            "use_bias",
            "kernel_initializer",
            "bias_initializer",
            "kernel_regularizer",
            "bias_regularizer",
            "kernel_constraint",
            "bias_constraint",
        ):
            config[key] = convolution[key]
        config.update(
            {
                "with_r": self.with_r,
                "align_corners": self.align_corners,
                "data_format": self.data_format,
            }
        )
        return config
