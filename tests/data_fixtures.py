"""Small data fixtures written in the test run."""

import gzip
import os
import zipfile

import numpy as np

GTSRB_COLUMNS = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"


def idx_bytes(array, magic=None):
    """The IDX encoding of a uint8 array (magic 2049 or 2051 by rank)."""
    array = np.asarray(array, dtype=np.uint8)
    magic = magic if magic is not None else (0x0800 | array.ndim)
    header = magic.to_bytes(4, "big") + b"".join(
        side.to_bytes(4, "big") for side in array.shape
    )
    return header + array.tobytes()


def write_idx(path, array, compress=True, magic=None):
    data = idx_bytes(array, magic)
    with open(path, "wb") as file:
        file.write(gzip.compress(data) if compress else data)
    return path


def write_mnist_like(folder, train_count=30, test_count=10, seed=0):
    """Four tiny MNIST-format IDX files; returns the arrays written."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (train_count, 28, 28)),
        "train-labels-idx1-ubyte.gz": np.arange(train_count) % 10,
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (test_count, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": (np.arange(test_count) * 3) % 10,
    }
    for name, array in arrays.items():
        write_idx(os.path.join(folder, name), array)
    return arrays


def ppm_bytes(pixels, comment="# written by the tests", maximum=255):
    """A binary PPM with a comment line in its header."""
    height, width = pixels.shape[:2]
    header = f"P6\n{comment}\n{width} {height}\n{maximum}\n".encode()
    return header + np.asarray(pixels, dtype=np.uint8).tobytes()


# (class, track, frame, width, height): odd sizes, 15x15 to 250x250.
TRAINING_IMAGES = [
    (0, 0, 0, 15, 15),
    (0, 0, 1, 31, 17),
    (0, 1, 0, 40, 40),
    (0, 1, 1, 250, 250),
    (2, 0, 0, 29, 30),
    (2, 0, 1, 33, 34),
    (2, 3, 0, 64, 48),
    (2, 3, 1, 20, 25),
]
# (width, height, class) of the test images 00000.ppm, 00001.ppm, ...
TEST_IMAGES = [(16, 16, 2), (25, 40, 0), (30, 30, 2)]


def training_value(class_id, track, frame):
    """The grey level of a fixture training image: encodes its identity."""
    return 10 + 100 * (class_id == 2) + 20 * track + 5 * frame


def held_out_value(index):
    return 200 + 10 * index


def flat_image(width, height, value):
    """An image of one grey level, so a resized copy keeps that level."""
    return np.full((height, width, 3), value, dtype=np.uint8)


def write_file(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as file:
        file.write(data)
    return path


def write_gtsrb_tree(root, with_test=True):
    """An extracted GTSRB tree in the official layout under ``root/gtsrb``.

    Every training CSV row has the ROI ``(1, 1, width - 2, height - 2)``.
    Returns the ``gtsrb`` folder.
    """
    folder = os.path.join(root, "gtsrb")
    images = os.path.join(folder, "GTSRB", "Final_Training", "Images")
    rows = {}
    for class_id, track, frame, width, height in TRAINING_IMAGES:
        name = f"{track:05d}_{frame:05d}.ppm"
        pixels = flat_image(width, height, training_value(class_id, track, frame))
        write_file(os.path.join(images, f"{class_id:05d}", name), ppm_bytes(pixels))
        rows.setdefault(class_id, []).append(
            f"{name};{width};{height};1;1;{width - 2};{height - 2};{class_id}"
        )
    for class_id, lines in rows.items():
        csv_path = os.path.join(images, f"{class_id:05d}", f"GT-{class_id:05d}.csv")
        write_file(csv_path, ("\r\n".join([GTSRB_COLUMNS, *lines]) + "\r\n").encode())
    if with_test:
        test_folder = os.path.join(folder, "GTSRB", "Final_Test", "Images")
        lines = [GTSRB_COLUMNS]
        for index, (width, height, class_id) in enumerate(TEST_IMAGES):
            name = f"{index:05d}.ppm"
            pixels = flat_image(width, height, held_out_value(index))
            write_file(os.path.join(test_folder, name), ppm_bytes(pixels))
            lines.append(f"{name};{width};{height};0;0;{width - 1};{height - 1};{class_id}")
        write_file(
            os.path.join(folder, "GT-final_test.csv"), ("\n".join(lines) + "\n").encode()
        )
    return folder


def zip_members(folder, archive, prefix):
    """Zips the file or folder ``folder/prefix``, named relative to ``folder``."""
    with zipfile.ZipFile(archive, "w") as output:
        if os.path.isfile(os.path.join(folder, prefix)):
            output.write(os.path.join(folder, prefix), prefix)
        for directory, _, files in os.walk(os.path.join(folder, prefix)):
            for file in files:
                path = os.path.join(directory, file)
                output.write(path, os.path.relpath(path, folder))
    return archive
