"""A ``.keras`` file or an exported SavedModel loaded as one `TrainedModel`.

Both formats give the same interface: batched prediction, the input shape,
the number of classes, the model's provenance and the views of its spatial
transformers (from a SavedModel through its ``spatial_transforms``
signature and transformer metadata).
"""

import json
from pathlib import Path

import numpy as np

import stn_keras  # noqa: F401  (registers the layers for load_model_file)
from stn_keras import models
from stn_keras.evaluation.trained_model import TrainedModel
from stn_keras.evaluation.transformer_view import TransformerView
from stn_keras.export.names import SERVING_DEFAULT_SIGNATURE
from stn_keras.export.names import TRANSFORMERS_METADATA
from stn_keras.export.names import TRANSFORMS_SIGNATURE
from stn_keras.files import file_sha256
from stn_keras.saving import load_model_file


def _batched(function, batch_size):
    def predict(images):
        outputs = [
            np.asarray(function(images[start : start + batch_size]))
            for start in range(0, len(images), batch_size)
        ]
        return np.concatenate(outputs, axis=0)

    return predict


def load_trained_model(path, batch_size=256):
    """Loads a ``.keras`` file or a SavedModel directory for evaluation.

    Raises:
        ValueError: the path does not exist, or is not a loadable model
            (a corrupt or truncated file, or a directory without
            ``saved_model.pb``), saying which.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"Model not found. Received: model path='{path}'")
    if path.is_dir():
        return _load_saved_model(path, batch_size)
    model = load_model_file(path)
    provenance = {
        "path": str(path),
        "format": "keras",
        "name": model.name,
        "sha256": file_sha256(path),
        "num_parameters": model.count_params(),
    }
    return TrainedModel(
        predict=lambda images: model.predict(
            images, batch_size=batch_size, verbose=0
        ),
        input_shape=tuple(model.input_shape[1:]),
        num_classes=int(model.output_shape[-1]),
        provenance=provenance,
        transformer_views=lambda images: _keras_transformer_views(model, images),
        model=model,
    )


def _load_saved_model(path, batch_size):
    if not (path / "saved_model.pb").is_file():
        raise ValueError(
            f"Directory '{path}' is not a SavedModel (no saved_model.pb). "
            "Pass a .keras file or the saved_model/ directory of a run."
        )
    from stn_keras import runtime

    if not runtime.tensorflow_available():
        raise ValueError(
            f"Loading the SavedModel '{path}' needs TensorFlow, which is not "
            "installed (pip install tensorflow). Or evaluate the run's "
            "model.keras, which loads on every Keras backend."
        )
    tf = runtime.import_tensorflow()

    try:
        loaded = tf.saved_model.load(str(path))
        signature = loaded.signatures[SERVING_DEFAULT_SIGNATURE]
    except Exception as error:
        raise ValueError(
            f"Cannot load SavedModel '{path}' with a serving_default "
            f"signature ({type(error).__name__}: {error})."
        ) from error
    (input_spec,) = signature.structured_input_signature[1].values()
    (output_spec,) = signature.structured_outputs.values()

    def predict(images):
        (probabilities,) = signature(tf.constant(images)).values()
        return probabilities.numpy()

    provenance = {
        "path": str(path),
        "format": "saved_model",
        "sha256": file_sha256(path / "saved_model.pb"),
    }
    input_shape = tuple(input_spec.shape[1:])
    return TrainedModel(
        predict=_batched(predict, batch_size),
        input_shape=input_shape,
        num_classes=int(output_spec.shape[-1]),
        provenance=provenance,
        transformer_views=_saved_model_transformer_views(
            loaded, path, input_shape
        ),
    )


def _keras_transformer_views(model, images):
    transformers = models.spatial_transformer_layers(model)
    input_shape = tuple(model.input_shape[1:])
    if not transformers:
        return []
    outputs = models.transformer_model(model).predict(images, verbose=0)
    return [
        TransformerView(
            name=layer.name,
            transform=layer.transform,
            align_corners=layer.align_corners,
            control_shape=tuple(layer.control_shape),
            images=np.asarray(outputs[2 * index], "float32"),
            theta=np.asarray(outputs[2 * index + 1], "float32"),
        )
        for index, layer in enumerate(transformers)
        if tuple(layer.input.shape[1:]) == input_shape
    ]


def _saved_model_transformer_views(loaded, path, input_shape):
    """Views from the export's transforms signature and its metadata file."""
    if TRANSFORMS_SIGNATURE not in loaded.signatures:
        return lambda images: []
    metadata_path = path / TRANSFORMERS_METADATA
    if not metadata_path.is_file():
        return None
    metadata = json.loads(metadata_path.read_text())
    signature = loaded.signatures[TRANSFORMS_SIGNATURE]

    def views(images):
        import tensorflow as tf

        outputs = signature(tf.constant(images, tf.float32))
        return [
            TransformerView(
                name=entry["name"],
                transform=entry["transform"],
                align_corners=entry["align_corners"],
                control_shape=tuple(entry["grid_shape"]),
                images=outputs[f"{entry['name']}_images"].numpy(),
                theta=outputs[f"{entry['name']}_theta"].numpy(),
            )
            for entry in metadata
            if tuple(entry["input_shape"]) == input_shape
        ]

    return views
