"""Traffic-sign (GTSRB) models: IDSIA's network, Moodstocks' ST version, a compact one.

``idsia`` is a single column of Ciresan et al.'s IJCNN 2011 winner with the
filter counts of the Moodstocks experiment (``--cnn 150,200,300,350``);
``st_idsia`` adds Moodstocks' two spatial transformers (99.61% top-1 on
GTSRB without augmentation): one on the input (localisation 200, 300, 200)
and one on the feature maps before the third convolution (150, 150, 150).
``compact_st_cnn`` is a small ST-CNN that trains in minutes on a CPU, and
``compact_cnn`` the same classifier without its transformer.
"""

import keras

from stn_keras.layers import PerImageStandardization
from stn_keras.models import blocks
from stn_keras.ops import DEFAULT_TPS_CONTROL_SHAPE
from stn_keras.validation import check_bool
from stn_keras.validation import check_int


def _convolution_block(
    features, filters, kernel_size, index, padding="valid", convolutions=1, batch_normalization=False
):
    """``convolutions`` ReLU convolutions, then a 2x2 max pool.

    With ``batch_normalization``, each convolution's output is batch
    normalised before its ReLU (and the convolution has no bias, which the
    normalisation's offset replaces). One convolution is named ``conv_{index}``
    as in the original networks; several, ``conv_{index}_{1, 2, ...}``.
    """
    for number in range(1, convolutions + 1):
        name = f"conv_{index}" if convolutions == 1 else f"conv_{index}_{number}"
        features = keras.layers.Conv2D(
            filters,
            kernel_size,
            padding=padding,
            activation=None if batch_normalization else "relu",
            use_bias=not batch_normalization,
            name=name,
        )(features)
        if batch_normalization:
            features = keras.layers.BatchNormalization(name=f"{name}_batch_normalization")(features)
            features = keras.layers.Activation("relu", name=f"{name}_relu")(features)
    return keras.layers.MaxPooling2D(2, padding="same", name=f"pool_{index}")(
        features
    )


def _transformed(features, localization, options, suffix="", padding="valid"):
    """``features`` through a transformer localised as in Moodstocks' models.

    The localisation net is a 2x2 pool, then a 5x5 convolution and a 2x2 pool
    per filter count of ``localization[:-1]``, then a dense layer of
    ``localization[-1]`` units; its layers and the transformer are named with
    ``suffix``.
    """
    localization_net = blocks.convolutional_localization_net(
        localization[:-1],
        5,
        localization[-1],
        f"localization_net{suffix}",
        options,
        pool_first=True,
        padding=padding,
    )
    return blocks.transformed_images(
        features, localization_net, options, f"transformer{suffix}"
    )


def idsia(input_shape, num_classes, filters=(150, 200, 300), dense_units=350, dropout=0.0):
    """IDSIA column: 7x7, 4x4, 4x4 convolutions each with 2x2 pooling, dense.

    ``dropout``: rate after the dense layer during training (0: none).
    """

    def features(images):
        for index, (count, kernel_size) in enumerate(zip(filters, (7, 4, 4)), 1):
            images = _convolution_block(images, count, kernel_size, index)
        return images

    return blocks.classifier(
        "idsia",
        input_shape,
        num_classes,
        features,
        (dense_units,),
        dropout=dropout,
        minimum_size=28,
    )


def st_idsia(
    input_shape,
    num_classes,
    transform="affine",
    localization_convolution="conv",
    localization_activation="relu",
    filters=(150, 200, 300),
    dense_units=350,
    input_localization=(200, 300, 200),
    feature_localization=(150, 150, 150),
    control_shape=DEFAULT_TPS_CONTROL_SHAPE,
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
    options = blocks.TransformerOptions(
        transform,
        localization_convolution,
        localization_activation,
        control_shape,
        localization_learning_rate_multiplier,
    )

    def features(images):
        features = _transformed(images, input_localization, options, "_1")
        for index, (count, kernel_size) in enumerate(zip(filters[:2], (7, 4)), 1):
            features = _convolution_block(features, count, kernel_size, index)
        features = _transformed(
            features, feature_localization, options, "_2", padding="same"
        )
        return _convolution_block(features, filters[2], 4, 3)

    return blocks.classifier(
        "st_idsia",
        input_shape,
        num_classes,
        features,
        (dense_units,),
        dropout=dropout,
        minimum_size=28,
    )


def _compact_classifier(
    name, input_shape, num_classes, transformer, filters, dense_units, dropout,
    convolutions_per_block, batch_normalization, standardize_images,
):
    """The compact models' classifier, after ``transformer`` (None: no transformer)."""
    convolutions_per_block = check_int("convolutions_per_block", convolutions_per_block, 1)
    batch_normalization = check_bool("batch_normalization", batch_normalization)
    standardize_images = check_bool("standardize_images", standardize_images)

    def features(images):
        if standardize_images:
            images = PerImageStandardization(name="standardization")(images)
        if transformer is not None:
            images = transformer(images)
        for index, count in enumerate(filters, 1):
            images = _convolution_block(
                images,
                count,
                3,
                index,
                padding="same",
                convolutions=convolutions_per_block,
                batch_normalization=batch_normalization,
            )
        return images

    return blocks.classifier(
        name,
        input_shape,
        num_classes,
        features,
        (dense_units,),
        dropout=dropout,
        minimum_size=16,
    )


def compact_cnn(
    input_shape,
    num_classes,
    filters=(32, 64, 128),
    dense_units=128,
    dropout=0.0,
    convolutions_per_block=1,
    batch_normalization=False,
    standardize_images=False,
):
    """`compact_st_cnn` without its transformer: the baseline it is compared with.

    The same classifier (three blocks of ``convolutions_per_block`` 3x3
    convolutions and a 2x2 pool, then a dense layer) and the same options,
    layer for layer, with the images going straight in.
    """
    return _compact_classifier(
        "compact_cnn", input_shape, num_classes, None,
        filters, dense_units, dropout, convolutions_per_block, batch_normalization, standardize_images,
    )


def compact_st_cnn(
    input_shape,
    num_classes,
    transform="affine",
    localization_convolution="conv",
    localization_activation="relu",
    filters=(32, 64, 128),
    dense_units=128,
    localization=(16, 32, 64),
    control_shape=DEFAULT_TPS_CONTROL_SHAPE,
    localization_learning_rate_multiplier=1.0,
    dropout=0.0,
    convolutions_per_block=1,
    batch_normalization=False,
    standardize_images=False,
):
    """A small ST-CNN for 32x32 colour signs: trains in minutes on a CPU.

    The transformer looks at the input through a 2x2 pool and two 5x5
    convolutions; the classifier has three blocks of
    ``convolutions_per_block`` 3x3 convolutions and a 2x2 pool (each
    convolution batch normalised with ``batch_normalization``), then a
    dense layer (``dropout``: its rate during training, 0: none). With
    ``standardize_images``, each image is first scaled to zero mean and unit
    variance (`PerImageStandardization`), inside the model, so a served
    model does it too.
    """
    options = blocks.TransformerOptions(
        transform,
        localization_convolution,
        localization_activation,
        control_shape,
        localization_learning_rate_multiplier,
    )
    def transformer(images):
        return _transformed(images, localization, options, padding="same")

    return _compact_classifier(
        "compact_st_cnn", input_shape, num_classes, transformer,
        filters, dense_units, dropout, convolutions_per_block, batch_normalization, standardize_images,
    )
