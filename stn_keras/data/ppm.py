"""Decoder for binary PPM (P6) images, as GTSRB stores them.

Written here rather than left to Pillow so that header comments, any image
size and every kind of damage give an error naming the file.
"""

import numpy as np


class PpmFormatError(ValueError):
    """Raised when bytes are not a complete binary PPM image."""


def _header_fields(data, name):
    """Returns the four header fields and the offset of the pixel data."""
    fields = []
    position = 0
    while len(fields) < 4:
        while position < len(data) and data[position : position + 1].isspace():
            position += 1
        if position >= len(data):
            raise PpmFormatError(f"PPM image {name} is truncated inside its header.")
        if data[position : position + 1] == b"#":
            end_of_line = data.find(b"\n", position)
            if end_of_line < 0:
                raise PpmFormatError(
                    f"PPM image {name} is truncated inside a header comment."
                )
            position = end_of_line + 1
            continue
        start = position
        while (
            position < len(data)
            and not data[position : position + 1].isspace()
            and data[position : position + 1] != b"#"
        ):
            position += 1
        fields.append(data[start:position])
    # Exactly one whitespace byte separates the header from the pixels.
    return fields, position + 1


def decode_ppm(data, name="<bytes>"):
    """Decodes a binary PPM (``P6``) image.

    Args:
        data: the file's bytes.
        name: the file name, for error messages.

    Returns:
        A uint8 array of shape ``(height, width, 3)``. Images whose maximum
        value is not 255 are rescaled to 0..255.

    Raises:
        PpmFormatError: not a P6 image, a malformed header or missing pixels.
    """
    if data[:2] != b"P6":
        raise PpmFormatError(
            f"Image {name} is not a binary PPM: it starts with {bytes(data[:2])!r}, "
            "expected b'P6'."
        )
    fields, offset = _header_fields(data, name)
    try:
        width, height, maximum = (int(field) for field in fields[1:])
    except ValueError:
        raise PpmFormatError(
            f"PPM image {name} has a malformed header: {fields!r}."
        ) from None
    if width <= 0 or height <= 0 or not 0 < maximum < 65536:
        raise PpmFormatError(
            f"PPM image {name} declares an invalid size {width}x{height} or "
            f"maximum value {maximum}."
        )
    bytes_per_value = 1 if maximum < 256 else 2
    expected = width * height * 3 * bytes_per_value
    available = len(data) - offset
    if available < expected:
        raise PpmFormatError(
            f"PPM image {name} is truncated: a {width}x{height} image needs "
            f"{expected} bytes of pixels, the file holds {max(available, 0)}."
        )
    dtype = np.uint8 if bytes_per_value == 1 else np.dtype(">u2")
    pixels = np.frombuffer(data, dtype=dtype, count=width * height * 3, offset=offset)
    pixels = pixels.reshape(height, width, 3)
    if maximum != 255:
        pixels = np.round(pixels.astype(np.float64) * (255.0 / maximum))
    return pixels.astype(np.uint8, copy=False)
