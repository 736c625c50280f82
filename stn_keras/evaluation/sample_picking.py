"""Which images of a split the transformer pictures show."""

import numpy as np


def pick_samples(labels, count):
    """Up to ``count`` indices, one per class in turn, for varied pictures.

    The first image of each class comes first, in the order the classes
    first appear; the rest are filled in from the start of the split.
    """
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
