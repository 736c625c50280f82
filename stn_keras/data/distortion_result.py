"""The value returned by ``stn_keras.data.distort``."""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class DistortionResult:
    """Distorted images with their labels and the parameters drawn.

    Attributes:
        images: the distorted images, NHWC, uint8 for uint8 input.
        labels: the labels of the distorted images (for ``addition`` the sum
            of the two digits' labels), or ``None`` when none were given.
        parameters: ``{name: array}``, one entry per drawn quantity, first
            axis the image index (documented per distortion in
            ``stn_keras.data.distortions``).
    """

    images: np.ndarray
    labels: np.ndarray | None
    parameters: dict
