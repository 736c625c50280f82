"""load_dataset, data-dir resolution and downloads, on generated fixtures."""

import gzip
import hashlib
import json
import os
import re

import numpy as np
import pytest

from stn_keras.data import DATASETS
from stn_keras.data import MissingDataError
from stn_keras.data import SplitArrays
from stn_keras.data import distort
from stn_keras.data import load_dataset
from stn_keras.data import paths
from stn_keras.data import resolve_data_dir
from stn_keras.data.__main__ import main as data_command_line
from stn_keras.data.idx import IdxFormatError
from tests.data_fixtures import write_mnist_like


def test_data_dir_argument_then_environment_then_keras_default(tmp_path, monkeypatch):
    monkeypatch.setenv("STN_DATA_DIR", str(tmp_path / "from_environment"))
    assert resolve_data_dir(tmp_path / "argument") == str(tmp_path / "argument")
    assert resolve_data_dir() == str(tmp_path / "from_environment")
    monkeypatch.delenv("STN_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_dir() == str(tmp_path / "home" / ".keras" / "datasets")


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_idx_data_sets_from_the_data_dir(tmp_path, name):
    written = write_mnist_like(tmp_path / name, train_count=30, test_count=10)
    dataset = load_dataset(name, data_dir=tmp_path, val_size=10, download=False)
    train_images = written["train-images-idx3-ubyte.gz"][..., None]
    np.testing.assert_array_equal(dataset.x_train, train_images[:20])
    np.testing.assert_array_equal(dataset.x_val, train_images[20:])
    np.testing.assert_array_equal(dataset.y_val, np.arange(20, 30) % 10)
    np.testing.assert_array_equal(dataset.y_test, written["t10k-labels-idx1-ubyte.gz"])
    assert dataset.x_train.dtype == np.uint8 and dataset.y_train.dtype == np.int64
    assert dataset.image_shape == (28, 28, 1) and dataset.num_classes == 10
    assert dataset.class_names[0] == ("0" if name == "mnist" else "T-shirt/top")
    files = dataset.source["files"]
    assert [os.path.basename(file["path"]) for file in files][0] == "train-images-idx3-ubyte.gz"
    with open(files[0]["path"], "rb") as file:
        assert files[0]["sha256"] == hashlib.sha256(file.read()).hexdigest()
    assert json.loads(json.dumps(dataset.source))["split_sizes"] == {"train": 20, "val": 10, "test": 10}


def test_missing_files_fail_offline_naming_files_and_folders(tmp_path):
    with pytest.raises(MissingDataError) as error:
        load_dataset("mnist", data_dir=tmp_path, download=False)
    message = str(error.value)
    assert "Looked for train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz" in message
    assert str(tmp_path / "mnist") in message and "STN_DATA_DIR" in message


def test_failed_download_names_the_url_and_leaves_nothing(tmp_path):
    # Port 9 (discard) refuses connections here: an offline machine's answer.
    url = "http://127.0.0.1:9/missing.gz"
    with pytest.raises(MissingDataError, match=re.escape(f"missing.gz: download from {url} failed")):
        paths.find_or_download(
            "toy", ["missing.gz"], urls={"missing.gz": url}, data_dir=tmp_path, download=True
        )
    assert os.listdir(tmp_path / "toy") == []


def test_explicit_data_dir_is_never_downloaded_into_unless_asked(tmp_path):
    url = "http://127.0.0.1:9/missing.gz"
    with pytest.raises(MissingDataError, match="not downloaded into an explicit data directory"):
        paths.find_or_download("toy", ["missing.gz"], urls={"missing.gz": url}, data_dir=tmp_path)
    assert not (tmp_path / "toy").exists()
    with pytest.raises(MissingDataError, match=f"Data directory '{tmp_path / 'nowhere'}' does not exist"):
        paths.find_or_download(
            "toy", ["missing.gz"], urls={"missing.gz": url}, data_dir=tmp_path / "nowhere",
            download=True,
        )
    assert not (tmp_path / "nowhere").exists()
    with pytest.raises(MissingDataError, match=r"downloads are off \(download=False\)"):
        paths.find_or_download(
            "toy", ["missing.gz"], urls={"missing.gz": url}, data_dir=tmp_path, download=False
        )


def test_download_is_verified_and_moved_into_place(tmp_path):
    source = tmp_path / "served.bin"
    source.write_bytes(b"payload")
    md5 = hashlib.md5(b"payload").hexdigest()
    url = source.as_uri()
    (tmp_path / "data").mkdir()
    located = paths.find_or_download(
        "toy", ["file.bin"], urls={"file.bin": url}, md5s={"file.bin": md5},
        data_dir=tmp_path / "data", download=True,
    )
    with open(located["file.bin"], "rb") as file:
        assert file.read() == b"payload"
    with pytest.raises(MissingDataError, match="failed"):
        paths.find_or_download(
            "other", ["file.bin"], urls={"file.bin": url}, md5s={"file.bin": "0" * 32},
            data_dir=tmp_path / "data", download=True,
        )
    assert os.listdir(tmp_path / "data" / "other") == []


def test_digits_splits_are_fixed_and_disjoint():
    dataset = load_dataset("digits")
    assert (len(dataset.x_train), len(dataset.x_val), len(dataset.x_test)) == (1257, 180, 360)
    assert dataset.image_shape == (28, 28, 1) and dataset.num_classes == 10
    assert set(np.unique(dataset.y_train)) == set(range(10))
    # A 20x20-ish digit centred on 28x28, as in MNIST: the border is empty.
    assert not dataset.x_train[:, :3].any() and not dataset.x_train[:, :, -3:].any()
    assert dataset.x_train.max() == 255
    other_seed = load_dataset("digits", seed=7)
    np.testing.assert_array_equal(dataset.x_test, other_seed.x_test)


def test_distorted_splits_are_fixed_per_seed():
    first = load_dataset("digits", distortion="rts", val_size=20)
    again = load_dataset("digits", distortion="rts", val_size=20)
    other = load_dataset("digits", distortion="rts", val_size=20, seed=1)
    assert first.image_shape == (42, 42, 1)
    for split in ("x_train", "x_val", "x_test"):
        np.testing.assert_array_equal(getattr(first, split), getattr(again, split))
    # The seed draws other training and validation distortions; the test
    # split's follows test_seed, so runs of every seed meet the same test set.
    assert not np.array_equal(first.x_train, other.x_train)
    assert not np.array_equal(first.x_val, other.x_val)
    np.testing.assert_array_equal(first.x_test, other.x_test)
    independent = load_dataset("digits", distortion="rts", val_size=20, seed=1, test_seed=1)
    assert not np.array_equal(first.x_test, independent.x_test)
    np.testing.assert_array_equal(first.y_test, independent.y_test)
    np.testing.assert_array_equal(other.x_train, independent.x_train)
    assert independent.source["test_seed"] == 1 and other.source["test_seed"] == 0
    assert first.x_train_undistorted.shape[1:] == (28, 28, 1)
    assert first.distortion_parameters["canvas_size"] == 42
    assert first.source["distortion_parameters"]["rotation_range"] == [-45.0, 45.0]


def test_a_split_is_distorted_when_first_read_and_only_once(monkeypatch):
    from stn_keras.data import datasets

    dataset = load_dataset("digits", distortion="rts", val_size=20)
    distorted = []
    real_distort = datasets.distort

    def counting_distort(images, *arguments, **keywords):
        distorted.append(len(images))
        return real_distort(images, *arguments, **keywords)

    monkeypatch.setattr(datasets, "distort", counting_distort)
    test_images, test_labels = dataset.split("test")
    assert distorted == [360]
    assert dataset.x_test is test_images and dataset.y_test is test_labels
    assert distorted == [360]
    # Read in another order, each split is the same as if all were read at
    # once: every split's distortion has a seed of its own.
    reference = real_distort(
        load_dataset("digits", val_size=20).x_test, "rts", seed=[0, 2]
    ).images
    np.testing.assert_array_equal(test_images, reference)
    assert dataset.x_train.shape == (1417, 42, 42, 1) == (1417, *dataset.image_shape)
    assert distorted == [360, 1417]


def test_loading_a_distorted_data_set_distorts_no_split_until_one_is_read():
    dataset = load_dataset("digits", distortion="cluttered", val_size=20)
    assert dataset.image_shape == (60, 60, 1)
    assert dataset.x_train_undistorted.shape == (1417, 28, 28, 1)
    assert repr(dataset.splits) == "SplitArrays(ready=[])"
    dataset.split("val")
    assert repr(dataset.splits) == "SplitArrays(ready=['val'])"


def test_undistorted_split_is_the_split_before_its_distortion():
    distorted = load_dataset("digits", distortion="rts", val_size=20)
    plain = load_dataset("digits", val_size=20)
    images, labels = distorted.undistorted_split("test")
    np.testing.assert_array_equal(images, plain.x_test)
    np.testing.assert_array_equal(labels, plain.y_test)
    # Reading it distorts nothing; reading the split does, and keeps both.
    assert repr(distorted.splits) == "SplitArrays(ready=[])"
    assert distorted.x_test.shape[1:] == (42, 42, 1)
    np.testing.assert_array_equal(distorted.undistorted_split("test")[0], plain.x_test)
    np.testing.assert_array_equal(plain.undistorted_split("val")[0], plain.x_val)
    with pytest.raises(ValueError, match=re.escape("Received: split='dev'")):
        distorted.undistorted_split("dev")


def test_split_distortion_is_what_drew_the_split_s_images():
    distorted = load_dataset("digits", distortion="rts", val_size=20, seed=3, test_seed=5)
    images, labels = distorted.undistorted_split("test")
    drawn = distort(images, "rts", seed=[5, 2], labels=labels)
    parameters = distorted.split_distortion("test")
    assert sorted(parameters) == sorted(drawn.parameters) == [
        "angle", "position_x", "position_y", "scale"
    ]
    for name, values in drawn.parameters.items():
        np.testing.assert_array_equal(parameters[name], values)
    np.testing.assert_array_equal(distorted.x_test, drawn.images)
    assert len(distorted.split_distortion("val")["angle"]) == 20
    assert load_dataset("digits", val_size=20).split_distortion("test") == {}
    with pytest.raises(ValueError, match=re.escape("Received: split='dev'")):
        distorted.split_distortion("dev")


def test_split_arrays_prepare_each_split_once_under_threads():
    import threading

    calls = []

    def prepare(split, images, labels):
        calls.append(split)
        return images + 1, labels, {"shift": np.ones(len(images))}

    arrays = {split: (np.zeros(3), np.arange(3)) for split in ("train", "val", "test")}
    splits = SplitArrays(arrays, prepare)
    threads = [threading.Thread(target=lambda: splits["val"]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == ["val"]
    np.testing.assert_array_equal(splits["val"][0], np.ones(3))
    np.testing.assert_array_equal(splits.parameters("val")["shift"], np.ones(3))
    assert SplitArrays(arrays).parameters("test") == {}
    with pytest.raises(ValueError, match=re.escape("Received: split='dev'")):
        splits["dev"]

    def fails_once(split, images, labels):
        if not calls.count("failed"):
            calls.append("failed")
            raise MemoryError("out of memory")
        return prepare(split, images, labels)

    # A preparation that fails leaves the split to be prepared on the next read.
    retried = SplitArrays(arrays, fails_once)
    with pytest.raises(MemoryError):
        retried["test"]
    np.testing.assert_array_equal(retried["test"][0], np.ones(3))
    assert calls == ["val", "failed", "test"]
    with pytest.raises(ValueError, match=re.escape("Missing: ['test']")):
        SplitArrays({split: arrays[split] for split in ("train", "val")})
    two_tuple = SplitArrays(arrays, lambda split, images, labels: (images, labels))
    with pytest.raises(ValueError, match=re.escape(
        "`prepare` must return a tuple (images, labels, parameters). Received: tuple of length 2"
    )):
        two_tuple["test"]


def test_distortion_options_and_addition_classes():
    dataset = load_dataset("digits", distortion="addition", canvas_size=30, val_size=10)
    assert dataset.image_shape == (30, 30, 2)
    assert dataset.num_classes == 19 and dataset.class_names[-1] == "18"
    assert dataset.y_train.max() <= 18


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"name": "svhn"}, f"Unknown data set. Expected one of {DATASETS}. Received: name='svhn'"),
        ({"name": "digits", "distortion": "blur"}, "Unknown distortion. Expected one of ("),
        ({"name": "digits", "source": "tfds"}, "Expected one of ('auto',). Received: source='tfds'"),
        ({"name": "mnist", "image_size": 32}, "must be None or 28. Received: image_size=32"),
        ({"name": "digits", "crop_to_roi": True}, "Unknown option(s) ['crop_to_roi'] for data set 'digits'"),
        ({"name": "digits", "val_size": 1.5}, "Received: val_size=1.5"),
        ({"name": "digits", "val_size": 5000}, "an int in [0, 1437)"),
    ],
)
def test_bad_arguments_are_rejected(arguments, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        load_dataset(**arguments)


def test_unknown_split_and_digits_size():
    dataset = load_dataset("digits", image_size=16)
    assert dataset.image_shape == (16, 16, 1)
    with pytest.raises(ValueError, match=re.escape("Received: split='dev'")):
        dataset.split("dev")


@pytest.mark.tensorflow_only
def test_tfds_source_with_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):
        dataset = load_dataset("mnist", source="tfds", val_size=2)
    assert dataset.x_train.shape == (10, 28, 28, 1) and dataset.x_val.shape == (2, 28, 28, 1)
    assert dataset.x_test.dtype == np.uint8 and dataset.y_test.dtype == np.int64
    assert dataset.source["files"] == [{"tfds": "mnist", "data_dir": None}]


@pytest.mark.real_data
def test_real_mnist():
    dataset = load_dataset("mnist", val_size=0)
    assert dataset.x_train.shape == (60000, 28, 28, 1)
    assert dataset.x_test.shape == (10000, 28, 28, 1)
    assert dataset.y_train[:5].tolist() == [5, 0, 4, 1, 9]
    assert dataset.y_test[:5].tolist() == [7, 2, 1, 0, 4]
    assert hashlib.md5(dataset.x_train.tobytes()).hexdigest() != ""
    default = load_dataset("mnist")
    assert len(default.x_train) == 50000 and len(default.x_val) == 10000


def test_a_validation_fraction_that_leaves_no_training_image_is_refused():
    with pytest.raises(ValueError, match="that leaves at least one of the 1437 training images"):
        load_dataset("digits", val_size=0.9999)


def _truncated(data):
    return data[: len(data) // 2], "is a corrupt or truncated gzip archive (Compressed file ended"


def _crc_flipped(data):
    # The gzip trailer: CRC-32 of the contents, then their size.
    return data[:-8] + bytes(255 - byte for byte in data[-8:-4]) + data[-4:], (
        "is a corrupt or truncated gzip archive (CRC check failed"
    )


def _bad_magic(data):
    contents = bytearray(gzip.decompress(data))
    contents[2] = 0x0D  # float32 instead of unsigned bytes
    return gzip.compress(bytes(contents)), "has magic number 3331, which is not an unsigned-byte IDX header"


@pytest.mark.parametrize("damage", [_truncated, _crc_flipped, _bad_magic], ids=["truncated", "crc", "magic"])
def test_a_damaged_mnist_file_is_named_with_what_to_do(tmp_path, damage, capsys):
    write_mnist_like(tmp_path / "mnist")
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    data, problem = damage(path.read_bytes())
    path.write_bytes(data)
    advice = (
        "Replace it with an undamaged copy, or delete it and run again with --download "
        "to fetch it from https://ossci-datasets.s3.amazonaws.com/mnist/."
    )
    with pytest.raises(IdxFormatError) as error:
        load_dataset("mnist", data_dir=tmp_path)
    message = str(error.value)
    assert message.startswith(f"IDX file {path} {problem}") and message.endswith(advice)
    with pytest.raises(SystemExit) as exit_info:
        data_command_line(["preview", "--dataset", "mnist", "--data-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == f"python -m stn_keras.data: error: {message}\n"


def test_a_distorted_data_set_without_a_validation_split():
    dataset = load_dataset("digits", distortion="rts", val_size=0)
    assert dataset.x_val.shape == (0, 42, 42, 1) and dataset.y_val.shape == (0,)
    assert len(dataset.x_train) == 1437
