"""`TrainedModel`: a loaded model, whatever the file format it came from."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """A loaded model: how to predict, its shapes and provenance.

    ``model`` is the Keras model of a ``.keras`` file (``None`` for a
    SavedModel). ``provenance`` says where the model came from (path,
    format, sha256); it is written to ``metrics.json`` under ``"model"``.
    ``transformer_views`` maps a float batch to the
    `stn_keras.evaluation.TransformerView` of each transformer that samples
    the model's input (an empty list for a model without one), or is
    ``None`` when the model cannot say (a SavedModel exported without
    transformer metadata).
    """

    predict: object
    input_shape: tuple
    num_classes: int
    provenance: dict
    transformer_views: object = None
    model: object = None
