"""Traffic-sign (GTSRB) models: IDSIA's network, Moodstocks' ST version, a compact one.

``idsia`` is a single column of Ciresan et al.'s IJCNN 2011 winner with the
filter counts of the Moodstocks experiment (``--cnn 150,200,300,350``);
``st_idsia`` adds Moodstocks' two spatial transformers (99.61% top-1 on
GTSRB without augmentation): one on the input (localisation 200, 300, 200)
and one on the feature maps before the third convolution (150, 150, 150).
``compact_st_cnn`` is a small ST-CNN that trains in minutes on a CPU.
"""

import keras

from stn_keras.models import blocks
from stn_keras.models.mnist import check_input_size
from stn_keras.ops import DEFAULT_TPS_GRID_SHAPE


def _convolution_block(features, filters, kernel_size, index, padding="valid"):
    features = keras.layers.Conv2D(
        filters,
        kernel_size,
        padding=padding,
        activation="relu",
        name=f"conv_{index}",
    )(features)
    return keras.layers.MaxPooling2D(2, padding="same", name=f"pool_{index}")(
        features
    )


def idsia(input_shape, num_classes, filters=(150, 200, 300), dense_units=350, dropout=0.0):
    """IDSIA column: 7x7, 4x4, 4x4 convolutions each with 2x2 pooling, dense.

    ``dropout``: rate after the dense layer during training (0: none).
    """
    check_input_size(input_shape, 28, "idsia")
    inputs = keras.Input(shape=input_shape, name="images")
    features = inputs
    for index, (count, kernel_size) in enumerate(zip(filters, (7, 4, 4)), 1):
        features = _convolution_block(features, count, kernel_size, index)
    outputs = blocks.classifier_head(features, num_classes, (dense_units,), dropout=dropout)
    return keras.Model(inputs, outputs, name="idsia")


def st_idsia(
    input_shape,
    num_classes,
    transform="affine",
    loc_conv="conv",
    loc_activation="relu",
    filters=(150, 200, 300),
    dense_units=350,
    input_localization=(200, 300, 200),
    feature_localization=(150, 150, 150),
    grid_shape=DEFAULT_TPS_GRID_SHAPE,
    localization_learning_rate_multiplier=1.0,
    dropout=0.0,
):
    """IDSIA column with a transformer on the input and one before conv 3.

    Each localisation net is ``(conv filters..., dense units)``: 2x2 pool,
    then per convolution a 5x5 conv and a 2x2 pool, then the dense layer.
    The feature-map transformer's convolutions use ``"same"`` padding as its
    input is small (5x5 for 32x32 images). ``dropout``: rate after the
    dense layer during training (0: none).
    """
    check_input_size(input_shape, 28, "st_idsia")
    inputs = keras.Input(shape=input_shape, name="images")
    features = blocks.spatial_transformer(
        inputs,
        blocks.convolutional_localization_net(
            input_localization[:-1],
            5,
            input_localization[-1],
            "localization_net_1",
            loc_conv,
            loc_activation,
            pool_first=True,
        ),
        transform,
        "transformer_1",
        grid_shape=grid_shape,
        localization_learning_rate_multiplier=localization_learning_rate_multiplier,
    )
    for index, (count, kernel_size) in enumerate(zip(filters[:2], (7, 4)), 1):
        features = _convolution_block(features, count, kernel_size, index)
    features = blocks.spatial_transformer(
        features,
        blocks.convolutional_localization_net(
            feature_localization[:-1],
            5,
            feature_localization[-1],
            "localization_net_2",
            loc_conv,
            loc_activation,
            pool_first=True,
            padding="same",
        ),
        transform,
        "transformer_2",
        grid_shape=grid_shape,
        localization_learning_rate_multiplier=localization_learning_rate_multiplier,
    )
    features = _convolution_block(features, filters[2], 4, 3)
    outputs = blocks.classifier_head(features, num_classes, (dense_units,), dropout=dropout)
    return keras.Model(inputs, outputs, name="st_idsia")


def compact_st_cnn(
    input_shape,
    num_classes,
    transform="affine",
    loc_conv="conv",
    loc_activation="relu",
    filters=(32, 64, 128),
    dense_units=128,
    localization=(16, 32, 64),
    grid_shape=DEFAULT_TPS_GRID_SHAPE,
    localization_learning_rate_multiplier=1.0,
    dropout=0.0,
):
    """A small ST-CNN for 32x32 colour signs: trains in minutes on a CPU.

    The transformer looks at the input through a 2x2 pool and two 5x5
    convolutions; the classifier has three 3x3 conv + pool blocks, then a
    dense layer (``dropout``: its rate during training, 0: none).
    """
    check_input_size(input_shape, 16, "compact_st_cnn")
    inputs = keras.Input(shape=input_shape, name="images")
    features = blocks.spatial_transformer(
        inputs,
        blocks.convolutional_localization_net(
            localization[:-1],
            5,
            localization[-1],
            "localization_net",
            loc_conv,
            loc_activation,
            pool_first=True,
            padding="same",
        ),
        transform,
        "transformer",
        grid_shape=grid_shape,
        localization_learning_rate_multiplier=localization_learning_rate_multiplier,
    )
    for index, count in enumerate(filters, 1):
        features = _convolution_block(features, count, 3, index, padding="same")
    outputs = blocks.classifier_head(features, num_classes, (dense_units,), dropout=dropout)
    return keras.Model(inputs, outputs, name="compact_st_cnn")
