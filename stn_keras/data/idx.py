"""Reader for the IDX format of MNIST and Fashion-MNIST (raw or gzipped).

An IDX file is a 4-byte magic number (two zero bytes, a type code, the
number of dimensions), one big-endian uint32 per dimension, then the values.
MNIST stores unsigned bytes (type code 0x08): magic 2049 for labels (one
dimension) and 2051 for images (three dimensions).
"""

import gzip
import os
import zlib

import numpy as np

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
_UNSIGNED_BYTE = 0x08


class IdxFormatError(ValueError):
    """Raised when an IDX file is truncated, corrupt or of the wrong kind."""


def _read_bytes(path):
    with open(path, "rb") as file:
        data = file.read()
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as error:
            raise IdxFormatError(
                f"IDX file {path} is a corrupt or truncated gzip archive "
                f"({error})."
            ) from error
    return data


def read_idx(path, expected_magic=None):
    """Reads an unsigned-byte IDX file into a numpy array.

    Args:
        path: the ``.gz`` or raw IDX file.
        expected_magic: ``IMAGES_MAGIC``, ``LABELS_MAGIC`` or ``None`` to
            accept any unsigned-byte IDX file.

    Returns:
        A uint8 array whose shape is the file's dimensions.

    Raises:
        IdxFormatError: wrong magic number, or a size that does not match the
            dimensions in the header; the message names the file.
    """
    path = os.fspath(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise IdxFormatError(
            f"IDX file {path} is truncated: {len(data)} bytes, less than its "
            "4-byte magic number."
        )
    magic = int.from_bytes(data[:4], "big")
    num_dimensions = data[3]
    if data[:2] != b"\x00\x00" or data[2] != _UNSIGNED_BYTE or num_dimensions == 0:
        raise IdxFormatError(
            f"IDX file {path} has magic number {magic}, which is not an "
            "unsigned-byte IDX header (expected 2049 for labels or 2051 for "
            "images)."
        )
    if expected_magic is not None and magic != expected_magic:
        raise IdxFormatError(
            f"IDX file {path} has magic number {magic}; expected "
            f"{expected_magic} ({'images' if expected_magic == IMAGES_MAGIC else 'labels'})."
        )
    header_bytes = 4 + 4 * num_dimensions
    if len(data) < header_bytes:
        raise IdxFormatError(
            f"IDX file {path} is truncated inside its header: {len(data)} "
            f"bytes, the header of {num_dimensions} dimensions needs "
            f"{header_bytes}."
        )
    shape = tuple(
        int.from_bytes(data[4 + 4 * axis : 8 + 4 * axis], "big")
        for axis in range(num_dimensions)
    )
    expected_bytes = header_bytes + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected_bytes:
        problem = "truncated" if len(data) < expected_bytes else "too long"
        raise IdxFormatError(
            f"IDX file {path} is {problem}: its header declares shape {shape} "
            f"({expected_bytes} bytes in all) but it holds {len(data)} bytes."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_bytes).reshape(shape)


def read_idx_pair(images_path, labels_path):
    """Reads matching image and label IDX files.

    Returns:
        ``(images, labels)``: uint8 ``(N, H, W, 1)`` and int64 ``(N,)``.

    Raises:
        IdxFormatError: a file is invalid or their counts differ.
    """
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise IdxFormatError(
            f"IDX files {images_path} ({images.shape[0]} images) and "
            f"{labels_path} ({labels.shape[0]} labels) do not match."
        )
    return images[..., None], labels.astype(np.int64)
