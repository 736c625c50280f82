"""In-graph decoding of encoded images for the ``predict_bytes`` signature.

Each TensorFlow decoder is called only on the format it is meant for, after
`check_image_header` passed, and only in the dtype it decodes safely:
``decode_image`` to float aborts the process on a top-down BMP (TensorFlow
2.21 sizes its buffer with the negative height), so every format is decoded
to integers and converted to float here.
"""

from stn_keras.export.image_headers import bmp_palette_colours
from stn_keras.export.image_headers import check_image_header
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

    The header is checked first (see `stn_keras.export.image_headers`); the
    image is then decoded by its format's decoder (`decode_unit_range`),
    its values in ``[0, 1]``, the channels converted as `export_saved_model`
    describes, and resized to ``size``. Works eagerly and inside a
    ``tf.function``.

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
        tf.errors.InvalidArgumentError: for an unknown format or variant, a
            corrupt file or an image over ``max_image_pixels``.
    """
    import tensorflow as tf

    encoded, format_index = check_image_header(encoded, max_image_pixels)
    image = decode_unit_range(encoded, format_index)
    image = _convert_channels(image, channels)
    image = tf.image.resize(image, size, method=resize_method, antialias=antialias)
    return tf.ensure_shape(image, (*size, channels))


def decode_unit_range(encoded, format_index):
    """Graph ops: a checked image decoded to float32 in ``[0, 1]``.

    Args:
        encoded: scalar string tensor, the bytes `check_image_header` passed.
        format_index: its index in `stn_keras.export.image_headers.FORMATS`.

    Returns:
        float32 ``(height, width, channels)``, 1 to 4 channels as stored
        (grey, grey and alpha, RGB, RGBA); GIF animations give their first
        frame.
    """
    import tensorflow as tf

    def as_float(image):
        return tf.image.convert_image_dtype(image, tf.float32)

    decoders = [
        # 16-bit PNGs keep their precision; 8-bit ones are scaled exactly.
        lambda: as_float(tf.io.decode_png(encoded, dtype=tf.uint16)),
        lambda: as_float(tf.io.decode_jpeg(encoded)),
        lambda: as_float(
            tf.io.decode_image(encoded, dtype=tf.uint8, expand_animations=False)
        ),
        lambda: as_float(_decode_bmp(encoded)),
        lambda: as_float(
            tf.io.decode_image(encoded, dtype=tf.uint8, expand_animations=False)
        ),
        lambda: decode_netpbm(encoded),
    ]
    return tf.switch_case(format_index, decoders)


def _decode_bmp(encoded):
    """uint8 RGB(A) of a checked BMP; 8-bit ones through their palette."""
    import tensorflow as tf

    samples = tf.io.decode_bmp(encoded)

    def through_palette():
        header = tf.io.decode_raw(tf.strings.substr(encoded, 0, 50), tf.uint8)
        info_header = tf.cast(
            tf.io.decode_raw(tf.strings.substr(encoded, 14, 4), tf.int32)[0], tf.int32
        )
        colours = tf.cast(bmp_palette_colours(tf.cast(header, tf.int64)), tf.int32)
        entries = tf.reshape(
            tf.io.decode_raw(tf.strings.substr(encoded, 14 + info_header, 4 * colours), tf.uint8),
            [-1, 4],
        )
        # Entries are blue, green, red, reserved; indices past the palette
        # are black.
        palette = tf.pad(tf.reverse(entries[:, :3], [1]), [[0, 256 - colours], [0, 0]])
        return tf.gather(palette, tf.cast(samples[..., 0], tf.int32))

    return tf.cond(
        tf.equal(tf.shape(samples)[-1], 1), through_palette, lambda: samples[..., :3]
    )


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

    ``tf.io.decode_image`` does not read netpbm; the header grammar is
    `stn_keras.netpbm`'s, shared with the Python reader of GTSRB.

    Args:
        encoded: scalar string tensor, the file's bytes.

    Returns:
        float32 ``(height, width, 3 or 1)``, the samples divided by the
        header's maxval.

    Raises:
        tf.errors.InvalidArgumentError: for a malformed header, a maxval out
            of range or a truncated raster.
    """
    import tensorflow as tf

    from stn_keras.netpbm import NETPBM_MAXVAL_ERROR
    from stn_keras.netpbm import NETPBM_MAX_MAXVAL

    magic, width, height, maxval, stripped = netpbm_header(encoded)
    maxval_check = tf.debugging.Assert(
        tf.logical_and(maxval >= 1, maxval <= NETPBM_MAX_MAXVAL), [NETPBM_MAXVAL_ERROR]
    )
    channels = tf.where(tf.equal(magic, "P6"), tf.constant(3, tf.int64), 1)
    bytes_per_sample = tf.where(maxval > 255, tf.constant(2, tf.int64), 1)
    raster_length = width * height * channels * bytes_per_sample
    with tf.control_dependencies([maxval_check]):
        length_check = tf.debugging.Assert(
            tf.cast(tf.strings.length(stripped), tf.int64) >= raster_length,
            [
                "Truncated PPM/PGM: the raster is shorter than width x height x "
                "channels x bytes per sample"
            ],
        )
    with tf.control_dependencies([length_check]):
        raster = tf.strings.substr(stripped, tf.constant(0, tf.int64), raster_length)
    samples = tf.cond(
        maxval > 255,
        lambda: tf.cast(
            tf.io.decode_raw(raster, tf.uint16, little_endian=False), tf.float32
        ),
        lambda: tf.cast(tf.io.decode_raw(raster, tf.uint8), tf.float32),
    )
    image = tf.reshape(samples, tf.stack([height, width, channels]))
    return image / tf.cast(maxval, tf.float32)
