"""`SpatialTransformer`: the full module of Jaderberg et al. 2015."""

import keras
import numpy as np
from keras import ops

from stn_keras.ops import grids
from stn_keras.ops import sampling
from stn_keras.validation import check_bool
from stn_keras.validation import check_data_format
from stn_keras.validation import check_int
from stn_keras.validation import check_number
from stn_keras.validation import with_current_names


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
    ``output_size`` and the sampler reads the input there. At
    initialisation the layer therefore passes the input through (resampled
    to ``output_size``), and training learns where to look.

    Images (rank 4) take any transform; volumes (rank 5, ``(batch, depth,
    height, width, channels)``) take the 12-parameter 3-D affine transform
    and a localisation net of the user's making for volumes (``Conv3D``...).

    Jaderberg et al., "Spatial Transformer Networks", NeurIPS 2015
    (arXiv:1506.02025).

    Args:
        localization_net: a Keras layer or model mapping the (optionally
            downsampled) input to features; any output rank, it is flattened
            before the regression head. It must not end in the regression
            itself: the layer adds the identity-initialised head.
        output_size: ``(height, width)`` of the output (an int for square),
            ``(depth, height, width)`` for volumes, or ``None`` for the
            input's size.
        transform: ``"affine"`` (6 parameters, 12 for volumes),
            ``"attention"`` (3: scale, tx, ty), ``"similarity"`` (4: angle,
            scale, tx, ty), ``"projective"`` (8) or ``"tps"`` (thin-plate
            spline, two per control point).
        control_shape: ``(rows, columns)`` of the TPS control lattice.
        mode: the sampling kernel: ``"bilinear"`` (trilinear on volumes),
            ``"nearest"`` (passes no gradient to theta) or ``"bicubic"``
            (images only).
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``.
        align_corners: grid convention, as ``torch.nn.functional.affine_grid``.
        localization_downsample: integer factor by which the input is
            linearly downsampled before the localisation network (the
            paper's ST-CNNs localise on a 2x-downsampled input).
        localization_learning_rate_multiplier: factor on the gradients
            reaching the regression head and the localisation network. With
            plain or momentum SGD (the paper's optimiser) this is exactly a
            learning-rate multiplier for those weights (the paper uses 0.1
            on SVHN); adaptive optimisers such as Adam largely normalise it
            away.
        return_theta: also return ``theta``, ``(batch, num_parameters)``,
            for visualisation. Without it, `localize` computes ``theta``
            and `sample` the output for a given ``theta``.
        data_format: ``"channels_last"``, ``"channels_first"`` or ``None``.
        **kwargs: base ``keras.layers.Layer`` arguments.

    Input shape:
        ``(batch, height, width, channels)`` or ``(batch, depth, height,
        width, channels)`` (channels_last), or with the channels on axis 1
        (channels_first); the spatial sizes must be known.

    Output shape:
        The transformed input with spatial shape ``output_size``, and with
        ``return_theta`` a list ``[output, theta]``.

    Example:

    >>> localization_net = keras.Sequential([
    ...     keras.layers.Conv2D(8, 5, activation="relu"),
    ...     keras.layers.MaxPooling2D(),
    ...     keras.layers.Flatten(),
    ...     keras.layers.Dense(20, activation="relu"),
    ... ])
    >>> transformer = SpatialTransformer(localization_net, output_size=(28, 28))
    >>> images = np.zeros((2, 42, 42, 1), "float32")
    >>> tuple(transformer(images).shape)
    (2, 28, 28, 1)
    >>> theta = transformer.localize(images)  # the identity at initialisation
    >>> tuple(theta.shape), tuple(transformer.sample(images, theta).shape)
    ((2, 6), (2, 28, 28, 1))
    """

    def __init__(
        self,
        localization_net,
        output_size=None,
        transform="affine",
        control_shape=grids.DEFAULT_TPS_CONTROL_SHAPE,
        mode="bilinear",
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
        if output_size is not None:
            output_size = grids.check_output_size(
                output_size, grids.spatial_rank_of(output_size)
            )
        self.output_size = output_size
        self.transform = grids.check_transform(
            transform, grids.spatial_rank_of(output_size or ())
        )
        self.control_shape = grids.check_control_shape(control_shape)
        self.mode = sampling.check_mode(mode)
        self.padding_mode = sampling.check_padding_mode(padding_mode)
        self.align_corners = check_bool("align_corners", align_corners)
        self.return_theta = check_bool("return_theta", return_theta)
        self.localization_downsample = check_int(
            "localization_downsample", localization_downsample, 1
        )
        self.localization_learning_rate_multiplier = check_number(
            "localization_learning_rate_multiplier",
            localization_learning_rate_multiplier,
            minimum=0.0,
        )
        self.data_format = check_data_format(data_format)

    def num_parameters(self, spatial_rank=2):
        """Parameters the head regresses, for images (2) or volumes (3)."""
        return grids.num_parameters(self.transform, self.control_shape, spatial_rank)

    def identity_parameters(self, spatial_rank=2):
        """Parameters of the identity transform, for images or volumes."""
        return grids.identity_parameters(
            self.transform, self.control_shape, spatial_rank
        )

    def _spatial_size(self, input_shape):
        if self.data_format == "channels_first":
            return tuple(input_shape[2:])
        return tuple(input_shape[1:-1])

    def _localization_size(self, input_shape):
        factor = self.localization_downsample
        return tuple(
            max(size // factor, 1) for size in self._spatial_size(input_shape)
        )

    def _with_spatial_size(self, input_shape, size):
        if self.data_format == "channels_first":
            return (input_shape[0], input_shape[1], *size)
        return (input_shape[0], *size, input_shape[-1])

    def _output_size(self, input_shape):
        return self.output_size or self._spatial_size(input_shape)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        spatial_rank = len(input_shape) - 2
        if spatial_rank not in (2, 3) or None in self._spatial_size(input_shape):
            raise ValueError(
                f"SpatialTransformer '{self.name}' expects images (rank 4) or "
                "volumes (rank 5) with known spatial sizes. "
                f"Received: input_shape={input_shape}"
            )
        if self.output_size is not None and len(self.output_size) != spatial_rank:
            raise ValueError(
                f"SpatialTransformer '{self.name}': `output_size` must have "
                f"one entry per spatial axis of the input ({spatial_rank}). "
                f"Received: output_size={self.output_size}, "
                f"input_shape={input_shape}"
            )
        grids.check_transform(self.transform, spatial_rank)
        if self.mode == "bicubic" and spatial_rank == 3:
            raise ValueError(
                f"SpatialTransformer '{self.name}': mode='bicubic' samples "
                "images only; use 'bilinear' or 'nearest' for volumes. "
                f"Received: input_shape={input_shape}"
            )
        localization_shape = self._with_spatial_size(
            input_shape, self._localization_size(input_shape)
        )
        if not self.localization_net.built:
            self.localization_net.build(localization_shape)
        features_shape = self.localization_net.compute_output_shape(
            localization_shape
        )
        num_features = int(np.prod(features_shape[1:]))
        self.regression = keras.layers.Dense(
            self.num_parameters(spatial_rank),
            kernel_initializer="zeros",
            bias_initializer=keras.initializers.Constant(
                self.identity_parameters(spatial_rank)
            ),
            dtype=self.dtype_policy,
            name="regression",
        )
        self.regression.build((input_shape[0], num_features))

    def _downsample(self, images):
        size = self._localization_size(images.shape)
        if len(size) == 2:
            return ops.image.resize(
                images, size, interpolation="bilinear", data_format=self.data_format
            )
        # No volumetric resize in keras.ops: sample the identity grid of the
        # smaller size, which reads the same half-pixel-centred points.
        identity = ops.convert_to_tensor(self.identity_parameters(3))
        theta = ops.tile(identity[None], (ops.shape(images)[0], 1))
        return sampling.grid_sample(
            images,
            grids.affine_grid(theta, size),
            padding_mode="border",
            data_format=self.data_format,
        )

    def localize(self, inputs, training=None):
        """The transform parameters ``theta`` the layer computes for ``inputs``.

        The first half of `call`: the (optionally downsampled) input through
        the localisation network and the regression head. With `sample`, it
        gives both ``theta`` and the output of one pass, whatever
        ``return_theta`` says.

        Args:
            inputs: a batch the layer accepts (see the class's input shape).
            training: passed to the localisation network.

        Returns:
            ``(batch, num_parameters)`` float32 parameters.
        """
        if not self.built:
            self.build(tuple(inputs.shape))
        images = ops.cast(inputs, self.compute_dtype)
        if self.localization_downsample > 1:
            images = self._downsample(images)
        features = self.localization_net(images, training=training)
        features = ops.reshape(features, (ops.shape(features)[0], -1))
        theta = ops.cast(self.regression(features), "float32")
        return scale_gradient(theta, self.localization_learning_rate_multiplier)

    def sample(self, inputs, theta):
        """``inputs`` sampled on the grid of ``theta``: the second half of `call`.

        Args:
            inputs: a batch the layer accepts.
            theta: ``(batch, num_parameters)`` parameters, from `localize` or
                chosen by hand.

        Returns:
            The transformed batch, of spatial size ``output_size``.
        """
        images = ops.cast(inputs, self.compute_dtype)
        grid = grids.make_grid(
            self.transform,
            theta,
            self._output_size(images.shape),
            align_corners=self.align_corners,
            control_shape=self.control_shape,
        )
        return sampling.grid_sample(
            images,
            grid,
            mode=self.mode,
            padding_mode=self.padding_mode,
            align_corners=self.align_corners,
            data_format=self.data_format,
        )

    def call(self, inputs, training=None):
        theta = self.localize(inputs, training=training)
        output = self.sample(inputs, theta)
        if self.return_theta:
            return [output, theta]
        return output

    def compute_output_shape(self, input_shape):
        shape = self._with_spatial_size(input_shape, self._output_size(input_shape))
        if self.return_theta:
            num_parameters = self.num_parameters(len(input_shape) - 2)
            return [shape, (input_shape[0], num_parameters)]
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
                "control_shape": self.control_shape,
                "mode": self.mode,
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
        # Files saved before the TPS lattice argument was renamed, twice.
        config = with_current_names(
            config,
            {"tps_grid_shape": "control_shape", "grid_shape": "control_shape"},
            f"the config of SpatialTransformer '{config.get('name')}'",
        )
        config["localization_net"] = keras.saving.deserialize_keras_object(
            config["localization_net"]
        )
        return cls(**config)
