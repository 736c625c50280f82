"""Evaluation behind ``evaluate.py``: metrics, confusion matrix and pictures.

:func:`evaluate` runs a trained model (a ``.keras`` file or an exported
SavedModel directory) on one split of a data set and writes, to an output
directory, ``metrics.json``, ``confusion_matrix.csv``,
``confusion_matrix.png``, ``misclassified.png`` and, for models with a
spatial transformer on their input, ``st_samples.png`` (from a SavedModel
through its ``spatial_transforms`` signature and transformer metadata).
"""

import csv
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

import stn_keras  # noqa: F401  (registers the layers for load_model_file)
from stn_keras import models
from stn_keras import visualization
from stn_keras.data import as_float_images
from stn_keras.export.names import SERVING_DEFAULT_SIGNATURE
from stn_keras.export.names import TRANSFORMERS_METADATA
from stn_keras.export.names import TRANSFORMS_SIGNATURE
from stn_keras.files import file_sha256
from stn_keras.files import write_directory_atomically
from stn_keras.run_dir import RunDirectory
from stn_keras.saving import load_model_file
from stn_keras.settings import data_settings

logger = logging.getLogger(__name__)

# Keras' cross-entropy clips probabilities to [epsilon, 1 - epsilon] too.
PROBABILITY_EPSILON = 1e-7


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """A loaded model: how to predict, its shapes and provenance.

    ``model`` is the Keras model of a ``.keras`` file (``None`` for a
    SavedModel). ``transformer_views`` maps a float batch to the
    :class:`TransformerView` of each transformer that samples the model's
    input (an empty list for a model without one), or is ``None`` when the
    model cannot say (a SavedModel exported without transformer metadata).
    """

    predict: object
    input_shape: tuple
    num_classes: int
    provenance: dict
    transformer_views: object = None
    model: object = None


@dataclasses.dataclass(frozen=True)
class TransformerView:
    """What one spatial transformer did to a batch, to draw it."""

    name: str
    transform: str
    align_corners: bool
    control_shape: tuple
    images: np.ndarray
    theta: np.ndarray


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


def _run_dir(model_path):
    """The run directory of a run's ``model.keras`` or ``saved_model/``."""
    return Path(model_path).resolve().parent


def data_config_for(model_path, overrides=None):
    """Data settings for evaluating ``model_path``.

    Defaults < the settings in the ``config.json`` of the run the model
    comes from (when there is one beside it) < ``overrides``. A distortion
    of ``"none"`` means no distortion.
    """
    run_dir = RunDirectory(_run_dir(model_path))
    saved = run_dir.read_config() if run_dir.config_path.is_file() else {}
    config = data_settings(saved)
    config.update(overrides or {})
    if config["distortion"] == "none":
        config["distortion"] = None
    return config


def default_output_dir(model_path):
    """``evaluation/`` in the model's run directory."""
    return RunDirectory(_run_dir(model_path)).evaluation_path


def check_compatible(trained, dataset, split):
    """Raises ValueError when the model cannot take the data set's images."""
    images, _ = dataset.split(split)
    data_shape = tuple(images.shape[1:])
    if tuple(trained.input_shape) != data_shape:
        raise ValueError(
            f"The model expects images of shape {tuple(trained.input_shape)} "
            f"but the {split} split of data set '{dataset.name}' has images "
            f"of shape {data_shape}. Evaluate on the data set the model was "
            "trained on (see its run's config.json)."
        )
    if trained.num_classes != dataset.num_classes:
        raise ValueError(
            f"The model predicts {trained.num_classes} classes but data set "
            f"'{dataset.name}' has {dataset.num_classes}. Evaluate on the "
            "data set the model was trained on (see its run's config.json)."
        )


def compute_metrics(probabilities, labels, class_names):
    """Loss, accuracy, per-class accuracy and the confusion matrix.

    Args:
        probabilities: ``(N, num_classes)`` predicted probabilities.
        labels: ``(N,)`` true class indices.
        class_names: one name per class.

    Returns:
        ``(metrics dict, confusion matrix (num_classes, num_classes))``,
        true classes as rows, predicted as columns.
    """
    probabilities = np.asarray(probabilities, dtype="float64")
    labels = np.asarray(labels, dtype="int64")
    num_classes = len(class_names)
    predictions = probabilities.argmax(axis=-1)
    true_probability = np.clip(
        probabilities[np.arange(len(labels)), labels],
        PROBABILITY_EPSILON,
        1.0 - PROBABILITY_EPSILON,
    )
    matrix = np.bincount(
        labels * num_classes + predictions, minlength=num_classes * num_classes
    ).reshape(num_classes, num_classes)
    correct = int(np.trace(matrix))
    totals = matrix.sum(axis=1)
    per_class = {
        str(name): (float(matrix[index, index] / totals[index]) if totals[index] else None)
        for index, name in enumerate(class_names)
    }
    accuracy = correct / len(labels)
    metrics = {
        "loss": float(-np.log(true_probability).mean()),
        "accuracy": accuracy,
        "error_percent": 100.0 * (1.0 - accuracy),
        "num_correct": correct,
        "num_samples": int(len(labels)),
        "per_class_accuracy": per_class,
        "per_class_samples": {
            str(name): int(totals[index]) for index, name in enumerate(class_names)
        },
    }
    return metrics, matrix


def write_confusion_matrix_csv(matrix, class_names, path):
    """CSV: a header row of predicted class names, a first column of true ones."""
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["true \\ predicted", *class_names])
        for name, row in zip(class_names, matrix):
            writer.writerow([name, *(int(value) for value in row)])
    return path


def format_report(metrics, class_names):
    """The per-class accuracy table and the overall line, as text."""
    width = max(len("class"), *(len(str(name)) for name in class_names))
    lines = [f"{'class':<{width}}  accuracy  samples"]
    for name in class_names:
        accuracy = metrics["per_class_accuracy"][str(name)]
        shown = "     n/a" if accuracy is None else f"{100 * accuracy:7.2f}%"
        lines.append(
            f"{str(name):<{width}}  {shown}  {metrics['per_class_samples'][str(name)]:7d}"
        )
    lines.append(
        f"Average loss: {metrics['loss']:.4f}, accuracy: "
        f"{metrics['num_correct']}/{metrics['num_samples']} "
        f"({100 * metrics['accuracy']:.2f}%)"
    )
    return "\n".join(lines)


def _sample_indices(labels, count):
    """Up to ``count`` indices, one per class in turn, for varied pictures."""
    labels = np.asarray(labels)
    chosen = []
    for index in range(len(labels)):
        if labels[index] not in labels[chosen] and len(chosen) < count:
            chosen.append(index)
    for index in range(len(labels)):
        if len(chosen) >= count:
            break
        if index not in chosen:
            chosen.append(index)
    return np.asarray(chosen, dtype="int64")


def draw_transformer_views(views, images, labels, predictions, class_names, path):
    """``st_samples.png`` from the :class:`TransformerView` list of a batch.

    ``labels=None`` (images of unknown class) shows the predictions alone.

    Returns the path, or ``None`` when there is no transformer to draw.
    """
    if not views:
        return None
    input_size = tuple(images.shape[1:3])
    transformed = [(view.name, view.images) for view in views]
    outlines = [
        visualization.sampled_region_outline(
            view.transform,
            view.theta,
            tuple(view.images.shape[1:3]),
            input_size,
            align_corners=view.align_corners,
            control_shape=view.control_shape,
        )
        for view in views
    ]
    return visualization.plot_transformer_samples(
        path, images, transformed, outlines, predictions, labels, class_names
    )


def write_reports(output_dir, trained, images, labels, probabilities, metrics, matrix,
                  class_names, num_samples):
    """Writes metrics.json, the confusion matrix and the pictures."""
    output_dir = Path(output_dir)
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    write_confusion_matrix_csv(matrix, class_names, output_dir / "confusion_matrix.csv")
    visualization.plot_confusion_matrix(
        matrix, class_names, output_dir / "confusion_matrix.png"
    )
    predictions = probabilities.argmax(axis=-1)
    visualization.plot_misclassified(
        output_dir / "misclassified.png",
        images,
        predictions,
        labels,
        probabilities.max(axis=-1),
        class_names,
    )
    if trained.transformer_views is None:
        logger.info(
            "The SavedModel has no transformer metadata (%s): re-export it "
            "with `python -m stn_keras.export` to get st_samples.png.",
            "assets.extra/spatial_transformers.json",
        )
        return
    chosen = _sample_indices(labels, num_samples)
    written = draw_transformer_views(
        trained.transformer_views(images[chosen]),
        images[chosen],
        np.asarray(labels)[chosen],
        predictions[chosen],
        class_names,
        output_dir / "st_samples.png",
    )
    if written is None:
        logger.info("The model has no spatial transformer: no st_samples.png.")


def evaluate(model_path, dataset, output_dir, split="test", batch_size=256, num_samples=8):
    """Evaluates a trained model on ``split`` of ``dataset``; writes the reports.

    The reports are written to a temporary directory beside ``output_dir``
    and renamed into place when complete, so an interrupted evaluation never
    leaves a mixture of old and new files.

    Args:
        model_path: a ``.keras`` file or an exported SavedModel directory,
            or a :class:`TrainedModel` from :func:`load_trained_model`.
        dataset: a loaded data set (``stn_keras.data.load_dataset``).
        output_dir: directory for the reports (created; replaced if it
            exists).
        split: ``"train"``, ``"val"`` or ``"test"``.
        batch_size: images per prediction batch.
        num_samples: images in ``st_samples.png``.

    Returns:
        The metrics dictionary written to ``metrics.json``.
    """
    images, labels = dataset.split(split)
    trained = (
        model_path
        if isinstance(model_path, TrainedModel)
        else load_trained_model(model_path, batch_size)
    )
    check_compatible(trained, dataset, split)
    float_images = as_float_images(images)
    probabilities = np.asarray(trained.predict(float_images), dtype="float32")
    class_names = [str(name) for name in dataset.class_names]
    metrics, matrix = compute_metrics(probabilities, labels, class_names)
    metrics.update(
        {
            "split": split,
            "model": trained.provenance,
            "data": {
                "name": dataset.name,
                "distortion": dataset.distortion,
                "source": dataset.source,
            },
        }
    )
    write_directory_atomically(
        output_dir,
        lambda staging: write_reports(
            staging, trained, float_images, labels, probabilities, metrics, matrix,
            class_names, num_samples,
        ),
    )
    return metrics
