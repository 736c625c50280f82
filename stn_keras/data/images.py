"""The one conversion of stored images to what models take."""

import numpy as np

# Multiplying by the reciprocal is what every pipeline of the library does,
# so images converted anywhere are bit-identical.
_UINT8_SCALE = np.float32(1.0 / 255.0)


def as_float_images(images):
    """uint8 images (0..255) -> float32 in ``[0, 1]``; float images -> float32."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype(np.float32) * _UINT8_SCALE
    return images.astype(np.float32, copy=False)
