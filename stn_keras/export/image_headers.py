"""What an encoded image's header declares, checked before it is decoded.

The decoders behind ``predict_bytes`` are C++ that believe the header: a
small PNG can declare 20000 x 20000 pixels (gigabytes once decoded), and
TensorFlow's BMP decoder aborts the process on a top-down BMP decoded to
float or reads palette indices as grey levels. `check_image_header` reads
every header inside the graph and refuses, with an INVALID_ARGUMENT that
says what is wrong, an unknown format, a variant the decoders do not read
correctly, an empty image or one over the pixel limit, before any decoder
runs; `stn_keras.export.image_decoding` then calls each decoder only on the
format and in the dtype it handles safely. `read_declared_size` reads the
same sizes in Python with Pillow, for the server to refuse a request before
it reaches the graph.

Sizes are ``(height, width, frames)``; the decoded pixels are their product.
Headers read in the graph, by format:

- PNG: width and height of the IHDR chunk (big-endian, bytes 16-23).
- JPEG: the SOF segment (``tf.io.extract_jpeg_shape``); four-component
  (CMYK) JPEGs are refused.
- GIF: the logical screen (little-endian, bytes 6-9) and the frame count:
  the image separators that follow a block terminator (bytes ``00 2C``, an
  upper bound: LZW data may hold them too) plus a first frame right after
  the colour table.
- BMP: width and height (little-endian int32 at bytes 18 and 22; a negative
  height means a top-down image), the info header's size, bits per pixel
  and compression: uncompressed 8-bit (palette), 24-bit and 32-bit images
  and 32-bit images with the standard BGRA bit fields are read, others are
  refused.
- WebP: the ``VP8 ``, ``VP8L`` or ``VP8X`` chunk; animations are refused.
- PPM/PGM (binary ``P6``/``P5``): the text header (`netpbm_header`).
"""

import io

from stn_keras.netpbm import NETPBM_HEADER
from stn_keras.netpbm import NETPBM_HEADER_ERROR
from stn_keras.netpbm import NETPBM_MAXVAL_ERROR
from stn_keras.netpbm import NETPBM_MAX_MAXVAL

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
GIF_MAGIC = b"GIF8"
BMP_MAGIC = b"BM"
RIFF_MAGIC = b"RIFF"
WEBP_MAGIC = b"WEBP"
# The formats predict_bytes reads, in the order of `image_format`'s indices.
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WebP", "PPM/PGM")
ACCEPTED_FORMATS = "PNG, JPEG, GIF, BMP, WebP and binary PPM (P6) / PGM (P5)"
UNSUPPORTED_FORMAT_ERROR = (
    "Unsupported image format: the file is none of " + ACCEPTED_FORMATS
    + " (read from its first bytes); send one of those."
)
# Header bytes the fixed-offset fields need: the BMP bit-field masks end at 66.
HEADER_BYTES = 66
GIF_FRAME_SEPARATOR = b"\x00,"
# BMP compression methods (info header, bytes 30-33).
BMP_RGB = 0
BMP_BITFIELDS = 3
# Red, green, blue masks (bytes 54-65) of the 32-bit layout TensorFlow reads.
BMP_BGRA_MASKS = (0x00FF0000, 0x0000FF00, 0x000000FF)
# Smallest info header with 32-bit width and height (BITMAPINFOHEADER); the
# 12-byte OS/2 header has 16-bit ones.
BMP_MIN_INFO_HEADER = 40
BMP_ERROR = (
    "Unsupported BMP: {} bits per pixel, compression {}, info header of {} "
    "bytes, pixels at byte {}; predict_bytes reads uncompressed 8-bit "
    "(palette), 24-bit and 32-bit BMPs with a header of 40 bytes or more "
    "(32-bit also with the standard BGRA bit fields). Save the image as PNG "
    "or as a 24-bit BMP."
)
BMP_OLD_HEADER_ERROR = (
    "Unsupported BMP: an info header of {} bytes (OS/2 or older); "
    "predict_bytes reads BMPs with a header of 40 bytes or more. Save the "
    "image as PNG or as a 24-bit BMP."
)
JPEG_CMYK_ERROR = (
    "Unsupported JPEG: 4 colour components (CMYK or YCCK); predict_bytes "
    "reads grey and colour (YCbCr/RGB) JPEGs. Convert the image to RGB."
)
WEBP_ANIMATION_ERROR = (
    "Unsupported WebP: an animation; predict_bytes reads still WebP images. "
    "Send one frame."
)
WEBP_HEADER_ERROR = (
    "Invalid WebP header: expected a VP8, VP8L or VP8X chunk at byte 12."
)


def size_error_message(height, width, frames, max_image_pixels):
    """The error for an image declaring more than ``max_image_pixels``."""
    return (
        f"The image declares {height} x {width} pixels (height x width) and "
        f"{frames} frame(s), over the limit of {max_image_pixels} decoded "
        "pixels per image (max_image_pixels of the export); send a smaller image."
    )


def empty_error_message(height, width):
    """The error for an image declaring no pixels."""
    return (
        f"The image declares {height} x {width} pixels (height x width): an "
        "image needs at least one row and one column; the file is damaged."
    )


def _pillow_image_classes():
    """Pillow's image classes of the accepted formats, by magic bytes.

    The classes are opened directly, not through ``Image.open``, because
    ``Image.open`` raises on a decompression bomb before the size can be
    read; both read the header only and decode nothing until ``load``.
    """
    from PIL import BmpImagePlugin
    from PIL import GifImagePlugin
    from PIL import JpegImagePlugin
    from PIL import PngImagePlugin
    from PIL import PpmImagePlugin

    classes = [
        (PNG_MAGIC, PngImagePlugin.PngImageFile),
        (JPEG_MAGIC, JpegImagePlugin.JpegImageFile),
        (GIF_MAGIC, GifImagePlugin.GifImageFile),
        (BMP_MAGIC, BmpImagePlugin.BmpImageFile),
        (b"P5", PpmImagePlugin.PpmImageFile),
        (b"P6", PpmImagePlugin.PpmImageFile),
    ]
    try:
        from PIL import WebPImagePlugin
    except ImportError:  # Pillow built without libwebp: the graph checks WebP.
        return classes
    return [*classes, (RIFF_MAGIC, WebPImagePlugin.WebPImageFile)]


def read_declared_size(data):
    """Reads ``(height, width, frames)`` from the header of an encoded image.

    Args:
        data: the file's bytes.

    Returns:
        ``(height, width, frames)`` ints, or ``None`` when the format is not
        one of those `check_image_header` reads or Pillow cannot read the
        header (the graph then refuses the file with its own message).
    """
    for magic, image_class in _pillow_image_classes():
        if data.startswith(magic):
            break
    else:
        return None
    try:
        with image_class(io.BytesIO(data)) as image:
            width, height = image.size
            return height, width, getattr(image, "n_frames", 1)
    # Pillow's readers raise many kinds of errors on damaged headers (OSError,
    # SyntaxError, ValueError, EOFError, struct.error...); each means the
    # header is unreadable here, and the graph refuses the file.
    except Exception:  # noqa: BLE001
        return None


def _padded_header(encoded):
    """The first `HEADER_BYTES` bytes of ``encoded``, zero-padded."""
    import tensorflow as tf

    padding = b"\0" * HEADER_BYTES
    return tf.strings.substr(
        tf.strings.join([tf.strings.substr(encoded, 0, HEADER_BYTES), padding]),
        0,
        HEADER_BYTES,
    )


def _graph_integer(header, offset, size, big_endian):
    """The unsigned integer of ``size`` header bytes at ``offset``, as int64."""
    import tensorflow as tf

    order = range(size) if big_endian else reversed(range(size))
    value = tf.constant(0, tf.int64)
    for index in order:
        value = value * 256 + header[offset + index]
    return value


def _graph_signed_32(header, offset):
    """The little-endian int32 at ``offset``, as int64."""
    import tensorflow as tf

    value = _graph_integer(header, offset, 4, big_endian=False)
    return tf.where(value >= 2**31, value - 2**32, value)


def image_format(encoded):
    """Graph ops: the index in `FORMATS` of the file's format, or -1.

    Args:
        encoded: scalar string tensor, the file's bytes.

    Returns:
        A scalar int32 tensor.
    """
    import tensorflow as tf

    header = _padded_header(encoded)

    def starts_with(magic, offset=0):
        return tf.equal(tf.strings.substr(header, offset, len(magic)), magic)

    matches = tf.stack(
        [
            starts_with(PNG_MAGIC),
            starts_with(JPEG_MAGIC),
            starts_with(GIF_MAGIC),
            starts_with(BMP_MAGIC),
            tf.logical_and(starts_with(RIFF_MAGIC), starts_with(WEBP_MAGIC, 8)),
            tf.strings.regex_full_match(tf.strings.substr(header, 0, 2), "P[56]"),
        ]
    )
    return tf.where(
        tf.reduce_any(matches),
        tf.argmax(tf.cast(matches, tf.int32), output_type=tf.int32),
        -1,
    )


def declared_size(encoded):
    """Graph ops: ``(height, width, frames)`` int64 from an image's header.

    Args:
        encoded: scalar string tensor, the file's bytes.

    Returns:
        An int64 tensor ``[height, width, frames]``; zeros for a format this
        module does not read.
    """
    return _header_facts(encoded, image_format(encoded))[0]


def _header_facts(encoded, format_index):
    """Graph ops: the declared size and, for an unreadable variant, why."""
    import tensorflow as tf

    padded = _padded_header(encoded)
    header = tf.cast(tf.io.decode_raw(padded, tf.uint8), tf.int64)
    readers = [
        lambda: (_graph_png_size(header), tf.constant("")),
        lambda: _graph_jpeg_facts(encoded),
        lambda: (_graph_gif_size(encoded, header), tf.constant("")),
        lambda: _graph_bmp_facts(encoded, header),
        lambda: _graph_webp_facts(padded, header),
        lambda: _graph_netpbm_facts(encoded),
    ]
    return tf.switch_case(
        format_index,
        readers,
        default=lambda: (tf.zeros([3], tf.int64), tf.constant(UNSUPPORTED_FORMAT_ERROR)),
    )


def _graph_png_size(header):
    import tensorflow as tf

    height = _graph_integer(header, 20, 4, big_endian=True)
    return tf.stack([height, _graph_integer(header, 16, 4, big_endian=True), 1])


def _graph_jpeg_facts(encoded):
    import tensorflow as tf

    shape = tf.cast(tf.io.extract_jpeg_shape(encoded, output_type=tf.int32), tf.int64)
    problem = tf.where(tf.equal(shape[2], 4), JPEG_CMYK_ERROR, "")
    return tf.concat([shape[:2], [1]], axis=0), problem


def _graph_gif_size(encoded, header):
    import tensorflow as tf

    # Every image descriptor follows a block terminator, except a first one
    # right after the global colour table.
    length = tf.strings.length(encoded)
    colour_table = tf.where(header[10] >= 128, 3 * 2 ** (header[10] % 8 + 1), 0)
    first = tf.minimum(13 + tf.cast(colour_table, tf.int32), length)
    blocks = tf.strings.substr(encoded, first, length - first)
    separators = tf.size(tf.strings.split(blocks, GIF_FRAME_SEPARATOR)) - 1
    leading = tf.cast(tf.equal(tf.strings.substr(encoded, first, 1), ","), tf.int32)
    frames = tf.cast(tf.maximum(separators + leading, 1), tf.int64)
    height = _graph_integer(header, 8, 2, big_endian=False)
    return tf.stack([height, _graph_integer(header, 6, 2, big_endian=False), frames])


def bmp_palette_colours(header):
    """Graph ops: the number of palette entries an 8-bit BMP declares."""
    import tensorflow as tf

    declared = _graph_integer(header, 46, 4, big_endian=False)
    return tf.where(
        tf.logical_or(declared == 0, declared > 256), tf.constant(256, tf.int64), declared
    )


def _graph_bmp_facts(encoded, header):
    import tensorflow as tf

    width = _graph_signed_32(header, 18)
    height = tf.abs(_graph_signed_32(header, 22))
    pixels_offset = _graph_integer(header, 10, 4, big_endian=False)
    info_header = _graph_integer(header, 14, 4, big_endian=False)
    bits = _graph_integer(header, 28, 2, big_endian=False)
    compression = _graph_integer(header, 30, 4, big_endian=False)
    masks = tf.stack([_graph_integer(header, 54 + 4 * index, 4, False) for index in range(3)])
    palette_end = 14 + info_header + tf.where(bits == 8, 4 * bmp_palette_colours(header), 0)
    # TensorFlow's decoder ignores the compression and the palette: it would
    # decode compressed data, 8-bit palette indices or other bit fields as
    # if they were BGR(A) samples or grey levels.
    readable = tf.reduce_all(
        [
            info_header >= BMP_MIN_INFO_HEADER,
            pixels_offset >= palette_end,
            tf.logical_or(
                tf.logical_and(
                    compression == BMP_RGB,
                    tf.reduce_any([bits == 8, bits == 24, bits == 32]),
                ),
                tf.logical_and(
                    tf.logical_and(compression == BMP_BITFIELDS, bits == 32),
                    tf.reduce_all(tf.equal(masks, BMP_BGRA_MASKS)),
                ),
            ),
        ]
    )
    problem = tf.where(
        readable,
        "",
        tf.where(
            info_header < BMP_MIN_INFO_HEADER,
            tf.strings.format(BMP_OLD_HEADER_ERROR, info_header),
            tf.strings.format(BMP_ERROR, (bits, compression, info_header, pixels_offset)),
        ),
    )
    # A negative width is kept: the empty-image check refuses it.
    return tf.stack([height, width, 1]), problem


def _graph_webp_facts(padded, header):
    import tensorflow as tf

    chunk = tf.strings.substr(padded, 12, 4)

    def fourteen_bits(offset):
        return _graph_integer(header, offset, 2, big_endian=False) % 2**14

    lossless = _graph_integer(header, 21, 4, big_endian=False)
    sizes = tf.stack(
        [
            # VP8 (lossy): 14-bit width and height after the start code.
            tf.stack([fourteen_bits(28), fourteen_bits(26), 1]),
            # VP8L (lossless): 14-bit width - 1 and height - 1, packed.
            tf.stack([(lossless // 2**14) % 2**14 + 1, lossless % 2**14 + 1, 1]),
            # VP8X (extended): 24-bit canvas width - 1 and height - 1.
            tf.stack(
                [
                    _graph_integer(header, 27, 3, big_endian=False) + 1,
                    _graph_integer(header, 24, 3, big_endian=False) + 1,
                    1,
                ]
            ),
            tf.zeros([3], tf.int64),
        ]
    )
    kinds = tf.constant(["VP8 ", "VP8L", "VP8X"])
    matches = tf.equal(kinds, chunk)
    kind = tf.where(
        tf.reduce_any(matches), tf.argmax(tf.cast(matches, tf.int32)), 3
    )
    animated = tf.logical_and(tf.equal(kind, 2), header[20] // 2 % 2 == 1)
    problem = tf.where(
        tf.equal(kind, 3),
        WEBP_HEADER_ERROR,
        tf.where(animated, WEBP_ANIMATION_ERROR, ""),
    )
    return sizes[kind], problem


def _graph_netpbm_facts(encoded):
    import tensorflow as tf

    _, width, height, maxval, _ = netpbm_header(encoded)
    readable = tf.logical_and(maxval >= 1, maxval <= NETPBM_MAX_MAXVAL)
    problem = tf.where(readable, "", NETPBM_MAXVAL_ERROR)
    return tf.stack([height, width, tf.constant(1, tf.int64)]), problem


def check_image_header(encoded, max_image_pixels):
    """Graph ops: ``encoded`` and its format once its header passed the checks.

    The file must be one of `FORMATS` in a variant the decoders read, and
    declare at least one and at most ``max_image_pixels`` pixels (height x
    width x frames).

    Args:
        encoded: scalar string tensor, the file's bytes.
        max_image_pixels: the most decoded pixels accepted.

    Returns:
        ``(encoded, format_index)``: the bytes, depending on the check, so
        that a decoder fed with them runs only after it passed, and the
        index in `FORMATS`.

    Raises:
        tf.errors.InvalidArgumentError: when run on a file that fails, with
            a message saying what is wrong.
    """
    import tensorflow as tf

    format_index = image_format(encoded)
    size, problem = _header_facts(encoded, format_index)
    height, width, frames = tf.unstack(size)
    # Each factor within the limit first, so that the products cannot wrap.
    within = tf.reduce_all(
        [
            height <= max_image_pixels,
            width <= max_image_pixels,
            frames <= max_image_pixels,
            height * width <= max_image_pixels,
            height * width * frames <= max_image_pixels,
        ]
    )
    message = tf.case(
        [
            (tf.not_equal(problem, ""), lambda: problem),
            (
                tf.logical_or(height < 1, width < 1),
                lambda: tf.strings.format(empty_error_message("{}", "{}"), (height, width)),
            ),
            (
                tf.logical_not(within),
                lambda: tf.strings.format(
                    size_error_message("{}", "{}", "{}", max_image_pixels),
                    (height, width, frames),
                ),
            ),
        ],
        default=lambda: tf.constant(""),
    )
    check = tf.debugging.Assert(tf.equal(message, ""), [message])
    with tf.control_dependencies([check]):
        return tf.identity(encoded), tf.identity(format_index)


def netpbm_header(encoded):
    """Graph ops: the header of a binary PPM/PGM and the raster after it.

    Args:
        encoded: scalar string tensor, the file's bytes.

    Returns:
        ``(magic, width, height, maxval, raster)``: the magic (``"P6"`` or
        ``"P5"``), int64 width, height and maxval, and the bytes after the
        header.

    Raises:
        tf.errors.InvalidArgumentError: when the header is malformed.
    """
    import tensorflow as tf

    # RE2 rewrites the header to "P6 W H M\n" in front of the raster; the
    # header's length is the size difference with the stripped file.
    normalised = tf.strings.regex_replace(
        encoded, NETPBM_HEADER, "\\1 \\2 \\3 \\4\n", replace_global=False
    )
    raster = tf.strings.regex_replace(encoded, NETPBM_HEADER, "", replace_global=False)
    check = tf.debugging.Assert(
        tf.strings.length(raster) < tf.strings.length(encoded), [NETPBM_HEADER_ERROR]
    )
    with tf.control_dependencies([check]):
        header = tf.strings.split(
            tf.strings.split(normalised, "\n", maxsplit=1)[0], " "
        )
    # Numbers of more digits than an int64 holds saturate to 2**53 or so,
    # which the pixel limit then refuses.
    width, height, maxval = (
        tf.cast(tf.minimum(tf.strings.to_number(header[index], tf.float64), 2.0**53), tf.int64)
        for index in (1, 2, 3)
    )
    return header[0], width, height, maxval, raster
