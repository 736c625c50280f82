"""Building blocks shared by the model families: the skeleton, localisation nets, heads."""

import dataclasses
import random

import keras

from stn_keras.layers import CoordConv
from stn_keras.layers import SpatialTransformer
from stn_keras.ops import DEFAULT_TPS_CONTROL_SHAPE
from stn_keras.validation import check_number

LOCALIZATION_CONVOLUTIONS = ("conv", "coordconv")
LOCALIZATION_ACTIVATIONS = ("relu", "leaky_relu")


def convolution(filters, kernel_size, name, kind="conv", padding="valid"):
    """A ``Conv2D`` or a ``CoordConv`` (``kind``) without activation."""
    if kind == "coordconv":
        return CoordConv(filters, kernel_size, padding=padding, name=name)
    return keras.layers.Conv2D(filters, kernel_size, padding=padding, name=name)


def activation(kind, name):
    """``ReLU`` or ``LeakyReLU`` (negative slope 0.01, as torch's default)."""
    if kind == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=0.01, name=name)
    return keras.layers.ReLU(name=name)


@dataclasses.dataclass(frozen=True)
class TransformerOptions:
    """What the spatial transformers of one model share.

    Attributes:
        transform: the transform, one of ``stn_keras.ops.TRANSFORMS``.
        localization_convolution: ``"conv"`` or ``"coordconv"`` in the
            convolutional localisation nets.
        localization_activation: ``"relu"`` or ``"leaky_relu"`` in the
            localisation nets.
        control_shape: ``(rows, columns)`` of the TPS control lattice.
        localization_learning_rate_multiplier: scales the gradients reaching
            the localisation nets (a learning-rate multiplier under plain
            SGD).
    """

    transform: str = "affine"
    localization_convolution: str = "conv"
    localization_activation: str = "relu"
    control_shape: tuple = DEFAULT_TPS_CONTROL_SHAPE
    localization_learning_rate_multiplier: float = 1.0


def convolutional_localization_net(
    filters,
    kernel_size,
    dense_units,
    name,
    options,
    pool_first=False,
    padding="valid",
):
    """A localisation net: [pool], (conv, activation, pool) per filter count, dense.

    The convolutions and activations are those of ``options``
    (`TransformerOptions`). The net is built by the ``SpatialTransformer``
    on the (downsampled) input it sees. The last pooling is skipped when
    ``pool_first`` is False (the paper's ST-CNN pools only between its two
    convolutions); pooling uses ``"same"`` padding so small feature maps
    never shrink to nothing. The net ends with features:
    ``SpatialTransformer`` adds the identity-initialised regression.
    """
    layers = []
    if pool_first:
        layers.append(
            keras.layers.MaxPooling2D(2, padding="same", name=f"{name}_pool_0")
        )
    for index, count in enumerate(filters, start=1):
        layers.append(
            convolution(
                count,
                kernel_size,
                f"{name}_conv_{index}",
                options.localization_convolution,
                padding,
            )
        )
        layers.append(
            activation(options.localization_activation, f"{name}_activation_{index}")
        )
        if pool_first or index < len(filters):
            layers.append(
                keras.layers.MaxPooling2D(
                    2, padding="same", name=f"{name}_pool_{index}"
                )
            )
    layers.append(keras.layers.Flatten(name=f"{name}_flatten"))
    layers.append(keras.layers.Dense(dense_units, name=f"{name}_dense"))
    layers.append(
        activation(options.localization_activation, f"{name}_dense_activation")
    )
    return keras.Sequential(layers, name=name)


def dense_localization_net(units, name, options):
    """A fully connected localisation net (the paper's ST-FCN: 3 x 32 units)."""
    layers = [keras.layers.Flatten(name=f"{name}_flatten")]
    for index, count in enumerate(units, start=1):
        layers.append(keras.layers.Dense(count, name=f"{name}_dense_{index}"))
        layers.append(
            activation(options.localization_activation, f"{name}_activation_{index}")
        )
    return keras.Sequential(layers, name=name)


def transformed_images(
    inputs,
    localization_net,
    options,
    name,
    localization_downsample=1,
    output_size=None,
):
    """``inputs`` through a new ``SpatialTransformer``: the transformed images.

    The transformer, named ``name``, takes the transform, TPS lattice and
    learning-rate multiplier of ``options`` (`TransformerOptions`) and is
    built with ``return_theta``: its theta stays reachable as the layer's
    second output for :func:`stn_keras.models.transformer_model`.
    """
    transformer = SpatialTransformer(
        localization_net,
        output_size=output_size,
        transform=options.transform,
        control_shape=options.control_shape,
        localization_downsample=localization_downsample,
        localization_learning_rate_multiplier=(
            options.localization_learning_rate_multiplier
        ),
        return_theta=True,
        name=name,
    )
    images, _ = transformer(inputs)
    return images


def classifier(
    name, input_shape, num_classes, features, hidden_units, dropout=0.0, minimum_size=1
):
    """The skeleton of every model: images -> ``features`` -> classifier head.

    Args:
        name: the model's name, also in the error for too small images.
        input_shape: ``(height, width, channels)``.
        num_classes: number of classes.
        features: maps the ``"images"`` input tensor to what the head
            classifies: the model's transformers and trunk.
        hidden_units: the head's dense layers (see `classifier_head`).
        dropout: the head's dropout rate.
        minimum_size: the smallest height and width the layers can take.

    Returns:
        A functional ``keras.Model`` named ``name``.
    """
    check_input_size(input_shape, minimum_size, name)
    inputs = keras.Input(shape=input_shape, name="images")
    outputs = classifier_head(features(inputs), num_classes, hidden_units, dropout=dropout)
    return keras.Model(inputs, outputs, name=name)


def check_input_size(input_shape, minimum, model_name):
    """Raises ValueError when the images are too small for the model's layers."""
    height, width = input_shape[0], input_shape[1]
    if height < minimum or width < minimum:
        raise ValueError(
            f"Model '{model_name}' needs images of at least {minimum}x{minimum} "
            "pixels for its convolutions and poolings. Received: "
            f"input_shape={tuple(input_shape)}"
        )


def classifier_head(features, num_classes, hidden_units, name_prefix="", dropout=0.0):
    """Flatten, ReLU dense layers, then a float32 softmax over the classes.

    The softmax runs in float32 so mixed precision never degrades the
    probabilities the model returns. With ``dropout`` > 0, each hidden dense
    layer's output is dropped at that rate during training (no layer is
    added at 0, so models without dropout keep their structure).
    """
    dropout = check_number("dropout", dropout, 0, 1, exclusive_maximum=True)
    features = keras.layers.Flatten(name=f"{name_prefix}flatten")(features)
    for index, units in enumerate(hidden_units, start=1):
        features = keras.layers.Dense(
            units, activation="relu", name=f"{name_prefix}dense_{index}"
        )(features)
        if dropout:
            # Seeded from the global seed as Keras seeds an unseeded layer;
            # but unseeded, the torch backend drops with torch's own RNG,
            # which no backup holds, so a resumed run would drop other units.
            features = keras.layers.Dropout(
                dropout,
                seed=random.randint(1, 10**9),
                name=f"{name_prefix}dropout_{index}",
            )(features)
    logits = keras.layers.Dense(num_classes, name="logits")(features)
    return keras.layers.Activation(
        "softmax", dtype="float32", name="probabilities"
    )(logits)
