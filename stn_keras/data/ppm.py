"""Decoder for binary PPM (P6) images, as GTSRB stores them.

Written here rather than left to Pillow so that header comments, any image
size and every kind of damage give an error naming the file. The header
grammar is `stn_keras.netpbm`'s, which the in-graph decoder of the
SavedModel export shares.
"""

import numpy as np

from stn_keras.netpbm import read_netpbm_header


class PpmFormatError(ValueError):
    """Raised when bytes are not a complete binary PPM image."""


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
    try:
        _, width, height, maximum, offset = read_netpbm_header(data)
    except ValueError as error:
        raise PpmFormatError(
            f"PPM image {name}: {error}; it starts with {bytes(data[:40])!r}."
        ) from None
    if width <= 0 or height <= 0:
        raise PpmFormatError(
            f"PPM image {name} declares an invalid size {width}x{height}."
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
