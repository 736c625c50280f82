"""`AttentionGridGenerator`: sampling grid of the paper's attention transform."""

import keras

from stn_keras.layers.grid_generator import GridGenerator
from stn_keras.layers.grid_generator import document_planar_generator


@keras.saving.register_keras_serializable(package="stn_keras")
@document_planar_generator
class AttentionGridGenerator(GridGenerator):
    """Sampling grid of the paper's attention transform: 3 parameters
    ``(scale, tx, ty)``: an isotropic zoom and a shift, i.e. a square crop.
    Identity: ``(1, 0, 0)``.

    `document_planar_generator` appends the reference, Args, shapes and
    example that it shares with the other planar grid generators.
    """

    transform = "attention"
