"""The value returned by ``stn_keras.data.load_dataset``."""

import dataclasses

import numpy as np

from stn_keras.data.split_arrays import SplitArrays


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A data set split into training, validation and test arrays.

    Attributes:
        name: the data set's name (one of ``stn_keras.data.DATASETS``).
        distortion: the distortion applied to every split, or ``None``.
        splits: the :class:`SplitArrays` behind ``x_train`` ... ``y_test``.
        num_classes: the number of classes.
        class_names: a name per class.
        image_shape: ``(height, width, channels)`` of the images.
        source: JSON-serialisable record of the data: the files used with
            their checksums, seed, options and split sizes.
        x_train_undistorted, y_train_undistorted: the training split before
            distortion, for pipelines that draw fresh distortions every epoch.
        distortion_parameters: the distortion's parameters used.

    ``x_train, y_train, x_val, y_val, x_test, y_test`` are uint8 NHWC images
    and int64 labels. With a distortion, every split is distorted once,
    deterministically for the seed (test and validation stay fixed), when it
    is first read.
    """

    name: str
    distortion: str | None
    splits: SplitArrays
    num_classes: int
    class_names: list
    image_shape: tuple
    source: dict
    x_train_undistorted: np.ndarray
    y_train_undistorted: np.ndarray
    distortion_parameters: dict = dataclasses.field(default_factory=dict)

    x_train = property(lambda self: self.splits["train"][0])
    y_train = property(lambda self: self.splits["train"][1])
    x_val = property(lambda self: self.splits["val"][0])
    y_val = property(lambda self: self.splits["val"][1])
    x_test = property(lambda self: self.splits["test"][0])
    y_test = property(lambda self: self.splits["test"][1])

    def split(self, split):
        """``(images, labels)`` of ``"train"``, ``"val"`` or ``"test"``.

        Raises:
            ValueError: an unknown split, or an empty one (for example the
                GTSRB test split when its archives are absent).
        """
        return self._nonempty(split, self.splits[split])

    def undistorted_split(self, split):
        """``(images, labels)`` of a split before its distortion.

        The same images as :meth:`split` for a data set without one. With
        ``distortion_parameters``, distorting a subset of them gives fresh
        distortions of the same digits (the fixed ones need the whole
        split's seed), without distorting the whole split first.

        Raises:
            ValueError: an unknown split, or an empty one.
        """
        return self._nonempty(split, self.splits.unprepared(split))

    def split_distortion(self, split):
        """The distortion's parameters drawn for each image of ``split``.

        A dict as ``stn_keras.data.distort`` returns it (see the
        ``distortions`` module for each distortion's names), first axis the
        image index of :meth:`split`; ``{}`` for a data set without a
        distortion. Reads (and so distorts) the split.

        Raises:
            ValueError: an unknown split, or an empty one.
        """
        self.split(split)
        return self.splits.parameters(split)

    def _nonempty(self, split, arrays):
        images, labels = arrays
        if len(images) == 0:
            raise ValueError(
                f"The {split} split of {self.name!r} is empty. "
                + self.source.get("empty_splits", {}).get(split, "")
            )
        return images, labels
