"""`TransformerView`: what one spatial transformer did to a batch."""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class TransformerView:
    """What one spatial transformer did to a batch, to draw it."""

    name: str
    transform: str
    align_corners: bool
    control_shape: tuple
    images: np.ndarray
    theta: np.ndarray
