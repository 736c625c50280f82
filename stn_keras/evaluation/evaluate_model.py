"""`evaluate`: one split through a trained model, and its reports written.

The reports go to a temporary directory that is renamed into place when
complete: ``metrics.json``, ``confusion_matrix.csv``,
``confusion_matrix.png``, ``misclassified.png`` and, for models with a
spatial transformer on their input, ``st_samples.png``.
"""

from pathlib import Path

import numpy as np

from stn_keras import visualization
from stn_keras.data import as_float_images
from stn_keras.evaluation.error_breakdown import centred_on_canvas
from stn_keras.evaluation.error_breakdown import errors_by_parameter
from stn_keras.evaluation.error_breakdown import undistorted_errors
from stn_keras.evaluation.loading import load_trained_model
from stn_keras.evaluation.metrics import compute_metrics
from stn_keras.evaluation.paired_comparison import compare_predictions
from stn_keras.evaluation.reports import write_confusion_matrix_csv
from stn_keras.evaluation.reports import write_metrics_json
from stn_keras.evaluation.trained_model import TrainedModel
from stn_keras.evaluation.transformer_pictures import write_transformer_samples
from stn_keras.files import write_directory_atomically


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


def write_reports(output_dir, trained, images, labels, probabilities, metrics, matrix,
                  class_names, num_samples):
    """Writes metrics.json, the confusion matrix and the pictures."""
    output_dir = Path(output_dir)
    write_metrics_json(metrics, output_dir / "metrics.json")
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
    write_transformer_samples(
        trained, images, labels, predictions, class_names, num_samples,
        output_dir / "st_samples.png",
    )


def distortion_breakdown(trained, dataset, split, wrong):
    """The model's errors by distortion parameter and on the undistorted
    digits (see ``error_breakdown.py``).

    The undistorted control is ``None`` where the digits do not fit the
    model's input as they are (``addition`` stacks two in channels).
    ``None`` in all for a data set without a distortion, or whose split
    records no parameters drawn (a hand-built ``Dataset``), or where
    neither part has anything to show.
    """
    parameters = dataset.split_distortion(split)
    if not parameters:
        return None
    images, labels = dataset.undistorted_split(split)
    height, width, channels = dataset.image_shape
    undistorted = None
    if images.shape[1] <= height and images.shape[2] <= width and images.shape[3] == channels:
        canvas = centred_on_canvas(images, (height, width))
        predictions = np.asarray(trained.predict(as_float_images(canvas))).argmax(-1)
        undistorted = undistorted_errors(wrong, predictions != labels)
    by_parameter = errors_by_parameter(wrong, parameters)
    if not by_parameter and undistorted is None:
        return None
    return {"by_parameter": by_parameter, "undistorted": undistorted}


def _loaded(model, batch_size):
    return model if isinstance(model, TrainedModel) else load_trained_model(model, batch_size)


def evaluate(model_path, dataset, output_dir, split="test", batch_size=256, num_samples=8,
             compare_with=None):
    """Evaluates a trained model on ``split`` of ``dataset``; writes the reports.

    The reports are written to a temporary directory beside ``output_dir``
    and renamed into place when complete, so an interrupted evaluation never
    leaves a mixture of old and new files.

    Args:
        model_path: a ``.keras`` file or an exported SavedModel directory,
            or a `TrainedModel` from `load_trained_model`.
        dataset: a loaded data set (``stn_keras.data.load_dataset``).
        output_dir: directory for the reports (created; replaced if it
            exists).
        split: ``"train"``, ``"val"`` or ``"test"``.
        batch_size: images per prediction batch.
        num_samples: images in ``st_samples.png``.
        compare_with: ``None``, or another model (a path or a
            `TrainedModel`) run on the same images; ``metrics.json`` then
            holds a ``"comparison"``: both models' errors, the images only
            one of them gets right and the exact McNemar p-value (see
            ``paired_comparison.py``).

    For a distorted data set ``metrics.json`` also holds a
    ``"distortion_breakdown"`` (`distortion_breakdown`): the errors in bins
    of each distortion parameter, and the model's errors on the same digits
    undistorted.

    Returns:
        The metrics dictionary written to ``metrics.json``.
    """
    images, labels = dataset.split(split)
    trained = _loaded(model_path, batch_size)
    check_compatible(trained, dataset, split)
    other = None if compare_with is None else _loaded(compare_with, batch_size)
    if other is not None:
        check_compatible(other, dataset, split)
    float_images = as_float_images(images)
    probabilities = np.asarray(trained.predict(float_images), dtype="float32")
    class_names = [str(name) for name in dataset.class_names]
    metrics, matrix = compute_metrics(probabilities, labels, class_names)
    if other is not None:
        other_probabilities = np.asarray(other.predict(float_images))
        metrics["comparison"] = {
            "other_model": other.provenance,
            **compare_predictions(
                labels, probabilities.argmax(-1), other_probabilities.argmax(-1)
            ),
        }
    breakdown = distortion_breakdown(
        trained, dataset, split, probabilities.argmax(-1) != labels
    )
    if breakdown is not None:
        metrics["distortion_breakdown"] = breakdown
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
