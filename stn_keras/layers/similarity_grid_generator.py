"""`SimilarityGridGenerator`: sampling grid of a similarity transform."""

import keras

from stn_keras.layers.grid_generator import GridGenerator
from stn_keras.layers.grid_generator import document_planar_generator


@keras.saving.register_keras_serializable(package="stn_keras")
@document_planar_generator
class SimilarityGridGenerator(GridGenerator):
    """Sampling grid of a similarity transform: 4 parameters
    ``(angle, scale, tx, ty)``, the angle in radians. Identity:
    ``(0, 1, 0, 0)``.

    `document_planar_generator` appends the reference, Args, shapes and
    example that it shares with the other planar grid generators.
    """

    transform = "similarity"
