"""``BatchSequence``: a ``keras.utils.PyDataset`` over in-memory arrays."""

import functools
import math

import keras
import numpy as np

from stn_keras.data.augmentation import augment
from stn_keras.data.distortions import distort
from stn_keras.data.images import as_float_images


# The last word of the augmentation's seed, which the distortion's lacks.
AUGMENTATION_STREAM = 1


@functools.lru_cache(maxsize=4)
def epoch_order(count, seed, epoch, shuffle, batch_size, batch_multiple):
    """The image indices of one epoch, in the order they are batched.

    A permutation seeded by ``(seed, epoch)`` (or ``0..count-1`` without
    ``shuffle``), cut so that the last batch holds a multiple of
    ``batch_multiple`` images. Cached: prefetching threads ask for the same
    epoch many times.
    """
    order = (
        np.random.default_rng([seed, epoch]).permutation(count)
        if shuffle
        else np.arange(count)
    )
    order.setflags(write=False)
    return order[: count - count % batch_size % batch_multiple]


class BatchSequence(keras.utils.PyDataset):
    """Batches of float32 images in [0, 1] and int labels, for every backend.

    With a ``distortion``, each batch is distorted when it is requested, with
    a seed made of ``seed``, the epoch and the batch index: every epoch sees
    fresh distortions, and a run is reproducible. ``augmentation`` works the
    same way, after the distortion, from a seed of its own.

    A batch is addressed by its index alone. With ``num_epochs=None`` the
    sequence is one epoch long and ``on_epoch_end`` moves it to the next
    epoch. With ``num_epochs=n`` it is the ``n`` epochs from
    ``first_epoch`` end to end (``len`` is ``n`` times
    :attr:`steps_per_epoch`; fit it with that ``steps_per_epoch``): then no
    batch depends on when Keras calls ``on_epoch_end`` or how far it
    prefetches, which is what makes a resumed run exact.

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
        augmentation: checked options of ``stn_keras.data.augment`` (see
            ``check_augmentation_options``), or ``None`` for none.
        first_epoch: the epoch the sequence starts at; a sequence started at
            epoch ``k`` yields the batches another yields after ``k`` calls
            of ``on_epoch_end`` (for resuming a run).
        batch_multiple: every batch holds a multiple of this many images
            (data-parallel replicas each take an equal share): the last
            batch of an epoch is cut down to one, dropping at most
            ``batch_multiple - 1`` images of that epoch's order.
        num_epochs: ``None`` for one epoch at a time, or the number of
            epochs the sequence spans.
        **kwargs: ``workers``, ``use_multiprocessing``, ``max_queue_size`` of
            ``keras.utils.PyDataset``.
    """

    def __init__(self, x, y, batch_size, shuffle=False, seed=0, distortion=None,
                 distortion_parameters=None, num_classes=None, augmentation=None,
                 first_epoch=0, batch_multiple=1, num_epochs=None, **kwargs):
        super().__init__(**kwargs)
        self.x = x
        self.y = y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.distortion = distortion
        self.distortion_parameters = dict(distortion_parameters or {})
        self.num_classes = num_classes
        self.augmentation = augmentation
        self.epoch = first_epoch
        self.batch_multiple = batch_multiple
        self.num_epochs = num_epochs

    def _order(self, epoch):
        return epoch_order(
            len(self.x), self.seed, epoch, self.shuffle, self.batch_size, self.batch_multiple
        )

    @property
    def steps_per_epoch(self):
        """Batches in one epoch."""
        return math.ceil(len(self._order(self.epoch)) / self.batch_size)

    def __len__(self):
        return self.steps_per_epoch * (self.num_epochs or 1)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(
                f"Batch index {index} is out of range for {len(self)} batches."
            )
        epoch_offset, batch = divmod(index, self.steps_per_epoch)
        epoch = self.epoch + epoch_offset
        indices = self._order(epoch)[batch * self.batch_size : (batch + 1) * self.batch_size]
        images = self.x[indices]
        labels = None if self.y is None else self.y[indices]
        if self.distortion is not None:
            result = distort(
                images,
                self.distortion,
                seed=[self.seed, epoch, batch],
                compile_sampler=True,
                labels=labels,
                **self.distortion_parameters,
            )
            images, labels = result.images, result.labels
        if self.augmentation is not None:
            # A seed apart from the distortion's: (seed, epoch, batch) draws it.
            images = augment(
                images,
                seed=[self.seed, epoch, batch, AUGMENTATION_STREAM],
                compile_sampler=True,
                **self.augmentation,
            )
        images = as_float_images(images)
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
        if self.num_epochs is None:
            self.epoch += 1
