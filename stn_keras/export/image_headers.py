"""The image size a file declares in its header, read before decoding it.

A small PNG can declare 20000 x 20000 pixels; decoding it takes gigabytes.
`check_declared_size` refuses such an image inside the graph of the
``predict_bytes`` signature before the decoder runs (TensorFlow Serving
answers INVALID_ARGUMENT); `read_declared_size` reads the same headers in
Python, for the server to refuse a request before it reaches the graph.

Sizes are ``(height, width, frames)``; the decoded pixels are their product.
Headers read, by format:

- PNG: width and height of the IHDR chunk (big-endian, bytes 16-23).
- JPEG: the SOF segment (``tf.io.extract_jpeg_shape`` in the graph).
- GIF: the logical screen (little-endian, bytes 6-9) and the frame count.
  The graph counts the image separators that follow a block terminator
  (bytes ``00 2C``, an upper bound: LZW data may hold them too) plus a
  first frame right after the colour table; Python walks the block
  structure and also bounds each frame's own size.
- BMP: width and height (little-endian int32 at bytes 18 and 22; a
  negative height means a top-down image).
- PPM/PGM (binary ``P6``/``P5``): the text header.
"""

import re
import struct

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
GIF_MAGIC = b"GIF8"
BMP_MAGIC = b"BM"
# Bytes of the header the fixed-offset formats (PNG, GIF, BMP) need.
FIXED_HEADER_BYTES = 26
GIF_FRAME_SEPARATOR = b"\x00,"
# Binary netpbm header: magic, width, height and maxval separated by
# whitespace or "#" comments running to the end of the line, then exactly one
# whitespace byte before the raster.
_NETPBM_SEPARATOR = r"(?:\s|#[^\r\n]*[\r\n])+"
NETPBM_HEADER = (
    rf"^(P[56]){_NETPBM_SEPARATOR}(\d+){_NETPBM_SEPARATOR}(\d+)"
    rf"{_NETPBM_SEPARATOR}(\d+)\s"
)
# SOF markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) do not.
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field.
_JPEG_STANDALONE_MARKERS = frozenset(range(0xD0, 0xDA)) | {0x01}


def size_error_message(height, width, frames, max_image_pixels):
    """The error for an image declaring more than ``max_image_pixels``."""
    return (
        f"The image declares {height} x {width} pixels (height x width) and "
        f"{frames} frame(s), over the limit of {max_image_pixels} decoded "
        "pixels per image (max_image_pixels of the export); send a smaller image."
    )


def read_declared_size(data):
    """Reads ``(height, width, frames)`` from the header of an encoded image.

    Args:
        data: the file's bytes.

    Returns:
        ``(height, width, frames)`` ints, or ``None`` when the format is not
        one of PNG, JPEG, GIF, BMP or binary PPM/PGM or the header is
        unreadable (the decoder then refuses the file).
    """
    readers = (
        (PNG_MAGIC, _png_size),
        (JPEG_MAGIC, _jpeg_size),
        (GIF_MAGIC, _gif_size),
        (BMP_MAGIC, _bmp_size),
        (b"P5", _netpbm_size),
        (b"P6", _netpbm_size),
    )
    for magic, reader in readers:
        if data.startswith(magic):
            try:
                return reader(data)
            except (struct.error, IndexError, ValueError):
                return None
    return None


def _png_size(data):
    width, height = struct.unpack(">II", data[16:24])
    return height, width, 1


def _bmp_size(data):
    width, height = struct.unpack("<ii", data[18:26])
    return abs(height), abs(width), 1


def _netpbm_size(data):
    match = re.match(NETPBM_HEADER.encode(), data)
    if match is None:
        return None
    return int(match.group(3)), int(match.group(2)), 1


def _jpeg_size(data):
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # Fill byte.
            position += 1
            continue
        if marker in _JPEG_STANDALONE_MARKERS:
            position += 2
            continue
        if marker in _JPEG_SOF_MARKERS:
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return height, width, 1
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        position += 2 + length
    return None


def _gif_size(data):
    """Walks the GIF blocks: frame count and the largest frame or screen."""
    screen_width, screen_height, flags = struct.unpack("<HHB", data[6:11])
    position = 13 + _colour_table_bytes(flags)
    frames = 0
    height, width = screen_height, screen_width
    while position < len(data):
        block = data[position]
        if block == 0x3B:  # Trailer.
            break
        if block == 0x21:  # Extension: label, then sub-blocks.
            position = _skip_sub_blocks(data, position + 2)
        elif block == 0x2C:  # Image descriptor, local colour table, LZW size.
            frame_width, frame_height, frame_flags = struct.unpack(
                "<HHB", data[position + 5 : position + 10]
            )
            frames += 1
            height, width = max(height, frame_height), max(width, frame_width)
            position += 10 + _colour_table_bytes(frame_flags) + 1
            position = _skip_sub_blocks(data, position)
        else:
            break
    return height, width, max(frames, 1)


def _colour_table_bytes(flags):
    return 3 * 2 ** ((flags & 0x07) + 1) if flags & 0x80 else 0


def _skip_sub_blocks(data, position):
    while position < len(data) and data[position]:
        position += data[position] + 1
    return position + 1


def declared_size(encoded):
    """Graph ops: ``(height, width, frames)`` int64 from an image's header.

    Args:
        encoded: scalar string tensor, the file's bytes.

    Returns:
        An int64 tensor ``[height, width, frames]``; zeros for a format this
        module does not read (the decoder then refuses the file).
    """
    import tensorflow as tf

    padding = b"\0" * FIXED_HEADER_BYTES
    header = tf.strings.substr(
        tf.strings.join([tf.strings.substr(encoded, 0, FIXED_HEADER_BYTES), padding]),
        0,
        FIXED_HEADER_BYTES,
    )
    header = tf.cast(tf.io.decode_raw(header, tf.uint8), tf.int64)

    def starts_with(magic):
        return tf.equal(tf.strings.substr(encoded, 0, len(magic)), magic)

    is_netpbm = tf.strings.regex_full_match(tf.strings.substr(encoded, 0, 2), "P[56]")
    return tf.case(
        [
            (starts_with(PNG_MAGIC), lambda: _graph_png_size(header)),
            (starts_with(JPEG_MAGIC), lambda: _graph_jpeg_size(encoded)),
            (starts_with(GIF_MAGIC), lambda: _graph_gif_size(encoded, header)),
            (starts_with(BMP_MAGIC), lambda: _graph_bmp_size(header)),
            (is_netpbm, lambda: _graph_netpbm_size(encoded)),
        ],
        default=lambda: tf.zeros([3], tf.int64),
        exclusive=True,
    )


def _graph_integer(header, offset, size, big_endian):
    """The unsigned integer of ``size`` header bytes at ``offset``, as int64."""
    import tensorflow as tf

    order = range(size) if big_endian else reversed(range(size))
    value = tf.constant(0, tf.int64)
    for index in order:
        value = value * 256 + header[offset + index]
    return value


def _graph_png_size(header):
    import tensorflow as tf

    height = _graph_integer(header, 20, 4, big_endian=True)
    return tf.stack([height, _graph_integer(header, 16, 4, big_endian=True), 1])


def _graph_jpeg_size(encoded):
    import tensorflow as tf

    shape = tf.io.extract_jpeg_shape(encoded, output_type=tf.int32)
    return tf.concat([tf.cast(shape[:2], tf.int64), [1]], axis=0)


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


def _graph_bmp_size(header):
    import tensorflow as tf

    def signed_32(value):
        return tf.abs(tf.where(value >= 2**31, value - 2**32, value))

    height = signed_32(_graph_integer(header, 22, 4, big_endian=False))
    return tf.stack([height, signed_32(_graph_integer(header, 18, 4, big_endian=False)), 1])


def _graph_netpbm_size(encoded):
    import tensorflow as tf

    _, width, height, _, _ = netpbm_header(encoded)
    return tf.cast(tf.stack([height, width, 1]), tf.int64)


def check_declared_size(encoded, max_image_pixels):
    """Graph ops: ``encoded`` once its declared size is within the limit.

    Args:
        encoded: scalar string tensor, the file's bytes.
        max_image_pixels: the most decoded pixels (height x width x frames)
            accepted.

    Returns:
        ``encoded``, depending on the check, so that a decoder fed with it
        runs only after the check passed.

    Raises:
        tf.errors.InvalidArgumentError: when run on a larger image, with
            `size_error_message`.
    """
    import tensorflow as tf

    height, width, frames = tf.unstack(declared_size(encoded))
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
    message = tf.strings.format(
        size_error_message("{}", "{}", "{}", max_image_pixels),
        (height, width, frames),
    )
    check = tf.debugging.Assert(within, [message])
    with tf.control_dependencies([check]):
        return tf.identity(encoded)


def netpbm_header(encoded):
    """Graph ops: the header of a binary PPM/PGM and the raster after it.

    Args:
        encoded: scalar string tensor, the file's bytes.

    Returns:
        ``(magic, width, height, maxval, raster)``: the magic (``"P6"`` or
        ``"P5"``), int32 width, height and maxval, and the bytes after the
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
    check = tf.debugging.assert_less(
        tf.strings.length(raster),
        tf.strings.length(encoded),
        message="Invalid PPM/PGM header: expected 'P6' or 'P5', width, "
        "height and maxval separated by whitespace or # comments",
    )
    with tf.control_dependencies([check]):
        header = tf.strings.split(
            tf.strings.split(normalised, "\n", maxsplit=1)[0], " "
        )
    # Numbers of more digits than an int32 holds saturate to its maximum,
    # which the pixel limit then refuses.
    width, height, maxval = (
        tf.cast(tf.minimum(tf.strings.to_number(header[index], tf.float64), 2**31 - 1), tf.int32)
        for index in (1, 2, 3)
    )
    return header[0], width, height, maxval, raster
