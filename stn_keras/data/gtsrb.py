"""GTSRB (German Traffic Sign Recognition Benchmark) in its official layout.

Training images live in ``Final_Training/Images/000NN/`` (one folder per
class) with their ``GT-000NN.csv``; test images in ``Final_Test/Images/``
with ``GT-final_test.csv`` (from ``GTSRB_Final_Test_GT.zip``). Both CSVs have
the columns ``Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId``.
The files are read from the official zips or from their extracted trees in
``<data_dir>/gtsrb/``. Decoded arrays are cached (see ``paths.resolve_cache_dir``)
under a key made of the sources' checksums and the preprocessing options.
"""

import csv
import hashlib
import io
import json
import logging
import os
import posixpath
import re

import numpy as np
from PIL import Image

from stn_keras.data import paths
from stn_keras.data.file_tree import DamagedArchiveError
from stn_keras.data.file_tree import FileTree
from stn_keras.data.ppm import PpmFormatError
from stn_keras.data.ppm import decode_ppm
from stn_keras.files import write_file_atomically
from stn_keras.validation import check_choice
from stn_keras.validation import check_int

logger = logging.getLogger(__name__)

CLASS_NAMES = [
    "Speed limit (20km/h)",
    "Speed limit (30km/h)",
    "Speed limit (50km/h)",
    "Speed limit (60km/h)",
    "Speed limit (70km/h)",
    "Speed limit (80km/h)",
    "End of speed limit (80km/h)",
    "Speed limit (100km/h)",
    "Speed limit (120km/h)",
    "No passing",
    "No passing for vehicles over 3.5 t",
    "Right-of-way at the next intersection",
    "Priority road",
    "Yield",
    "Stop",
    "No vehicles",
    "Vehicles over 3.5 t prohibited",
    "No entry",
    "General caution",
    "Dangerous curve to the left",
    "Dangerous curve to the right",
    "Double curve",
    "Bumpy road",
    "Slippery road",
    "Road narrows on the right",
    "Road work",
    "Traffic signals",
    "Pedestrians",
    "Children crossing",
    "Bicycles crossing",
    "Beware of ice/snow",
    "Wild animals crossing",
    "End of all speed and passing limits",
    "Turn right ahead",
    "Turn left ahead",
    "Ahead only",
    "Go straight or right",
    "Go straight or left",
    "Keep right",
    "Keep left",
    "Roundabout mandatory",
    "End of no passing",
    "End of no passing by vehicles over 3.5 t",
]
NUM_CLASSES = len(CLASS_NAMES)
CSV_COLUMNS = ["Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId"]
TRAINING_ARCHIVE = "GTSRB_Final_Training_Images.zip"
TEST_ARCHIVE = "GTSRB_Final_Test_Images.zip"
TEST_LABELS_ARCHIVE = "GTSRB_Final_Test_GT.zip"
TEST_CSV = "GT-final_test.csv"
_BASE_URL = "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/"
_MD5S = {
    TRAINING_ARCHIVE: "f33fd80ac59bff73c82d25ab499e03a3",
    TEST_ARCHIVE: "c7e4e6327067d32654124b0fe9e82185",
    TEST_LABELS_ARCHIVE: "fe31e9c9270bbcd7b84b7f21a9d9d9e5",
}
ON_ERROR_CHOICES = ("raise", "skip")
_TRAINING_CSV = re.compile(r"(?:^|/)Final_Training/Images/(\d{5})/GT-\1\.csv$")
_TRAINING_IMAGE = re.compile(r"(?:^|/)Final_Training/Images/(\d{5})/[^/]+\.ppm$")
_TEST_IMAGE = re.compile(r"(?:^|/)Final_Test/Images/[^/]+\.ppm$")
# Bump when decoding or preprocessing changes, so old caches are not reused.
_CACHE_VERSION = 1
# How many offending file names an error message lists before "and N more".
_NAMES_SHOWN = 10


class GtsrbDataError(ValueError):
    """Raised for missing, extra or unreadable GTSRB files, or a damaged archive."""


def _parse_csv(data, name):
    """Rows of a GTSRB CSV as dicts with int values (Filename kept as str)."""
    text = data.decode("utf-8-sig")
    reader = csv.reader(io.StringIO(text), delimiter=";")
    header = next(reader, None)
    if header is None or [column.strip() for column in header[:8]] != CSV_COLUMNS:
        raise GtsrbDataError(
            f"GTSRB CSV {name} does not start with the header "
            f"{';'.join(CSV_COLUMNS)}. Received: {header!r}"
        )
    rows = []
    for line_number, fields in enumerate(reader, start=2):
        if not fields or not "".join(fields).strip():
            continue
        try:
            row = {"Filename": fields[0].strip()}
            row.update({column: int(fields[i]) for i, column in enumerate(CSV_COLUMNS) if i})
        except (ValueError, IndexError):
            raise GtsrbDataError(
                f"GTSRB CSV {name}, line {line_number}, is malformed: {fields!r}"
            ) from None
        rows.append(row)
    return rows


def _decode(data, row, image_size, crop_to_roi, name):
    """Decodes one image, crops it to its ROI if asked and resizes it."""
    pixels = decode_ppm(data, name)
    height, width = pixels.shape[:2]
    box = None
    if crop_to_roi:
        # The CSV describes the original image; scale the ROI to this one's
        # actual size (the shared copy was resized to 32x32).
        scale_x = width / row["Width"]
        scale_y = height / row["Height"]
        box = (
            max(0.0, row["Roi.X1"] * scale_x),
            max(0.0, row["Roi.Y1"] * scale_y),
            min(float(width), (row["Roi.X2"] + 1) * scale_x),
            min(float(height), (row["Roi.Y2"] + 1) * scale_y),
        )
        if box[2] <= box[0] or box[3] <= box[1]:
            raise GtsrbDataError(f"GTSRB image {name} has an empty region of interest {box}.")
    if box is None and (height, width) == (image_size, image_size):
        return pixels
    resized = Image.fromarray(pixels).resize(
        (image_size, image_size), Image.BILINEAR, box=box
    )
    return np.asarray(resized, dtype=np.uint8)


class _Problems:
    """Collects offending files; raises or logs them with exact counts."""

    def __init__(self, on_error):
        self.on_error = on_error
        self.messages = []

    def add(self, message):
        self.messages.append(message)

    def settle(self, split):
        if not self.messages:
            return
        count = len(self.messages)
        shown = "; ".join(self.messages[:_NAMES_SHOWN])
        more = f"; and {count - _NAMES_SHOWN} more" if count > _NAMES_SHOWN else ""
        if self.on_error == "raise":
            raise GtsrbDataError(
                f"GTSRB {split} split has {count} problem(s): {shown}{more}. "
                "Fix or remove these files, or pass on_error='skip' to leave "
                "them out."
            )
        logger.warning(
            "GTSRB %s split: skipped %d file(s): %s%s", split, count, shown, more
        )


def _read_rows(tree, rows_by_image, image_names, split, image_size, crop_to_roi, problems):
    """Decodes the images named in the CSV rows; reports every mismatch."""
    listed = set(rows_by_image)
    present = set(image_names)
    for name in sorted(present - listed):
        problems.add(f"image without CSV row: {name}")
    images, kept = [], []
    for name in sorted(listed):
        if name not in present:
            problems.add(f"CSV row without image: {name}")
            continue
        try:
            images.append(
                _decode(tree.read(name), rows_by_image[name], image_size, crop_to_roi, name)
            )
        except (PpmFormatError, GtsrbDataError, OSError) as error:
            problems.add(f"unreadable image {name}: {error}")
            continue
        kept.append(name)
    problems.settle(split)
    if images:
        array = np.stack(images)
    else:
        array = np.zeros((0, image_size, image_size, 3), dtype=np.uint8)
    return array, kept


def _training_split(tree, image_size, crop_to_roi, problems):
    names = tree.names()
    rows_by_image = {}
    for name in names:
        match = _TRAINING_CSV.search(name)
        if not match:
            continue
        folder = posixpath.dirname(name)
        folder_class = int(match.group(1))
        for row in _parse_csv(tree.read(name), name):
            if row["ClassId"] != folder_class:
                problems.add(
                    f"CSV row of {row['Filename']} in {name} has ClassId "
                    f"{row['ClassId']}, not its folder's class {folder_class}"
                )
                continue
            rows_by_image[posixpath.join(folder, row["Filename"])] = row
    image_names = [name for name in names if _TRAINING_IMAGE.search(name)]
    images, kept = _read_rows(
        tree, rows_by_image, image_names, "training", image_size, crop_to_roi, problems
    )
    labels = np.array([rows_by_image[name]["ClassId"] for name in kept], dtype=np.int64)
    # Track id: class * 100000 + the TTTTT of TTTTT_NNNNN.ppm, unique overall.
    tracks = np.array(
        [
            labels[index] * 100000 + int(posixpath.basename(name).split("_")[0])
            for index, name in enumerate(kept)
        ],
        dtype=np.int64,
    )
    return images, labels, tracks


def _test_split(image_tree, csv_data, csv_name, image_size, crop_to_roi, problems):
    image_names = [name for name in image_tree.names() if _TEST_IMAGE.search(name)]
    if not image_names:
        problems.add(f"no Final_Test/Images/*.ppm in {image_tree.location}")
        problems.settle("test")
    folder = posixpath.dirname(image_names[0]) if image_names else ""
    rows_by_image = {
        posixpath.join(folder, row["Filename"]): row
        for row in _parse_csv(csv_data, csv_name)
    }
    images, kept = _read_rows(
        image_tree, rows_by_image, image_names, "test", image_size, crop_to_roi, problems
    )
    labels = np.array([rows_by_image[name]["ClassId"] for name in kept], dtype=np.int64)
    return images, labels


def _first_tree(folder, archive, pattern):
    """The zip ``archive`` in ``folder`` if present, else ``folder`` if it holds
    a file matching ``pattern``; ``None`` when neither does."""
    archive_path = os.path.join(folder, archive)
    if os.path.isfile(archive_path):
        return FileTree(archive_path)
    if os.path.isdir(folder):
        tree = FileTree(folder)
        if any(pattern.search(name) for name in tree.names()):
            return tree
    return None


def _find_test_csv(folder, image_tree):
    """``(bytes, name, description)`` of GT-final_test.csv, or ``None``."""
    labels_archive = os.path.join(folder, TEST_LABELS_ARCHIVE)
    candidates = []
    if os.path.isfile(labels_archive):
        candidates.append(FileTree(labels_archive))
    candidates.append(image_tree)
    for tree in candidates:
        for name in tree.names():
            if posixpath.basename(name) == TEST_CSV:
                description = tree.describe([name]) if not tree.is_zip else tree.describe()
                return tree.read(name), f"{tree.location}:{name}", description
    return None


def _locate(data_dir, require_test, download):
    """Finds the training and test sources, downloading what is allowed."""
    folder = os.path.join(paths.resolve_data_dir(data_dir), "gtsrb")
    training = _first_tree(folder, TRAINING_ARCHIVE, _TRAINING_CSV)
    if training is None:
        paths.find_or_download(
            "gtsrb",
            [TRAINING_ARCHIVE],
            urls={TRAINING_ARCHIVE: _BASE_URL + TRAINING_ARCHIVE},
            md5s=_MD5S,
            data_dir=data_dir,
            download=download,
        )
        training = FileTree(os.path.join(folder, TRAINING_ARCHIVE))
    test_images = _first_tree(folder, TEST_ARCHIVE, _TEST_IMAGE)
    test_csv = _find_test_csv(folder, test_images) if test_images else None
    if test_csv is None and require_test:
        paths.find_or_download(
            "gtsrb",
            [TEST_ARCHIVE, TEST_LABELS_ARCHIVE],
            urls={name: _BASE_URL + name for name in (TEST_ARCHIVE, TEST_LABELS_ARCHIVE)},
            md5s=_MD5S,
            data_dir=data_dir,
            download=download,
        )
        test_images = FileTree(os.path.join(folder, TEST_ARCHIVE))
        test_csv = _find_test_csv(folder, test_images)
        if test_csv is None:
            raise GtsrbDataError(
                f"The GTSRB test split was requested but {TEST_CSV} is in "
                f"neither {TEST_LABELS_ARCHIVE} nor the test images in {folder}."
            )
    if test_csv is None:
        logger.info(
            "GTSRB test split is empty: no test images with their %s labels "
            "in %s (expected %s and %s, or their extracted Final_Test/Images/ "
            "and %s). Pass require_test=True to download them or fail.",
            TEST_CSV,
            folder,
            TEST_ARCHIVE,
            TEST_LABELS_ARCHIVE,
            TEST_CSV,
        )
        test_images = None
    return training, test_images, test_csv


def _cache_path(key):
    return os.path.join(paths.resolve_cache_dir(), f"gtsrb-{key}.npz")


def _save_cache(path, arrays):
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_file_atomically(path, lambda partial: np.savez(partial, **arrays))
    except OSError as error:
        logger.warning("Could not write the GTSRB cache %s: %s", path, error)


def load_gtsrb(
    data_dir=None,
    image_size=32,
    crop_to_roi=False,
    on_error="raise",
    require_test=False,
    download=None,
    cache=True,
):
    """Reads GTSRB's training and (when present) test images.

    Args:
        data_dir: the data directory; the files are in its ``gtsrb/``.
        image_size: side of the square images returned (32 and 48 are usual).
        crop_to_roi: crop each image to its region of interest (scaled from
            the CSV's original size to the image's actual size) first.
        on_error: ``"raise"`` to fail on any missing, unlisted or unreadable
            file, or ``"skip"`` to leave them out and log their exact count.
        require_test: fail when the test split is missing instead of
            returning it empty.
        download: whether missing archives may be downloaded (``None``: only
            into the default data directory).
        cache: read and write the decoded arrays from the cache.

    Returns:
        A dict with uint8 ``x_train`` ``(N, S, S, 3)``, int64 ``y_train``,
        int64 ``tracks_train`` (one id per physical sign), ``x_test``,
        ``y_test``, ``files`` (the sources and their checksums) and
        ``skipped`` (the number of files left out).
    """
    check_choice("on_error", on_error, ON_ERROR_CHOICES)
    image_size = check_int("image_size", image_size, 1)
    options = {"image_size": image_size, "crop_to_roi": bool(crop_to_roi), "on_error": on_error}
    try:
        training, test_images, test_csv = _locate(data_dir, require_test, download)
        try:
            files = [training.describe()]
            if test_csv is not None:
                files += [test_images.describe(), test_csv[2]]
            arrays = _cached_or_decoded(training, test_images, test_csv, files, options, cache)
        finally:
            for tree in (training, test_images):
                if tree is not None:
                    tree.close()
    except DamagedArchiveError as error:
        raise GtsrbDataError(f"{error}. {_replace_advice(error.path)}") from error
    skipped = arrays.pop("skipped")
    return {
        **arrays,
        "files": files,
        "options": options,
        "skipped": {"train": int(skipped[0]), "test": int(skipped[1])},
    }


def _replace_advice(archive):
    name = os.path.basename(archive)
    if name not in _MD5S:
        return "Replace it with an undamaged copy."
    return (
        f"Delete it and download it again from {_BASE_URL}{name} (the "
        f"published archive has md5 {_MD5S[name]}), or copy an undamaged one "
        "over it."
    )


def _cached_or_decoded(training, test_images, test_csv, files, options, cache):
    """The decoded arrays, from the cache or decoded (and then cached).

    Only a complete decoding is cached: a damaged archive raises first.
    """
    key = hashlib.sha256(
        json.dumps([_CACHE_VERSION, files, options], sort_keys=True).encode()
    ).hexdigest()[:24]
    cache_path = _cache_path(key)
    if cache and os.path.isfile(cache_path):
        logger.info("Reading decoded GTSRB arrays from the cache %s", cache_path)
        with np.load(cache_path) as stored:
            return {name: stored[name] for name in stored.files}
    image_size, crop_to_roi = options["image_size"], options["crop_to_roi"]
    training_problems = _Problems(options["on_error"])
    test_problems = _Problems(options["on_error"])
    x_train, y_train, tracks_train = _training_split(
        training, image_size, crop_to_roi, training_problems
    )
    if test_csv is not None:
        x_test, y_test = _test_split(
            test_images, test_csv[0], test_csv[1], image_size, crop_to_roi, test_problems
        )
    else:
        x_test = np.zeros((0, image_size, image_size, 3), dtype=np.uint8)
        y_test = np.zeros((0,), dtype=np.int64)
    arrays = {
        "x_train": x_train,
        "y_train": y_train,
        "tracks_train": tracks_train,
        "x_test": x_test,
        "y_test": y_test,
        "skipped": np.array([len(training_problems.messages), len(test_problems.messages)]),
    }
    if cache:
        _save_cache(cache_path, arrays)
    return arrays
