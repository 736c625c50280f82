"""A tiny, learnable in-memory `stn_keras.data.Dataset` for fast tests."""

import dataclasses

import numpy as np

from stn_keras.data import Dataset
from stn_keras.data import SplitArrays
from stn_keras.data import distort


def shapes(count, size=28, channels=1, seed=0):
    """uint8 images of a horizontal bar, a vertical bar or a filled square.

    Returns ``(images, labels)``; the shape is drawn at a random position,
    so a model must find it (what a transformer is for).
    """
    rng = np.random.default_rng(seed)
    images = np.zeros((count, size, size, channels), dtype=np.uint8)
    labels = rng.integers(0, 3, size=count).astype(np.int64)
    long_side, short_side = size // 2, max(size // 7, 2)
    for image, label in zip(images, labels):
        height, width = {
            0: (short_side, long_side),
            1: (long_side, short_side),
            2: (short_side * 2, short_side * 2),
        }[int(label)]
        top = rng.integers(0, size - height + 1)
        left = rng.integers(0, size - width + 1)
        image[top : top + height, left : left + width, :] = 255
    return images, labels


def tiny_dataset(train=96, val=32, test=48, size=28, channels=1, seed=0):
    """A ``stn_keras.data`` :class:`Dataset` of :func:`shapes`, 3 classes."""
    arrays = {
        split: shapes(count, size, channels, seed + offset)
        for offset, (split, count) in enumerate((("train", train), ("val", val), ("test", test)))
    }
    x_train, y_train = arrays["train"]
    return Dataset(
        name="tiny",
        distortion=None,
        splits=SplitArrays(arrays),
        num_classes=3,
        class_names=["horizontal", "vertical", "square"],
        image_shape=(size, size, channels),
        source={"name": "tiny", "sha256": "synthetic"},
        x_train_undistorted=x_train,
        y_train_undistorted=y_train,
    )


def tiny_distorted_dataset(distortion="rts", train=32, val=16, test=16, seed=0):
    """:func:`tiny_dataset` with every split distorted once, like
    ``load_dataset(..., distortion=...)``, keeping the undistorted training
    split for online distortion."""
    plain = tiny_dataset(train, val, test, seed=seed)
    splits = {}
    for offset, split in enumerate(("train", "val", "test")):
        result = distort(
            getattr(plain, f"x_{split}"),
            distortion,
            seed=[seed, offset],
            labels=getattr(plain, f"y_{split}"),
        )
        splits[split] = (result.images, result.labels)
    return dataclasses.replace(
        plain,
        splits=SplitArrays(splits),
        image_shape=splits["train"][0].shape[1:],
        distortion=distortion,
    )
