"""Two models' predictions on the same images, compared image by image.

Whether a new model is better than a shipped one is a paired question: both
classify the same images, and only the images on which they disagree about
being right carry evidence. The exact McNemar test gives the probability of
a split of those images at least as uneven if both models were equally
accurate.
"""

import math
import numbers

import numpy as np


def exact_mcnemar_p_value(only_first_correct, only_second_correct):
    """Two-sided exact McNemar p-value of the discordant counts.

    Under equal accuracy each of the ``n`` discordant images is a fair coin;
    the p-value is the probability of a split at least as uneven: twice the
    smaller tail of Binomial(n, 1/2), at most 1. With no discordant image
    it is 1.
    """
    counts = (only_first_correct, only_second_correct)
    if any(not isinstance(count, numbers.Integral) or count < 0 for count in counts):
        raise ValueError(
            "Discordant counts must be integers >= 0. Received: "
            f"only_first_correct={only_first_correct!r}, "
            f"only_second_correct={only_second_correct!r}"
        )
    total = int(only_first_correct) + int(only_second_correct)
    smaller = int(min(counts))
    # Exact integers: no underflow for thousands of discordant images.
    tail = sum(math.comb(total, count) for count in range(smaller + 1))
    return min(1.0, 2 * tail / 2**total)


def compare_predictions(labels, predictions, other_predictions):
    """How two models' predicted classes of the same images compare.

    Args:
        labels: ``(N,)`` true classes.
        predictions: ``(N,)`` classes the evaluated model predicts.
        other_predictions: ``(N,)`` classes the other model predicts.

    Returns:
        A dict: each model's errors, the images only the evaluated model
        gets right (``only_this_correct``), only the other gets right
        (``only_other_correct``), and the exact McNemar p-value.
    """
    labels, predictions, other_predictions = (
        np.asarray(values).reshape(-1) for values in (labels, predictions, other_predictions)
    )
    if not len(labels) == len(predictions) == len(other_predictions):
        raise ValueError(
            "Labels and both models' predictions must cover the same images. "
            f"Received: {len(labels)} labels, {len(predictions)} and "
            f"{len(other_predictions)} predictions"
        )
    correct = predictions == labels
    other_correct = other_predictions == labels
    only_this = int(np.sum(correct & ~other_correct))
    only_other = int(np.sum(~correct & other_correct))
    return {
        "errors": int(np.sum(~correct)),
        "other_errors": int(np.sum(~other_correct)),
        "only_this_correct": only_this,
        "only_other_correct": only_other,
        "mcnemar_p_value": exact_mcnemar_p_value(only_this, only_other),
    }


def format_comparison(comparison):
    """One line of text for ``evaluate.py``."""
    return (
        f"Against {comparison['other_model']['path']}: {comparison['errors']} errors against "
        f"{comparison['other_errors']}; {comparison['only_this_correct']} images only this "
        f"model gets right, {comparison['only_other_correct']} only the other; exact "
        f"McNemar two-sided p = {comparison['mcnemar_p_value']:.4g}"
    )
