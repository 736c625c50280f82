"""scikit-learn's bundled 8x8 handwritten digits, upscaled to MNIST's format.

The 1,797 images (UCI optical recognition of handwritten digits) ship with
scikit-learn, so this data set needs no download. The strokes of these
digits touch the border of their 8x8 frame, so each image (values 0..16) is
first given a one-pixel black border, then resized smoothly and centred on
a canvas of ``image_size``: the digit spans about 20 of 28 pixels, as in
MNIST, and fades out instead of ending in a straight cut.
"""

import numpy as np
from PIL import Image

from stn_keras.validation import check_int

CLASS_NAMES = [str(digit) for digit in range(10)]
# The 10x10 bordered image becomes 24x24 of 28x28, so the 8x8 digit spans
# 19.2 pixels: MNIST fits its digits in 20x20 pixels centred on 28x28.
_BORDERED_FRACTION = 24 / 28


def load_digits(image_size=28):
    """Returns ``(images, labels)``: uint8 ``(1797, S, S, 1)`` and int64."""
    image_size = check_int("image_size", image_size, 10)
    from sklearn.datasets import load_digits as load_sklearn_digits

    bunch = load_sklearn_digits()
    digit_size = max(10, round(image_size * _BORDERED_FRACTION))
    margin = (image_size - digit_size) // 2
    bordered = np.pad(bunch.images, ((0, 0), (1, 1), (1, 1)))
    images = np.zeros((len(bunch.images), image_size, image_size, 1), dtype=np.uint8)
    for index, small in enumerate(bordered):
        grey = Image.fromarray(np.round(small * (255.0 / 16.0)).astype(np.uint8))
        resized = grey.resize((digit_size, digit_size), Image.BICUBIC)
        images[index, margin : margin + digit_size, margin : margin + digit_size, 0] = (
            np.asarray(resized)
        )
    return images, bunch.target.astype(np.int64)
