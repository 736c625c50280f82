"""``BatchSequence``: a ``keras.utils.PyDataset`` over in-memory arrays."""

import functools
import math

import keras
import numpy as np

from stn_keras.data.augmentation import augment
from stn_keras.data.batch_settings import BatchSettings
from stn_keras.data.distortions import distort
from stn_keras.data.images import as_float_images
from stn_keras.validation import check_image_batch


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

    The stream is described by ``settings`` (see ``BatchSettings``). With a
    distortion, each batch is distorted when it is requested, with a seed
    made of the settings' ``seed``, the epoch and the batch index: every
    epoch sees fresh distortions, and a run is reproducible. The
    augmentation works the same way, after the distortion, from a seed of
    its own.

    A batch is addressed by its index alone. With ``num_epochs=None`` the
    sequence is one epoch long and ``on_epoch_end`` moves it to the next
    epoch. With ``num_epochs=n`` it is the ``n`` epochs from
    ``first_epoch`` end to end (``len`` is ``n`` times
    :attr:`steps_per_epoch`; fit it with that ``steps_per_epoch``): then no
    batch depends on when Keras calls ``on_epoch_end`` or how far it
    prefetches, which is what makes a resumed run exact.

    Args:
        x: NHWC images, uint8 (0..255) or float (already in [0, 1]); at
            least one.
        y: int labels, one per image, or ``None`` (batches hold images only).
        settings: a ``BatchSettings``.
        **kwargs: ``workers``, ``use_multiprocessing``, ``max_queue_size`` of
            ``keras.utils.PyDataset``.

    Raises:
        ValueError: ``x`` or ``y`` of the wrong shape, or a distortion that
            needs labels without them.
    """

    def __init__(self, x, y, settings, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(settings, BatchSettings):
            raise ValueError(
                "`settings` must be a `stn_keras.data.BatchSettings`, e.g. "
                "BatchSettings(batch_size=32). Received: "
                f"settings={settings!r}"
            )
        self.x, self.y = check_image_batch(x, y, "x", "y", allow_empty=False)
        if settings.distortion == "addition" and self.y is None:
            raise ValueError("Distortion 'addition' needs labels `y`: its label is the sum.")
        self.settings = settings
        self.epoch = settings.first_epoch

    def _order(self, epoch):
        settings = self.settings
        return epoch_order(
            len(self.x),
            settings.seed,
            epoch,
            settings.shuffle,
            settings.batch_size,
            settings.batch_multiple,
        )

    @property
    def steps_per_epoch(self):
        """Batches in one epoch."""
        return math.ceil(len(self._order(self.epoch)) / self.settings.batch_size)

    def __len__(self):
        return self.steps_per_epoch * (self.settings.num_epochs or 1)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(
                f"Batch index {index} is out of range for {len(self)} batches."
            )
        epoch_offset, batch = divmod(index, self.steps_per_epoch)
        epoch = self.epoch + epoch_offset
        settings = self.settings
        batch_size = settings.batch_size
        indices = self._order(epoch)[batch * batch_size : (batch + 1) * batch_size]
        images = self.x[indices]
        labels = None if self.y is None else self.y[indices]
        if settings.distortion is not None:
            result = distort(
                images,
                settings.distortion,
                seed=[settings.seed, epoch, batch],
                compile_sampler=True,
                labels=labels,
                **settings.distortion_parameters,
            )
            images, labels = result.images, result.labels
        if settings.augmentation is not None:
            # A seed apart from the distortion's: (seed, epoch, batch) draws it.
            images = augment(
                images,
                seed=[settings.seed, epoch, batch, AUGMENTATION_STREAM],
                compile_sampler=True,
                **settings.augmentation,
            )
        images = as_float_images(images)
        if labels is None:
            return (images,)
        num_classes = settings.num_classes
        if num_classes is not None and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"Batch {index} has labels outside [0, {num_classes}): "
                f"min {labels.min()}, max {labels.max()}. Check num_classes."
            )
        return images, labels

    def on_epoch_end(self):
        if self.settings.num_epochs is None:
            self.epoch += 1
