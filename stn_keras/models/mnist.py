"""The distorted-MNIST models of Jaderberg et al. 2015, appendix A.4.

``fcn`` and ``cnn`` are the baselines; ``st_fcn`` and ``st_cnn`` put a
spatial transformer in front of a slightly smaller copy of them so that the
two have comparable capacity (see ``docs/TRAINING.md`` for the counts).
``st_cnn`` with ``num_transformers=2`` is the paper's 2xST-CNN for the
two-digit addition task (appendix A.1).
"""

import keras

from stn_keras.layers import DepthwiseGradientConv2D
from stn_keras.models import blocks
from stn_keras.ops import DEFAULT_TPS_CONTROL_SHAPE
from stn_keras.validation import check_int


def convolutional_features(features, filters, activation_kind="relu"):
    """The paper's CNN trunk: 9x9 conv, 2x2 pool, 7x7 conv, 2x2 pool (ReLU).

    The first convolution reads the (transformed) images: behind a
    transformer its input gradient is part of every step, and for
    single-channel digits `DepthwiseGradientConv2D` computes it fastest.
    """
    for index, kernel_size in enumerate((9, 7), start=1):
        layer = DepthwiseGradientConv2D if index == 1 else keras.layers.Conv2D
        features = layer(filters, kernel_size, name=f"conv_{index}")(features)
        features = keras.layers.MaxPooling2D(2, name=f"pool_{index}")(features)
        features = blocks.activation(activation_kind, f"activation_{index}")(
            features
        )
    return features


def fcn(input_shape, num_classes, hidden_units=(128, 128, 128)):
    """Fully connected baseline: ReLU dense layers on the flattened image."""
    return blocks.classifier(
        "fcn", input_shape, num_classes, lambda images: images, hidden_units
    )


def cnn(input_shape, num_classes, filters=36, dense_units=50, dropout=0.0):
    """Convolutional baseline (36 filters: about the ST-CNN's capacity).

    ``dropout``: rate after the dense layer during training (0: none; the
    paper has none).
    """
    return blocks.classifier(
        "cnn",
        input_shape,
        num_classes,
        lambda images: convolutional_features(images, filters),
        (dense_units,),
        dropout=dropout,
        minimum_size=24,
    )


def st_fcn(
    input_shape,
    num_classes,
    transform="affine",
    localization_convolution="conv",
    localization_activation="relu",
    hidden_units=(108, 108, 108),
    localization_units=(32, 32, 32),
    transformer_output_size=None,
    control_shape=DEFAULT_TPS_CONTROL_SHAPE,
    localization_learning_rate_multiplier=1.0,
):
    """ST-FCN: a dense-localised transformer on the input, then an FCN.

    ``localization_convolution`` is accepted for a uniform interface but
    must stay ``"conv"``: the ST-FCN localisation net has no convolution.
    """
    if localization_convolution != "conv":
        raise ValueError(
            "Model 'st_fcn' has a fully connected localisation net, so "
            "`localization_convolution` does not apply; use st_cnn for "
            f"CoordConv. Received: localization_convolution={localization_convolution!r}"
        )
    options = blocks.TransformerOptions(
        transform,
        localization_convolution,
        localization_activation,
        control_shape,
        localization_learning_rate_multiplier,
    )

    def features(images):
        localization_net = blocks.dense_localization_net(
            localization_units, "localization_net", options
        )
        return blocks.transformed_images(
            images,
            localization_net,
            options,
            "transformer",
            output_size=transformer_output_size,
        )

    return blocks.classifier("st_fcn", input_shape, num_classes, features, hidden_units)


def st_cnn(
    input_shape,
    num_classes,
    transform="affine",
    localization_convolution="conv",
    localization_activation="relu",
    filters=32,
    dense_units=50,
    localization_filters=20,
    localization_units=20,
    num_transformers=1,
    transformer_output_size=None,
    control_shape=DEFAULT_TPS_CONTROL_SHAPE,
    localization_learning_rate_multiplier=1.0,
    dropout=0.0,
):
    """ST-CNN: transformer(s) localised on the 2x-downsampled input, then a CNN.

    Each localisation net: two 5x5 convolutions of ``localization_filters``
    with a 2x2 max-pool between them, a ``localization_units`` dense layer
    (the layer adds the identity-initialised regression head). With
    ``num_transformers=2`` (the addition task) two transformers look at the
    whole input in parallel and their outputs are concatenated on the channel
    axis, so each can learn to attend to one digit. ``dropout``: rate after
    the classifier's dense layer during training (0: none; the paper has
    none).
    """
    num_transformers = check_int("num_transformers", num_transformers, 1)
    options = blocks.TransformerOptions(
        transform,
        localization_convolution,
        localization_activation,
        control_shape,
        localization_learning_rate_multiplier,
    )

    def features(images):
        transformed = []
        for index in range(1, num_transformers + 1):
            suffix = "" if num_transformers == 1 else f"_{index}"
            localization_net = blocks.convolutional_localization_net(
                (localization_filters, localization_filters),
                5,
                localization_units,
                f"localization_net{suffix}",
                options,
            )
            transformed.append(
                blocks.transformed_images(
                    images,
                    localization_net,
                    options,
                    f"transformer{suffix}",
                    localization_downsample=2,
                    output_size=transformer_output_size,
                )
            )
        features = transformed[0]
        if num_transformers > 1:
            features = keras.layers.Concatenate(name="transformed_channels")(
                transformed
            )
        return convolutional_features(features, filters)

    return blocks.classifier(
        "st_cnn", input_shape, num_classes, features, (dense_units,), dropout=dropout, minimum_size=28
    )
