"""``load_dataset``: one entry point to every data set and distortion."""

import hashlib
import json
import logging
import os

import numpy as np

from stn_keras.data import digits
from stn_keras.data import gtsrb
from stn_keras.data import mnist
from stn_keras.data.dataset import Dataset
from stn_keras.data.distortions import check_distortion
from stn_keras.data.distortions import distort
from stn_keras.data.distortions import distortion_parameters
from stn_keras.data.split_arrays import SPLITS
from stn_keras.data.split_arrays import SplitArrays
from stn_keras.validation import check_choice
from stn_keras.validation import check_int
from stn_keras.validation import check_number

logger = logging.getLogger(__name__)

DATASETS = ("mnist", "fashion_mnist", "digits", "gtsrb")
DEFAULT_VAL_SIZES = {"mnist": 10000, "fashion_mnist": 10000, "digits": 180, "gtsrb": 0.1}
# The digits data set has no official test split: a fixed 20% is held out.
DIGITS_TEST_SIZE = 360
# The reader options each data set accepts, with their defaults.
READER_OPTIONS = {
    "mnist": {"download": None},
    "fashion_mnist": {"download": None},
    "digits": {},
    "gtsrb": {
        "download": None,
        "crop_to_roi": False,
        "on_error": "raise",
        "require_test": False,
        "cache": True,
    },
}
SOURCES = {
    "mnist": mnist.SOURCES,
    "fashion_mnist": mnist.SOURCES,
    "digits": ("auto",),
    "gtsrb": ("auto",),
}
# Distinct seeds per split, so that the fixed test set never depends on how
# many training images were drawn before it.
_SPLIT_SEED = {"train": 0, "val": 1, "test": 2}


def _json_safe(value):
    """Parameters as JSON values (arrays are recorded by shape only)."""
    if isinstance(value, np.ndarray):
        return {"array_shape": list(value.shape)}
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return [_json_safe(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _validation_count(val_size, total, name):
    """Number of validation images from an int count or a float fraction."""
    try:
        if isinstance(val_size, float):
            count = round(check_number("val_size", val_size, 0, 1, exclusive_maximum=True) * total)
        else:
            count = val_size
        return check_int("val_size", count, 0, total - 1)
    except ValueError:
        raise ValueError(
            f"`val_size` for {name} must be an int in [0, {total}) (images) or "
            f"a float in [0, 1) (fraction) that leaves at least one of the {total} "
            f"training images. Received: val_size={val_size!r}"
        ) from None


def _track_split(labels, tracks, fraction, seed):
    """Boolean validation mask holding out ``fraction`` of each class's tracks."""
    rng = np.random.default_rng(seed)
    held_out = []
    for label in np.unique(labels):
        class_tracks = np.unique(tracks[labels == label])
        count = int(round(fraction * len(class_tracks)))
        if fraction > 0 and len(class_tracks) > 1:
            count = min(max(count, 1), len(class_tracks) - 1)
        held_out.extend(rng.choice(class_tracks, size=count, replace=False))
    return np.isin(tracks, held_out)


def _load_mnist_like(name, data_dir, val_size, source, download):
    (x_train, y_train), (x_test, y_test), files = mnist.load_splits(
        name, data_dir, source, download
    )
    count = _validation_count(val_size, len(x_train), name)
    # The last images are the validation set, as is common practice.
    cut = len(x_train) - count
    splits = (x_train[:cut], y_train[:cut], x_train[cut:], y_train[cut:], x_test, y_test)
    return splits, mnist.CLASS_NAMES[name], {"files": files}


def _load_digits(image_size, val_size):
    images, labels = digits.load_digits(image_size or 28)
    # A fixed permutation, whatever the seed: the test set never changes.
    order = np.random.default_rng(0).permutation(len(images))
    test, rest = order[:DIGITS_TEST_SIZE], order[DIGITS_TEST_SIZE:]
    count = _validation_count(val_size, len(rest), "digits")
    train, val = rest[: len(rest) - count], rest[len(rest) - count :]
    import sklearn

    files = [
        {
            "sklearn.datasets.load_digits": sklearn.__version__,
            "images_sha256": hashlib.sha256(images.tobytes()).hexdigest(),
        }
    ]
    splits = (images[train], labels[train], images[val], labels[val], images[test], labels[test])
    return splits, digits.CLASS_NAMES, {"files": files}


def _load_gtsrb(data_dir, image_size, val_size, seed, reader_options):
    loaded = gtsrb.load_gtsrb(data_dir, image_size=image_size or 32, **reader_options)
    x, y, tracks = loaded["x_train"], loaded["y_train"], loaded["tracks_train"]
    count = _validation_count(val_size, len(x), "gtsrb")
    is_val = _track_split(y, tracks, count / max(len(x), 1), seed)
    splits = (x[~is_val], y[~is_val], x[is_val], y[is_val], loaded["x_test"], loaded["y_test"])
    extra = {
        "files": loaded["files"],
        "skipped": loaded["skipped"],
        "val_tracks": sorted(int(track) for track in np.unique(tracks[is_val])),
    }
    if len(loaded["x_test"]) == 0:
        extra["empty_splits"] = {
            "test": "Its archives (GTSRB_Final_Test_Images.zip and "
            "GTSRB_Final_Test_GT.zip) are not in the data directory; pass "
            "require_test=True to download them or to get an error naming them."
        }
    return splits, gtsrb.CLASS_NAMES, extra


def _split_options(name, distortion, options):
    reader_defaults = READER_OPTIONS[name]
    distortion_defaults = distortion_parameters(distortion) if distortion else {}
    unknown = sorted(set(options) - set(reader_defaults) - set(distortion_defaults))
    if unknown:
        raise ValueError(
            f"Unknown option(s) {unknown} for data set {name!r} with distortion "
            f"{distortion!r}. Expected some of {sorted(reader_defaults)} (reader) "
            f"or {sorted(distortion_defaults)} (distortion). Received: {options!r}"
        )
    reader = {key: options.get(key, value) for key, value in reader_defaults.items()}
    distortion_options = {
        key: options[key] for key in distortion_defaults if key in options
    }
    return reader, {**distortion_defaults, **distortion_options}


def _check_request(name, distortion, data_dir, image_size, source):
    """Raises ValueError for a data set request that cannot be met."""
    check_choice("name", name, DATASETS, "data set")
    if distortion is not None:
        check_distortion(distortion)
    check_choice("source", source, SOURCES[name], f"source for {name}")
    if name in ("mnist", "fashion_mnist") and image_size not in (None, 28):
        raise ValueError(
            f"{name} images are 28x28; `image_size` must be None or 28. "
            f"Received: image_size={image_size!r}"
        )
    if name == "digits" and data_dir is not None:
        raise ValueError(
            "The digits data set ships with scikit-learn and reads no data "
            "directory: drop --data-dir (or choose a data set that lives "
            f"there, such as mnist). Received: data_dir={os.fspath(data_dir)!r}"
        )


def _split_distorter(distortion, seed, test_seed, distortion_options):
    """The ``prepare`` of :class:`SplitArrays` distorting each split once,
    with a seed of its own; the test split's follows ``test_seed``. The
    parameters drawn are kept, for errors to be read against them."""

    def distort_split(split, images, labels):
        result = distort(
            images,
            distortion,
            seed=[test_seed if split == "test" else seed, _SPLIT_SEED[split]],
            labels=labels,
            **distortion_options,
        )
        return result.images, result.labels, result.parameters

    return distort_split


def _distorted_image_shape(images, labels, distortion, distortion_options):
    """The image shape ``distortion`` gives, from distorting two images (the
    canvas size and, for ``addition``, the channels depend on it)."""
    probe = distort(images[:2], distortion, labels=labels[:2], **distortion_options)
    return probe.images.shape[1:]


def load_dataset(name, distortion=None, data_dir=None, seed=0, val_size=None,
                 image_size=None, source="auto", test_seed=0, **options):
    """Loads a data set, split and optionally distorted.

    Args:
        name: one of ``DATASETS``: ``"mnist"``, ``"fashion_mnist"``,
            ``"digits"`` (scikit-learn's 8x8 digits upscaled to 28x28, no
            download) or ``"gtsrb"``.
        distortion: one of ``DISTORTIONS`` or ``None``; applied to every
            split once, deterministically for ``seed``, when the split is
            first read (its parameters are checked here).
        data_dir: the data directory (else ``STN_DATA_DIR``, else
            ``~/.keras/datasets``).
        seed: seed of the training and validation distortions and of the
            GTSRB track split.
        val_size: validation images carved from the training set: an int
            count or a float fraction; ``None`` for the data set's default
            (10,000 for MNIST and Fashion-MNIST, 180 for digits, 10% of the
            tracks of every class for GTSRB, which is split by whole tracks).
        image_size: side of the square images of ``gtsrb`` (default 32) and
            ``digits`` (default 28); MNIST and Fashion-MNIST are 28 only.
        source: ``"auto"``; for MNIST and Fashion-MNIST also ``"idx"`` and
            ``"tfds"`` (tensorflow_datasets).
        test_seed: seed of the test split's distortion. Apart from ``seed``
            so that runs of every seed are measured on the same test images;
            another value draws an independent distorted test set.
        **options: reader options (``download``; for GTSRB also
            ``crop_to_roi``, ``on_error``, ``require_test``, ``cache``) and
            the distortion's parameters (see ``distortion_parameters``).

    Returns:
        A ``Dataset``.
    """
    _check_request(name, distortion, data_dir, image_size, source)
    reader_options, distortion_options = _split_options(name, distortion, options)
    val_size = DEFAULT_VAL_SIZES[name] if val_size is None else val_size
    if name == "digits":
        splits, class_names, extra = _load_digits(image_size, val_size)
    elif name == "gtsrb":
        splits, class_names, extra = _load_gtsrb(
            data_dir, image_size, val_size, seed, reader_options
        )
    else:
        splits, class_names, extra = _load_mnist_like(
            name, data_dir, val_size, source, reader_options["download"]
        )
    arrays = {
        split: (splits[2 * index], splits[2 * index + 1])
        for index, split in enumerate(SPLITS)
    }
    x_train, y_train = arrays["train"]
    image_shape = x_train.shape[1:]
    prepare = None
    if distortion is not None:
        prepare = _split_distorter(distortion, seed, test_seed, distortion_options)
        image_shape = _distorted_image_shape(x_train, y_train, distortion, distortion_options)
    if distortion == "addition":
        class_names = [str(total) for total in range(2 * len(class_names) - 1)]
    record = {
        "dataset": name,
        "distortion": distortion,
        "distortion_parameters": _json_safe(distortion_options),
        "seed": seed,
        "test_seed": test_seed,
        "val_size": val_size,
        "image_size": image_size,
        "source": source,
        "options": _json_safe(reader_options),
        # Every distortion keeps a split's size.
        "split_sizes": {split: len(images) for split, (images, _) in arrays.items()},
        **extra,
    }
    json.dumps(record)  # Fails here, not in a run's record, if not serialisable.
    return Dataset(
        name=name,
        distortion=distortion,
        splits=SplitArrays(arrays, prepare),
        num_classes=len(class_names),
        class_names=list(class_names),
        image_shape=tuple(int(side) for side in image_shape),
        source=record,
        x_train_undistorted=x_train,
        y_train_undistorted=y_train,
        distortion_parameters=distortion_options,
    )
