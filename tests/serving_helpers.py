"""Helpers shared by test_export.py and test_serving.py: tiny models and encoded images."""

import io

import numpy as np

CLASS_NAMES = ["zero", "one", "two"]


def build_st_cnn(input_shape=(28, 28, 1), num_classes=3, seed=0, nested=False):
    """A tiny ST-CNN with random, non-identity transformer weights.

    With ``nested=True`` the transformer sits, without ``return_theta``,
    inside a functional sub-model after a rescaling layer.
    """
    import keras

    from stn_keras.layers import SpatialTransformer

    keras.utils.set_random_seed(seed)
    localization_net = keras.Sequential(
        [
            keras.layers.Conv2D(4, 5, strides=2, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(8, activation="relu"),
        ]
    )
    transformer = SpatialTransformer(
        localization_net, return_theta=not nested, name="spatial_transformer"
    )
    inputs = keras.Input(input_shape)
    if nested:
        inner_inputs = keras.Input(input_shape)
        inner = keras.Model(
            inner_inputs, transformer(inner_inputs), name="transformer_block"
        )
        transformed = inner(keras.layers.Rescaling(0.5, offset=0.25)(inputs))
    else:
        transformed, _ = transformer(inputs)
    features = keras.layers.Conv2D(4, 3, activation="relu")(transformed)
    features = keras.layers.Flatten()(features)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(features)
    model = keras.Model(inputs, outputs)
    kernel = transformer.regression.kernel
    # Non-zero regression weights so that theta depends on the image.
    kernel.assign(np.random.RandomState(seed).normal(0, 0.05, kernel.shape))
    return model


def build_cnn(input_shape=(16, 16, 3), num_classes=4, seed=1):
    """A tiny CNN without a transformer."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape)
    features = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    features = keras.layers.Flatten()(features)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(features)
    return keras.Model(inputs, outputs)


def random_images(count, shape, seed):
    return np.random.RandomState(seed).rand(count, *shape).astype("float32")


def encode_image(pixels, image_format):
    """Encodes uint8 ``(height, width[, channels])`` pixels as PNG, JPEG, BMP, GIF or PPM/PGM bytes."""
    from PIL import Image

    if image_format == "PPM":
        magic = b"P6" if pixels.ndim == 3 else b"P5"
        height, width = pixels.shape[:2]
        header = b"%s\n# written by a test\n%d %d\n255\n" % (magic, width, height)
        return header + pixels.astype(np.uint8).tobytes()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, image_format)
    return buffer.getvalue()
