"""Several models' predictions of the same images: the errors they share.

When runs of different seeds and recipes all land at one error level, the
question is whether they fail on the same images (hard or ambiguous ones:
a better recipe of the same model has little left to win) or on different
ones (noise a better recipe, or an ensemble, could remove).
"""

import numpy as np


def error_overlap(labels, probabilities):
    """How the errors of several models on the same images overlap.

    Args:
        labels: int labels of the images, shape ``(n,)``.
        probabilities: one array of class probabilities per model, each of
            shape ``(n, classes)``, at least two.

    Returns:
        A dict: ``num_images``; ``errors``, each model's error count, in
        order; ``shared_errors``, how many of each model's errors at least
        one other model makes too; ``wrong_in_every_model``,
        ``wrong_in_several`` (at least two), ``wrong_in_exactly_one`` and
        ``wrong_in_any`` (image counts); ``average_errors``, the errors of the
        models' averaged probabilities (an ensemble, not any one model's
        figure).

    Raises:
        ValueError: fewer than two models, or an array whose shape does not
            match the labels or the others'.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"`labels` must be a 1-D array of class ids. Received: shape={labels.shape}")
    probabilities = [np.asarray(each) for each in probabilities]
    if len(probabilities) < 2:
        raise ValueError(
            "`probabilities` must hold at least two models' predictions to compare. "
            f"Received: {len(probabilities)}"
        )
    expected = (len(labels), probabilities[0].shape[-1])
    shapes = [each.shape for each in probabilities]
    if any(shape != expected for shape in shapes):
        raise ValueError(
            "Every model's probabilities must have the shape (images, classes) = "
            f"{expected}, one row per label. Received shapes: {shapes}"
        )
    wrong = np.stack([each.argmax(-1) != labels for each in probabilities])
    wrong_count = wrong.sum(axis=0)
    average = np.mean(probabilities, axis=0)
    return {
        "num_images": int(len(labels)),
        "errors": [int(count) for count in wrong.sum(axis=1)],
        "shared_errors": [int(count) for count in (wrong & (wrong_count >= 2)).sum(axis=1)],
        "wrong_in_every_model": int((wrong_count == len(probabilities)).sum()),
        "wrong_in_several": int((wrong_count >= 2).sum()),
        "wrong_in_exactly_one": int((wrong_count == 1).sum()),
        "wrong_in_any": int((wrong_count >= 1).sum()),
        "average_errors": int((average.argmax(-1) != labels).sum()),
    }


def format_error_overlap(overlap, names):
    """``overlap`` (from :func:`error_overlap`) as lines of text, one model per line first."""
    lines = [
        f"{name}: {errors} errors, {shared} of them made by another model too"
        for name, errors, shared in zip(
            names, overlap["errors"], overlap["shared_errors"], strict=True
        )
    ]
    models = len(overlap["errors"])
    lines.append(
        f"Of {overlap['num_images']} images: {overlap['wrong_in_any']} wrong in at least one "
        f"model, {overlap['wrong_in_several']} in two or more, "
        f"{overlap['wrong_in_every_model']} in all {models}, "
        f"{overlap['wrong_in_exactly_one']} in exactly one."
    )
    lines.append(
        f"The {models} models' averaged probabilities (an ensemble): "
        f"{overlap['average_errors']} errors."
    )
    return "\n".join(lines)
