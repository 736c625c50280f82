"""`ProjectiveGridGenerator`: sampling grid of a projective transform (homography)."""

import keras

from stn_keras.layers.grid_generator import GridGenerator
from stn_keras.layers.grid_generator import document_planar_generator


@keras.saving.register_keras_serializable(package="stn_keras")
@document_planar_generator
class ProjectiveGridGenerator(GridGenerator):
    """Sampling grid of a projective transform (homography): 8
    parameters, the first eight row-major entries of a 3x3 matrix whose last
    entry is fixed to 1. Identity: ``(1, 0, 0, 0, 1, 0, 0, 0)``.

    `document_planar_generator` appends the reference, Args, shapes and
    example that it shares with the other planar grid generators.
    """

    transform = "projective"
