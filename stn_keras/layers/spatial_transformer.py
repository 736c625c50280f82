"""`SpatialTransformer`: the full module of Jaderberg et al. 2015."""

import keras
import numpy as np
from keras import ops

from stn_keras.ops import grids
from stn_keras.ops import sampling
from stn_keras.validation import check_bool


def scale_gradient(x, multiplier):
    """Identity in the forward pass; multiplies the gradient by ``multiplier``."""
    if multiplier == 1.0:
        return x
    return x * multiplier + ops.stop_gradient(x) * (1.0 - multiplier)


@keras.saving.register_keras_serializable(package="stn_keras")
class SpatialTransformer(keras.layers.Layer):
    """Spatial transformer: localise, generate a grid, sample.

    A localisation network (any Keras layer or model) looks at the input and
    its features are regressed, by a dense head initialised to the identity
    transform (zero kernel, identity bias), to the parameters ``theta`` of a
    transform; the grid generator turns ``theta`` into a sampling grid of
    ``output_size`` and the bilinear sampler reads the input there. At
    initialisation the layer therefore passes the input through (resampled
    to ``output_size``), and training learns where to look.

    Jaderberg et al., "Spatial Transformer Networks", NeurIPS 2015
    (arXiv:1506.02025).

    Args:
        localization_net: a Keras layer or model mapping the (optionally
            downsampled) input to features; any output rank, it is flattened
            before the regression head. It must not end in the regression
            itself: the layer adds the identity-initialised head.
        output_size: ``(height, width)`` of the output, an int for square,
            or ``None`` for the input's size.
        transform: ``"affine"`` (6 parameters), ``"attention"`` (3: scale,
            tx, ty), ``"similarity"`` (4: angle, scale, tx, ty),
            ``"projective"`` (8) or ``"tps"`` (thin-plate spline, two per
            control point).
        tps_grid_shape: ``(rows, columns)`` of the TPS control lattice.
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``.
        align_corners: grid convention, as ``torch.nn.functional.affine_grid``.
        localization_downsample: integer factor by which the input is
            bilinearly downsampled before the localisation network (the
            paper's ST-CNNs localise on a 2x-downsampled input).
        localization_learning_rate_multiplier: factor on the gradients
            reaching the regression head and the localisation network. With
            plain or momentum SGD (the paper's optimiser) this is exactly a
            learning-rate multiplier for those weights (the paper uses 0.1
            on SVHN); adaptive optimisers such as Adam largely normalise it
            away.
        return_theta: also return ``theta``, ``(batch, num_parameters)``,
            for visualisation.
        data_format: ``"channels_last"``, ``"channels_first"`` or ``None``.
        **kwargs: base ``keras.layers.Layer`` arguments.

    Input shape:
        ``(batch, height, width, channels)`` (channels_last) or
        ``(batch, channels, height, width)`` (channels_first); height and
        width must be known.

    Output shape:
        The transformed images, ``(batch, out_height, out_width, channels)``
        (or channels_first), and with ``return_theta`` a list
        ``[images, theta]``.

    Example:

    >>> localization_net = keras.Sequential([
    ...     keras.layers.Conv2D(8, 5, activation="relu"),
    ...     keras.layers.MaxPooling2D(),
    ...     keras.layers.Flatten(),
    ...     keras.layers.Dense(20, activation="relu"),
    ... ])
    >>> transformer = SpatialTransformer(localization_net, output_size=(28, 28))
    >>> tuple(transformer(np.zeros((2, 42, 42, 1), "float32")).shape)
    (2, 28, 28, 1)
    """

    def __init__(
        self,
        localization_net,
        output_size=None,
        transform="affine",
        tps_grid_shape=grids.DEFAULT_TPS_GRID_SHAPE,
        padding_mode="zeros",
        align_corners=False,
        localization_downsample=1,
        localization_learning_rate_multiplier=1.0,
        return_theta=False,
        data_format=None,
        **kwargs,
    ):
        # Grids stay in float32 under mixed precision; the sampler casts.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if not isinstance(localization_net, keras.layers.Layer):
            raise ValueError(
                "`localization_net` must be a Keras layer or model. "
                f"Received: localization_net={localization_net!r}"
            )
        self.localization_net = localization_net
        self.output_size = (
            None
            if output_size is None
            else grids.validate_output_size(output_size)
        )
        self.transform = grids.validate_transform(transform)
        self.tps_grid_shape = grids.validate_tps_grid_shape(tps_grid_shape)
        self.padding_mode = sampling.validate_padding_mode(padding_mode)
        self.align_corners = check_bool("align_corners", align_corners)
        self.return_theta = check_bool("return_theta", return_theta)
        if (
            not isinstance(localization_downsample, (int, np.integer))
            or isinstance(localization_downsample, bool)
            or localization_downsample < 1
        ):
            raise ValueError(
                "`localization_downsample` must be an int >= 1. Received: "
                f"localization_downsample={localization_downsample!r}"
            )
        self.localization_downsample = int(localization_downsample)
        if (
            not isinstance(localization_learning_rate_multiplier, (int, float))
            or isinstance(localization_learning_rate_multiplier, bool)
            or not 0.0 <= localization_learning_rate_multiplier
            or not np.isfinite(localization_learning_rate_multiplier)
        ):
            raise ValueError(
                "`localization_learning_rate_multiplier` must be a finite "
                "number >= 0. Received: localization_learning_rate_multiplier="
                f"{localization_learning_rate_multiplier!r}"
            )
        self.localization_learning_rate_multiplier = float(
            localization_learning_rate_multiplier
        )
        self.data_format = sampling.validate_data_format(data_format)
        self.num_parameters = grids.num_parameters(
            transform, self.tps_grid_shape
        )

    def identity_parameters(self):
        return grids.identity_parameters(self.transform, self.tps_grid_shape)

    def _spatial_size(self, input_shape):
        if self.data_format == "channels_first":
            return tuple(input_shape[2:4])
        return tuple(input_shape[1:3])

    def _localization_size(self, input_shape):
        height, width = self._spatial_size(input_shape)
        factor = self.localization_downsample
        return max(height // factor, 1), max(width // factor, 1)

    def _localization_shape(self, input_shape):
        height, width = self._localization_size(input_shape)
        if self.data_format == "channels_first":
            return (input_shape[0], input_shape[1], height, width)
        return (input_shape[0], height, width, input_shape[3])

    def _output_size(self, input_shape):
        return self.output_size or self._spatial_size(input_shape)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 4 or None in self._spatial_size(input_shape):
            raise ValueError(
                f"SpatialTransformer '{self.name}' expects rank-4 images "
                "with known height and width. "
                f"Received: input_shape={input_shape}"
            )
        localization_shape = self._localization_shape(input_shape)
        if not self.localization_net.built:
            self.localization_net.build(localization_shape)
        features_shape = self.localization_net.compute_output_shape(
            localization_shape
        )
        num_features = int(np.prod(features_shape[1:]))
        self.regression = keras.layers.Dense(
            self.num_parameters,
            kernel_initializer="zeros",
            bias_initializer=keras.initializers.Constant(
                self.identity_parameters()
            ),
            dtype=self.dtype_policy,
            name="regression",
        )
        self.regression.build((input_shape[0], num_features))

    def call(self, inputs, training=None):
        images = ops.cast(inputs, self.compute_dtype)
        localization_input = images
        if self.localization_downsample > 1:
            localization_input = ops.image.resize(
                images,
                self._localization_size(images.shape),
                interpolation="bilinear",
                data_format=self.data_format,
            )
        features = self.localization_net(localization_input, training=training)
        features = ops.reshape(features, (ops.shape(features)[0], -1))
        theta = self.regression(features)
        theta = ops.cast(theta, "float32")
        theta = scale_gradient(theta, self.localization_learning_rate_multiplier)
        grid = grids.make_grid(
            self.transform,
            theta,
            self._output_size(images.shape),
            align_corners=self.align_corners,
            tps_grid_shape=self.tps_grid_shape,
        )
        output = sampling.bilinear_sample(
            images,
            grid,
            padding_mode=self.padding_mode,
            align_corners=self.align_corners,
            data_format=self.data_format,
        )
        if self.return_theta:
            return [output, theta]
        return output

    def compute_output_shape(self, input_shape):
        height, width = self._output_size(input_shape)
        if self.data_format == "channels_first":
            shape = (input_shape[0], input_shape[1], height, width)
        else:
            shape = (input_shape[0], height, width, input_shape[3])
        if self.return_theta:
            return [shape, (input_shape[0], self.num_parameters)]
        return shape

    def compute_output_spec(self, inputs, training=None):
        shape = self.compute_output_shape(inputs.shape)
        if self.return_theta:
            return [
                keras.KerasTensor(shape[0], dtype=self.compute_dtype),
                keras.KerasTensor(shape[1], dtype="float32"),
            ]
        return keras.KerasTensor(shape, dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "localization_net": keras.saving.serialize_keras_object(
                    self.localization_net
                ),
                "output_size": self.output_size,
                "transform": self.transform,
                "tps_grid_shape": self.tps_grid_shape,
                "padding_mode": self.padding_mode,
                "align_corners": self.align_corners,
                "localization_downsample": self.localization_downsample,
                "localization_learning_rate_multiplier": (
                    self.localization_learning_rate_multiplier
                ),
                "return_theta": self.return_theta,
                "data_format": self.data_format,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["localization_net"] = keras.saving.deserialize_keras_object(
            config["localization_net"]
        )
        return cls(**config)
