"""In-graph decoding of encoded images for the ``predict_bytes`` signature."""

from stn_keras.export.image_headers import check_declared_size
from stn_keras.export.image_headers import netpbm_header
from stn_keras.export.names import DEFAULT_MAX_IMAGE_PIXELS


def decode_image(
    encoded,
    size,
    channels,
    resize_method="bilinear",
    antialias=True,
    max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS,
):
    """Decodes one encoded image to float32 ``(height, width, channels)``.

    The size the header declares is checked first (see
    `stn_keras.export.image_headers`); PNG, JPEG, BMP and GIF then go through
    ``tf.io.decode_image``, binary PPM and PGM through `decode_netpbm`.
    Values are scaled to ``[0, 1]``, the channels converted as
    `export_saved_model` describes, and the image resized to ``size``. Works
    eagerly and inside a ``tf.function``.

    Args:
        encoded: scalar string tensor, the file's bytes.
        size: ``(height, width)`` of the output.
        channels: 1 or 3, channels of the output.
        resize_method: method of ``tf.image.resize``.
        antialias: the ``antialias`` argument of ``tf.image.resize``.
        max_image_pixels: the most decoded pixels (height x width x GIF
            frames) an image may declare.

    Returns:
        A float32 tensor of shape ``(height, width, channels)``.

    Raises:
        tf.errors.InvalidArgumentError: for an unknown format, a corrupt file
            or an image over ``max_image_pixels``.
    """
    import tensorflow as tf

    encoded = check_declared_size(encoded, max_image_pixels)
    is_netpbm = tf.strings.regex_full_match(
        tf.strings.substr(encoded, 0, 2), "P[56]"
    )
    image = tf.cond(
        is_netpbm,
        lambda: decode_netpbm(encoded),
        lambda: tf.io.decode_image(
            encoded, dtype=tf.float32, expand_animations=False
        ),
    )
    image = _convert_channels(image, channels)
    image = tf.image.resize(image, size, method=resize_method, antialias=antialias)
    return tf.ensure_shape(image, (*size, channels))


def _convert_channels(image, channels):
    import tensorflow as tf

    decoded_channels = tf.shape(image)[-1]
    # Grey+alpha and RGBA lose their alpha channel; the colour part is kept.
    colour = tf.cond(
        tf.logical_or(tf.equal(decoded_channels, 2), tf.equal(decoded_channels, 4)),
        lambda: image[..., :-1],
        lambda: image,
    )
    is_grey = tf.equal(tf.shape(colour)[-1], 1)
    if channels == 1:
        return tf.cond(
            is_grey, lambda: colour, lambda: tf.image.rgb_to_grayscale(colour)
        )
    return tf.cond(
        is_grey, lambda: tf.image.grayscale_to_rgb(colour), lambda: colour
    )


def decode_netpbm(encoded):
    """Decodes a binary PPM (``P6``) or PGM (``P5``) image in graph ops.

    Args:
        encoded: scalar string tensor, the file's bytes.

    Returns:
        float32 ``(height, width, 3 or 1)``, the samples divided by the
        header's maxval.
    """
    import tensorflow as tf

    magic, width, height, maxval, stripped = netpbm_header(encoded)
    tf.debugging.assert_greater(
        maxval, 0, message="Invalid PPM/PGM header: maxval must be in [1, 65535]"
    )
    tf.debugging.assert_less(
        maxval, 65536, message="Invalid PPM/PGM header: maxval must be in [1, 65535]"
    )
    channels = tf.where(tf.equal(magic, "P6"), 3, 1)
    bytes_per_sample = tf.where(maxval > 255, 2, 1)
    raster_length = (
        tf.cast(width, tf.int64) * tf.cast(height, tf.int64)
        * tf.cast(channels * bytes_per_sample, tf.int64)
    )
    check = tf.debugging.assert_greater_equal(
        tf.cast(tf.strings.length(stripped), tf.int64),
        raster_length,
        message="Truncated PPM/PGM: the raster is shorter than width x height "
        "x channels x bytes per sample",
    )
    with tf.control_dependencies([check]):
        raster = tf.strings.substr(stripped, 0, tf.cast(raster_length, tf.int32))
    samples = tf.cond(
        maxval > 255,
        lambda: tf.cast(
            tf.io.decode_raw(raster, tf.uint16, little_endian=False), tf.float32
        ),
        lambda: tf.cast(tf.io.decode_raw(raster, tf.uint8), tf.float32),
    )
    image = tf.reshape(samples, tf.stack([height, width, channels]))
    return image / tf.cast(maxval, tf.float32)
