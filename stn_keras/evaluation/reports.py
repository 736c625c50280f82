"""The evaluation's metrics as files and text: ``metrics.json``, the
confusion matrix as CSV and the per-class table printed by ``evaluate.py``."""

import csv
import json

from stn_keras.evaluation.error_breakdown import format_error_breakdown


def write_metrics_json(metrics, path):
    """``metrics.json``: the metrics dictionary, indented."""
    path.write_text(json.dumps(metrics, indent=2, default=str))
    return path


def write_confusion_matrix_csv(matrix, class_names, path):
    """CSV: a header row of predicted class names, a first column of true ones."""
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["true \\ predicted", *class_names])
        for name, row in zip(class_names, matrix):
            writer.writerow([name, *(int(value) for value in row)])
    return path


def format_report(metrics, class_names):
    """The per-class accuracy table and the overall line, as text; then, for
    a distorted data set, the errors by distortion parameter and on the
    undistorted digits."""
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
    if "distortion_breakdown" in metrics:
        lines.append(
            format_error_breakdown(
                metrics["distortion_breakdown"],
                metrics["num_samples"] - metrics["num_correct"],
            )
        )
    return "\n".join(lines)
