"""MNIST and Fashion-MNIST: IDX files on disk or downloaded, or TFDS."""

import numpy as np

from stn_keras.data import idx
from stn_keras.data import paths
from stn_keras.validation import check_choice

IDX_FILE_NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
_MIRRORS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}
# md5 of the published .gz files (a local copy is accepted whatever its
# gzip header; only downloads are checked against these).
_MD5S = {
    "mnist": (
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "d53e105ee54ea40749a09fcc96d2da6c",
        "9fb629c4189551a2d022fa330f9573f3",
        "ec29112dd5afa0611ce80d1b7f02629c",
    ),
    "fashion_mnist": (
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "25c81989df183df01b3e8a0aad5dffbe",
        "bef4ecab320f06d8554ea6380940ec79",
        "bb300cfdad3c16e7a12a480ee83cd310",
    ),
}
# Where Debian's dataset-fashion-mnist package installs the files.
_SYSTEM_DIRS = {"mnist": (), "fashion_mnist": ("/usr/share/datasets/fashion-mnist",)}
CLASS_NAMES = {
    "mnist": [str(digit) for digit in range(10)],
    "fashion_mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
}
SOURCES = ("auto", "idx", "tfds")


def load_idx_splits(name, data_dir=None, download=None):
    """Reads the train and test splits of ``name`` from its four IDX files.

    Returns:
        ``((x_train, y_train), (x_test, y_test), files)``: uint8 NHWC images,
        int64 labels and a description (path, size, sha256) of each file.
    """
    located = paths.find_or_download(
        name,
        IDX_FILE_NAMES,
        urls={file: _MIRRORS[name] + file for file in IDX_FILE_NAMES},
        md5s=dict(zip(IDX_FILE_NAMES, _MD5S[name])),
        data_dir=data_dir,
        search_dirs=_SYSTEM_DIRS[name],
        download=download,
    )
    ordered = [located[file] for file in IDX_FILE_NAMES]
    try:
        train = idx.read_idx_pair(ordered[0], ordered[1])
        test = idx.read_idx_pair(ordered[2], ordered[3])
    except idx.IdxFormatError as error:
        raise idx.IdxFormatError(
            f"{error} Replace it with an undamaged copy, or delete it and run "
            f"again with --download to fetch it from {_MIRRORS[name]}."
        ) from error
    return train, test, [paths.describe_file(path) for path in ordered]


def load_tfds_splits(name, data_dir=None):
    """Reads the train and test splits of ``name`` through tensorflow_datasets.

    Returns:
        As ``load_idx_splits``; the file description names the TFDS builder.
    """
    import tensorflow_datasets as tfds

    arrays = []
    for split in ("train", "test"):
        dataset = tfds.load(name, split=split, as_supervised=True, data_dir=data_dir)
        # Batched reading is fast; batch_size=-1 in tfds.load is avoided as
        # it aborts the process under tfds.testing.mock_data.
        batches = list(tfds.as_numpy(dataset.batch(8192)))
        images = np.concatenate([batch[0] for batch in batches]).astype(np.uint8)
        labels = np.concatenate([batch[1] for batch in batches]).astype(np.int64)
        arrays.append((images, labels))
    return arrays[0], arrays[1], [{"tfds": name, "data_dir": data_dir}]


def load_splits(name, data_dir=None, source="auto", download=None):
    """Train and test splits of MNIST or Fashion-MNIST from ``source``.

    Args:
        name: ``"mnist"`` or ``"fashion_mnist"``.
        data_dir: the data directory (see ``paths.resolve_data_dir``).
        source: ``"idx"`` (the IDX files, downloaded when missing),
            ``"tfds"`` (tensorflow_datasets) or ``"auto"`` (IDX).
        download: whether missing IDX files may be downloaded (``None``: only
            into the default data directory).
    """
    check_choice("source", source, SOURCES, f"source for {name}")
    if source == "tfds":
        return load_tfds_splits(name, data_dir)
    return load_idx_splits(name, data_dir, download)
