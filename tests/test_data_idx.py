"""The IDX reader: valid files, and every kind of damage named by file."""

import gzip
import re

import numpy as np
import pytest

from stn_keras.data import idx
from tests.data_fixtures import idx_bytes
from tests.data_fixtures import write_idx


@pytest.mark.parametrize("compress", [True, False])
def test_reads_images_and_labels_raw_and_gzipped(tmp_path, compress):
    images = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    labels = np.array([7, 3])
    images_path = write_idx(tmp_path / "images", images, compress)
    labels_path = write_idx(tmp_path / "labels", labels, compress)
    read_images, read_labels = idx.read_idx_pair(images_path, labels_path)
    np.testing.assert_array_equal(read_images, images[..., None])
    np.testing.assert_array_equal(read_labels, labels)
    assert read_images.dtype == np.uint8 and read_labels.dtype == np.int64


def test_header_bytes_are_the_mnist_magic_numbers():
    assert idx_bytes(np.zeros((1, 2, 2)))[:4] == (2051).to_bytes(4, "big")
    assert idx_bytes(np.zeros(3))[:4] == (2049).to_bytes(4, "big")


def test_truncated_file_names_the_file_and_sizes(tmp_path):
    path = tmp_path / "train-images"
    path.write_bytes(idx_bytes(np.zeros((3, 4, 4)))[:-5])
    message = f"IDX file {path} is truncated: its header declares shape (3, 4, 4) (64 bytes in all) but it holds 59 bytes."
    with pytest.raises(idx.IdxFormatError, match=re.escape(message)):
        idx.read_idx(path, idx.IMAGES_MAGIC)


def test_too_long_file_is_rejected(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(np.zeros(3)) + b"\x00")
    with pytest.raises(idx.IdxFormatError, match="is too long"):
        idx.read_idx(path)


def test_truncated_header(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(idx_bytes(np.zeros((3, 4, 4)))[:9])
    with pytest.raises(idx.IdxFormatError, match="truncated inside its header"):
        idx.read_idx(path)


def test_wrong_magic_number(tmp_path):
    path = write_idx(tmp_path / "labels.gz", np.zeros(3))
    with pytest.raises(idx.IdxFormatError, match=re.escape("has magic number 2049; expected 2051 (images)")):
        idx.read_idx(path, idx.IMAGES_MAGIC)


def test_not_an_idx_file(tmp_path):
    path = tmp_path / "notes.gz"
    path.write_bytes(gzip.compress(b"hello world"))
    with pytest.raises(idx.IdxFormatError, match="not an unsigned-byte IDX header"):
        idx.read_idx(path)


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((2, 3, 3))))[:-8])
    with pytest.raises(idx.IdxFormatError, match=f"IDX file {re.escape(str(path))} is a corrupt or truncated gzip"):
        idx.read_idx(path)


def test_image_and_label_counts_must_match(tmp_path):
    images = write_idx(tmp_path / "images.gz", np.zeros((3, 2, 2)))
    labels = write_idx(tmp_path / "labels.gz", np.zeros(2))
    with pytest.raises(idx.IdxFormatError, match=r"\(3 images\) and .* \(2 labels\) do not match"):
        idx.read_idx_pair(images, labels)
