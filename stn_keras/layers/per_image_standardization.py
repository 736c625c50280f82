"""`PerImageStandardization`: each image scaled to zero mean and unit variance."""

import keras
from keras import ops

from stn_keras.validation import check_number


def standardize_images(images, minimum_stddev=1.0 / 255.0):
    """Each image of ``images`` less its mean, over its standard deviation.

    Mean and standard deviation are taken over all of an image's pixels and
    channels together, so its colours keep their relations. A dark,
    low-contrast picture and a bright one of the same scene come out alike.

    Args:
        images: ``(batch, ...)`` tensor.
        minimum_stddev: floor on the divisor, so a flat image becomes zeros
            instead of noise divided by almost nothing.

    Returns:
        A tensor of the shape and dtype of ``images``.
    """
    axes = tuple(range(1, len(images.shape)))
    mean = ops.mean(images, axis=axes, keepdims=True)
    centred = images - mean
    stddev = ops.sqrt(ops.mean(ops.square(centred), axis=axes, keepdims=True))
    return centred / ops.maximum(stddev, ops.cast(minimum_stddev, images.dtype))


@keras.saving.register_keras_serializable(package="stn_keras")
class PerImageStandardization(keras.layers.Layer):
    """Scales each image to zero mean and unit standard deviation.

    A contrast normalisation inside the model, so a saved or served model
    applies it to raw images itself: traffic-sign pictures range from
    almost black to washed out, and Ciresan et al. (IJCNN 2011) normalised
    their contrast before the IDSIA network saw them. Statistics are per
    image, over all its pixels and channels, the same at training and
    inference; the layer has no weights.

    Args:
        minimum_stddev: floor on the standard deviation an image is divided
            by (default one grey level of an 8-bit image scaled to
            ``[0, 1]``), so a flat image becomes zeros.
        **kwargs: base ``keras.layers.Layer`` arguments.

    Input shape:
        ``(batch, ...)``, any data format.

    Output shape:
        the input's.

    Example:

    >>> layer = PerImageStandardization()
    >>> images = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype("float32")
    >>> standardized = keras.ops.convert_to_numpy(layer(images * 0.1))
    >>> bool(abs(standardized.std(axis=(1, 2, 3)) - 1).max() < 1e-4)
    True
    """

    def __init__(self, minimum_stddev=1.0 / 255.0, **kwargs):
        super().__init__(**kwargs)
        self.minimum_stddev = check_number(
            "minimum_stddev", minimum_stddev, 0, exclusive_minimum=True
        )

    def call(self, inputs):
        return standardize_images(inputs, self.minimum_stddev)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"minimum_stddev": self.minimum_stddev})
        return config
