"""`check_image_sizes`: refuses oversized images before they reach the graph."""

import numpy as np

from stn_keras.export.image_headers import read_declared_size
from stn_keras.export.image_headers import size_error_message
from stn_keras.serving.serving_error import ServingError


def check_image_sizes(inputs, signature, max_image_pixels, max_request_pixels):
    """Checks the sizes the encoded images of a request declare in their headers.

    Every string input value that is a PNG, JPEG, GIF, BMP, WebP or binary PPM/PGM
    file counts with the pixels (height x width x frames) its header
    declares; other strings count nothing (the graph refuses what it cannot
    decode).

    Args:
        inputs: dict of input name to numpy array, as parsed.
        signature: the `Signature` called.
        max_image_pixels: the most pixels one image may declare (the
            export's limit), or ``None`` for no per-image limit.
        max_request_pixels: the most pixels the images of one request may
            declare together.

    Raises:
        ServingError: 400, naming the limit and the declared size.
    """
    total = 0
    for info in signature.inputs:
        if not info.is_string:
            continue
        for data in np.asarray(inputs[info.name], dtype=object).ravel():
            size = read_declared_size(bytes(data))
            if size is None:
                continue
            height, width, frames = size
            pixels = height * width * frames
            if max_image_pixels is not None and pixels > max_image_pixels:
                raise ServingError(
                    400, size_error_message(height, width, frames, max_image_pixels)
                )
            total += pixels
            if total > max_request_pixels:
                raise ServingError(
                    400,
                    f"The images of this request declare {total} decoded "
                    f"pixels or more together, over the limit of "
                    f"{max_request_pixels} per request of this server "
                    "(--max-request-pixels); send fewer or smaller images.",
                )
