"""Input pipelines for ``model.fit``, ``evaluate`` and ``predict``."""

from stn_keras.data.batch_sequence import BatchSequence
from stn_keras.data.batch_settings import BatchSettings

# The arguments of ``keras.utils.PyDataset`` itself: how batches are loaded,
# not which.
PY_DATASET_OPTIONS = ("workers", "use_multiprocessing", "max_queue_size")


def make_pipeline(x, y, batch_size, **options):
    """Returns batches of float32 images in [0, 1] and int labels.

    The result is a ``keras.utils.PyDataset`` (``BatchSequence``), accepted by
    ``fit``, ``evaluate`` and ``predict`` on every backend. The same as
    ``BatchSequence(x, y, BatchSettings(batch_size, **options))``.

    Args:
        x: NHWC images, uint8 (0..255) or float in [0, 1]; at least one.
        y: int labels, one per image, or ``None`` (for ``predict``).
        batch_size: images per batch.
        **options: the other fields of ``BatchSettings`` (``shuffle``,
            ``seed``, ``distortion``, ``distortion_parameters``,
            ``num_classes``, ``augmentation``, ``first_epoch``,
            ``batch_multiple``, ``num_epochs``: see there), and
            ``workers``, ``use_multiprocessing``, ``max_queue_size`` of
            ``keras.utils.PyDataset``.

    Returns:
        A ``BatchSequence`` yielding ``(images, labels)``, or ``(images,)``
        when ``y`` is ``None``.

    Raises:
        ValueError: a setting out of its range, ``x`` or ``y`` of the wrong
            shape (see ``BatchSettings`` and ``BatchSequence``).
    """
    loading = {name: options.pop(name) for name in PY_DATASET_OPTIONS if name in options}
    return BatchSequence(x, y, BatchSettings(batch_size, **options), **loading)
