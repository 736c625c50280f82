"""``BatchSequence``: a ``keras.utils.PyDataset`` over in-memory arrays."""

import math

import keras
import numpy as np

from stn_keras.data.distortions import distort


class BatchSequence(keras.utils.PyDataset):
    """Batches of float32 images in [0, 1] and int labels, for every backend.

    With a ``distortion``, each batch is distorted when it is requested, with
    a seed made of ``seed``, the epoch and the batch index: every epoch sees
    fresh distortions, and a run is reproducible.

    Args:
        x: NHWC images, uint8 (0..255) or float (already in [0, 1]).
        y: labels, one per image, or ``None`` (batches hold images only).
        batch_size: images per batch; the last batch may be smaller.
        shuffle: reshuffle the order every epoch.
        seed: seed of the shuffling and of the distortions.
        distortion: one of ``stn_keras.data.DISTORTIONS`` or ``None``.
        distortion_parameters: the distortion's parameters (paper defaults
            when empty).
        num_classes: when given, labels outside ``[0, num_classes)`` raise.
        first_epoch: the epoch the sequence starts at; a sequence started at
            epoch ``k`` yields the batches another yields after ``k`` calls
            of ``on_epoch_end`` (for resuming a run).
        **kwargs: ``workers``, ``use_multiprocessing``, ``max_queue_size`` of
            ``keras.utils.PyDataset``.
    """

    def __init__(self, x, y, batch_size, shuffle=False, seed=0, distortion=None,
                 distortion_parameters=None, num_classes=None, first_epoch=0,
                 **kwargs):
        super().__init__(**kwargs)
        self.x = x
        self.y = y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.distortion = distortion
        self.distortion_parameters = dict(distortion_parameters or {})
        self.num_classes = num_classes
        self.epoch = first_epoch
        self._order = self._epoch_order()

    def _epoch_order(self):
        if not self.shuffle:
            return np.arange(len(self.x))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.x))

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(
                f"Batch index {index} is out of range for {len(self)} batches."
            )
        indices = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        images = self.x[indices]
        labels = None if self.y is None else self.y[indices]
        if self.distortion is not None:
            result = distort(
                images,
                self.distortion,
                seed=[self.seed, self.epoch, index],
                compile_sampler=True,
                labels=labels,
                **self.distortion_parameters,
            )
            images, labels = result.images, result.labels
        if images.dtype == np.uint8:
            images = images.astype(np.float32) * np.float32(1.0 / 255.0)
        else:
            images = images.astype(np.float32, copy=False)
        if labels is None:
            return (images,)
        if self.num_classes is not None and (
            labels.min() < 0 or labels.max() >= self.num_classes
        ):
            raise ValueError(
                f"Batch {index} has labels outside [0, {self.num_classes}): "
                f"min {labels.min()}, max {labels.max()}. Check num_classes."
            )
        return images, labels

    def on_epoch_end(self):
        self.epoch += 1
        self._order = self._epoch_order()
