"""What ``model.fit`` reads: the resumable training batches and the validation data."""

import numpy as np

from stn_keras.data import as_float_images
from stn_keras.data import make_pipeline


def training_batches(settings, dataset, first_epoch, num_replicas=1):
    """The training input of epochs ``first_epoch .. epochs - 1``.

    One ``BatchSequence`` holding those epochs end to end. With
    ``online_distortion``, fresh distortions of
    ``dataset.x_train_undistorted`` are drawn for every batch of every epoch;
    otherwise the fixed ``dataset.x_train`` is reshuffled every epoch. A
    batch depends only on ``(seed, epoch, batch index)``. With several
    replicas, each epoch's last batch is cut to split evenly over them.

    Args:
        settings: the run's `stn_keras.settings.RunSettings`.
        dataset: the loaded data set.
        first_epoch: the first epoch to run (0, or the resumed one).
        num_replicas: the devices each batch is split over.
    """
    online = settings.online_distortion
    if online and dataset.distortion is None:
        raise ValueError(
            "`online_distortion` needs a distorted data set to draw fresh "
            f"distortions of; data set '{dataset.name}' has none. Set "
            "`distortion` (e.g. rts)."
        )
    return make_pipeline(
        dataset.x_train_undistorted if online else dataset.x_train,
        dataset.y_train_undistorted if online else dataset.y_train,
        settings.batch_size,
        shuffle=True,
        seed=settings.seed,
        distortion=dataset.distortion if online else None,
        num_classes=dataset.num_classes,
        distortion_parameters=dataset.distortion_parameters,
        augmentation=dict(settings.augmentation_options) if settings.augment else None,
        first_epoch=first_epoch,
        batch_multiple=num_replicas,
        num_epochs=max(settings.epochs - first_epoch, 1),
    )


def validation_data(dataset, num_replicas):
    """``model.fit``'s ``validation_data``, or ``None`` without a validation split.

    With several replicas, the images are padded to split evenly over them.
    """
    if not len(dataset.x_val):
        return None
    images = as_float_images(dataset.x_val)
    labels = np.asarray(dataset.y_val, "int64")
    if num_replicas == 1:
        return images, labels
    # Batches must split evenly over the replicas: pad with copies of the
    # last image that weigh nothing. Keras averages the loss over every
    # entry, padding included, so the real images weigh (N + padding) / N:
    # val_loss is then the mean over the N real images, and the weighted
    # accuracy is unchanged by the uniform scale.
    count = len(images)
    padding = -count % num_replicas
    weights = np.concatenate(
        [np.full(count, (count + padding) / count), np.zeros(padding)]
    ).astype("float32")
    return (
        np.concatenate([images, np.repeat(images[-1:], padding, axis=0)]),
        np.concatenate([labels, np.repeat(labels[-1:], padding)]),
        weights,
    )
