"""Loss, accuracy, per-class accuracy and the confusion matrix of predictions."""

import numpy as np

# Keras' cross-entropy clips probabilities to [epsilon, 1 - epsilon] too.
PROBABILITY_EPSILON = 1e-7


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
