"""Input pipelines for ``model.fit``, ``evaluate`` and ``predict``."""


from stn_keras.data.augmentation import check_augmentation_options
from stn_keras.data.batch_sequence import BatchSequence
from stn_keras.data.distortions import check_distortion
from stn_keras.validation import check_image_batch
from stn_keras.validation import check_int


def make_pipeline(x, y, batch_size, shuffle=False, seed=0, distortion=None,
                  num_classes=None, distortion_parameters=None, augmentation=None,
                  first_epoch=0, batch_multiple=1, num_epochs=None, **kwargs):
    """Returns batches of float32 images in [0, 1] and int labels.

    The result is a ``keras.utils.PyDataset`` (``BatchSequence``), accepted by
    ``fit``, ``evaluate`` and ``predict`` on every backend.

    Args:
        x: NHWC images, uint8 (0..255) or float in [0, 1].
        y: int labels, one per image, or ``None`` (for ``predict``).
        batch_size: images per batch.
        shuffle: reshuffle every epoch (deterministic for ``seed``).
        seed: seed of the shuffling and of online distortions.
        distortion: draw this distortion afresh for every batch of every
            epoch (online, as the paper trained); ``None`` for none.
        num_classes: when given, labels outside ``[0, num_classes)`` raise.
        distortion_parameters: the distortion's parameters (paper defaults
            when empty), e.g. ``Dataset.distortion_parameters``.
        augmentation: ``None``, or a mapping of ``stn_keras.data.augment``
            options (``{}``: its defaults): every batch of every epoch is
            re-posed and re-lit afresh, after any distortion.
        first_epoch: the epoch to start at (shuffling and distortions of
            epoch ``e`` depend on ``(seed, e)`` only), so a run resumed at
            epoch ``k`` sees the batches the uninterrupted run saw.
        batch_multiple: every batch holds a multiple of this many images
            (for data-parallel training); ``batch_size`` must be one.
        num_epochs: ``None``: one epoch, advanced by ``on_epoch_end``; or the
            number of epochs from ``first_epoch`` the sequence holds end to
            end, each batch fixed by its index (fit it with
            ``steps_per_epoch=pipeline.steps_per_epoch``).
        **kwargs: ``workers``, ``use_multiprocessing``, ``max_queue_size``.

    Returns:
        A ``BatchSequence`` yielding ``(images, labels)``, or ``(images,)``
        when ``y`` is ``None``.
    """
    batch_size = check_int("batch_size", batch_size, 1)
    first_epoch = check_int("first_epoch", first_epoch, 0)
    batch_multiple = check_int("batch_multiple", batch_multiple, 1)
    if batch_size % batch_multiple:
        raise ValueError(
            "`batch_size` must be a multiple of `batch_multiple`. Received: "
            f"batch_size={batch_size}, batch_multiple={batch_multiple}"
        )
    x, y = check_image_batch(x, y, "x", "y", allow_empty=False)
    if distortion is not None:
        check_distortion(distortion)
        if distortion == "addition" and y is None:
            raise ValueError("Distortion 'addition' needs labels `y`: its label is the sum.")
    if augmentation is not None:
        augmentation = check_augmentation_options(augmentation)
    if num_classes is not None:
        num_classes = check_int("num_classes", num_classes, 1)
    if num_epochs is not None:
        num_epochs = check_int("num_epochs", num_epochs, 1)
    return BatchSequence(
        x,
        y,
        batch_size,
        shuffle=shuffle,
        seed=seed,
        distortion=distortion,
        distortion_parameters=distortion_parameters,
        num_classes=num_classes,
        augmentation=augmentation,
        first_epoch=first_epoch,
        batch_multiple=batch_multiple,
        num_epochs=num_epochs,
        **kwargs,
    )
