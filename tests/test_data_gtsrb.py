"""GTSRB reader on tiny fixtures in the official layout (tree and zips)."""

import logging
import os
import re
import zipfile

import numpy as np
import pytest

from stn_keras.data import MissingDataError
from stn_keras.data import load_dataset
from stn_keras.data import gtsrb
from stn_keras.data.__main__ import main as data_command_line
from stn_keras.data.ppm import PpmFormatError
from stn_keras.data.ppm import decode_ppm
from tests.data_fixtures import GTSRB_COLUMNS
from tests.data_fixtures import TEST_IMAGES
from tests.data_fixtures import TRAINING_IMAGES
from tests.data_fixtures import flat_image
from tests.data_fixtures import ppm_bytes
from tests.data_fixtures import held_out_value
from tests.data_fixtures import training_value
from tests.data_fixtures import write_file
from tests.data_fixtures import write_gtsrb_tree
from tests.data_fixtures import zip_members

TRAINING_FOLDER = "GTSRB/Final_Training/Images"


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("STN_CACHE_DIR", str(tmp_path / "cache"))


def _expected_training_values():
    return [training_value(c, t, f) for c, t, f, _, _ in TRAINING_IMAGES]


def _check_fixture_arrays(loaded, image_size):
    assert loaded["x_train"].shape == (len(TRAINING_IMAGES), image_size, image_size, 3)
    np.testing.assert_array_equal(loaded["x_train"].mean(axis=(1, 2, 3)), _expected_training_values())
    np.testing.assert_array_equal(loaded["y_train"], [c for c, *_ in TRAINING_IMAGES])
    np.testing.assert_array_equal(
        loaded["tracks_train"], [c * 100000 + t for c, t, *_ in TRAINING_IMAGES]
    )
    np.testing.assert_array_equal(
        loaded["x_test"].mean(axis=(1, 2, 3)), [held_out_value(i) for i in range(len(TEST_IMAGES))]
    )
    np.testing.assert_array_equal(loaded["y_test"], [c for *_, c in TEST_IMAGES])


@pytest.mark.parametrize("image_size", [32, 48])
def test_reads_extracted_tree_with_test_split(tmp_path, image_size):
    write_gtsrb_tree(tmp_path)
    loaded = gtsrb.load_gtsrb(tmp_path, image_size=image_size, download=False)
    _check_fixture_arrays(loaded, image_size)
    assert loaded["skipped"] == {"train": 0, "test": 0}


def test_reads_the_three_official_zips(tmp_path):
    tree = write_gtsrb_tree(tmp_path / "tree")
    folder = tmp_path / "data" / "gtsrb"
    folder.mkdir(parents=True)
    zip_members(tree, folder / gtsrb.TRAINING_ARCHIVE, "GTSRB/Final_Training")
    zip_members(tree, folder / gtsrb.TEST_ARCHIVE, "GTSRB/Final_Test")
    zip_members(tree, folder / gtsrb.TEST_LABELS_ARCHIVE, "GT-final_test.csv")
    loaded = gtsrb.load_gtsrb(tmp_path / "data", download=False)
    _check_fixture_arrays(loaded, 32)
    assert [os.path.basename(file["path"]) for file in loaded["files"]] == [
        gtsrb.TRAINING_ARCHIVE,
        gtsrb.TEST_ARCHIVE,
        gtsrb.TEST_LABELS_ARCHIVE,
    ]
    assert all(len(file["sha256"]) == 64 for file in loaded["files"])


def test_roi_is_scaled_from_the_csv_size_to_the_actual_image(tmp_path):
    # The CSV describes a 40x40 original; the file is 20x20, as in the
    # pre-resized shared copy. ROI (10, 10)-(29, 29) is (5, 5)-(15, 15) here.
    pixels = np.zeros((20, 20, 3), dtype=np.uint8)
    pixels[5:15, 5:15] = 200
    folder = tmp_path / "gtsrb" / TRAINING_FOLDER / "00007"
    write_file(str(folder / "00000_00000.ppm"), ppm_bytes(pixels))
    write_file(
        str(folder / "GT-00007.csv"),
        f"{GTSRB_COLUMNS}\n00000_00000.ppm;40;40;10;10;29;29;7\n".encode(),
    )
    cropped = gtsrb.load_gtsrb(tmp_path, image_size=10, crop_to_roi=True, download=False)
    np.testing.assert_array_equal(cropped["x_train"], np.full((1, 10, 10, 3), 200))
    whole = gtsrb.load_gtsrb(tmp_path, image_size=20, download=False)
    np.testing.assert_array_equal(whole["x_train"][0], pixels)
    assert cropped["y_train"].tolist() == [7]


def _remove(folder, relative):
    os.remove(os.path.join(folder, relative))


def test_csv_row_without_image_fails_or_is_skipped_and_counted(tmp_path, caplog):
    folder = write_gtsrb_tree(tmp_path)
    _remove(folder, f"{TRAINING_FOLDER}/00002/00003_00001.ppm")
    with pytest.raises(
        gtsrb.GtsrbDataError,
        match=re.escape(f"1 problem(s): CSV row without image: {TRAINING_FOLDER}/00002/00003_00001.ppm"),
    ):
        gtsrb.load_gtsrb(tmp_path, download=False)
    with caplog.at_level(logging.WARNING):
        loaded = gtsrb.load_gtsrb(tmp_path, on_error="skip", download=False)
    assert loaded["skipped"] == {"train": 1, "test": 0}
    assert len(loaded["x_train"]) == len(TRAINING_IMAGES) - 1
    assert "skipped 1 file(s)" in caplog.text


def test_image_without_row_and_unreadable_image_are_named(tmp_path):
    folder = write_gtsrb_tree(tmp_path)
    write_file(os.path.join(folder, TRAINING_FOLDER, "00000", "00009_00000.ppm"), ppm_bytes(flat_image(20, 20, 1)))
    truncated = os.path.join(folder, TRAINING_FOLDER, "00002", "00000_00000.ppm")
    with open(truncated, "r+b") as file:
        file.truncate(100)
    with pytest.raises(gtsrb.GtsrbDataError) as error:
        gtsrb.load_gtsrb(tmp_path, download=False)
    message = str(error.value)
    assert "2 problem(s)" in message
    assert f"image without CSV row: {TRAINING_FOLDER}/00000/00009_00000.ppm" in message
    assert f"unreadable image {TRAINING_FOLDER}/00002/00000_00000.ppm" in message
    loaded = gtsrb.load_gtsrb(tmp_path, on_error="skip", download=False)
    assert loaded["skipped"] == {"train": 2, "test": 0}


def test_missing_test_split_is_empty_with_a_log_line_or_an_error(tmp_path, caplog):
    write_gtsrb_tree(tmp_path, with_test=False)
    with caplog.at_level(logging.INFO):
        loaded = gtsrb.load_gtsrb(tmp_path, download=False)
    assert loaded["x_test"].shape == (0, 32, 32, 3) and loaded["y_test"].shape == (0,)
    assert "GTSRB test split is empty" in caplog.text
    with pytest.raises(MissingDataError, match="GTSRB_Final_Test_Images.zip, GTSRB_Final_Test_GT.zip"):
        gtsrb.load_gtsrb(tmp_path, require_test=True, download=False)
    dataset = load_dataset("gtsrb", data_dir=tmp_path, download=False)
    with pytest.raises(ValueError, match="The test split of 'gtsrb' is empty"):
        dataset.split("test")


def test_missing_training_data_names_the_archive(tmp_path):
    with pytest.raises(MissingDataError, match="Looked for GTSRB_Final_Training_Images.zip in: "):
        gtsrb.load_gtsrb(tmp_path, download=False)


def test_decoded_arrays_are_cached_per_options(tmp_path, caplog):
    write_gtsrb_tree(tmp_path)
    first = gtsrb.load_gtsrb(tmp_path, download=False)
    with caplog.at_level(logging.INFO):
        second = gtsrb.load_gtsrb(tmp_path, download=False)
    assert "from the cache" in caplog.text
    np.testing.assert_array_equal(first["x_train"], second["x_train"])
    caplog.clear()
    with caplog.at_level(logging.INFO):
        other = gtsrb.load_gtsrb(tmp_path, image_size=16, download=False)
    assert "from the cache" not in caplog.text
    assert other["x_train"].shape[1:] == (16, 16, 3)
    assert len(os.listdir(tmp_path / "cache")) == 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="Received: on_error='ignore'"):
        gtsrb.load_gtsrb(on_error="ignore")
    with pytest.raises(ValueError, match="Received: image_size=0"):
        gtsrb.load_gtsrb(image_size=0)


def test_track_split_holds_out_whole_tracks(tmp_path):
    write_gtsrb_tree(tmp_path)
    dataset = load_dataset("gtsrb", data_dir=tmp_path, val_size=0.5, download=False)
    # Two tracks per class: one of each goes to validation, frames together.
    assert len(dataset.x_train) == len(dataset.x_val) == 4
    assert sorted(dataset.y_val.tolist()) == [0, 0, 2, 2]
    train_values = set(dataset.x_train.mean(axis=(1, 2, 3)).tolist())
    val_values = set(dataset.x_val.mean(axis=(1, 2, 3)).tolist())
    tracks = {}
    for c, t, f, _, _ in TRAINING_IMAGES:
        tracks.setdefault((c, t), set()).add(float(training_value(c, t, f)))
    for values in tracks.values():
        assert values <= train_values or values <= val_values
    assert len(dataset.source["val_tracks"]) == 2
    assert dataset.class_names[14] == "Stop" and dataset.num_classes == 43


def test_ppm_comments_anywhere_and_other_maximum():
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    data = b"P6 # one\n# two\n3 # three\n2\n# four\n17\n" + pixels.tobytes()
    np.testing.assert_array_equal(decode_ppm(data), np.round(pixels * (255 / 17)))


@pytest.mark.parametrize(
    "data, message",
    [
        (b"P3\n1 1\n255\n\x00\x00\x00", "is not a binary PPM"),
        (b"P6\n2 2\n255\n" + bytes(5), "needs 12 bytes of pixels, the file holds 5"),
        (b"P6\n# cut", "Invalid PPM/PGM header: expected 'P6' or 'P5', width, height and maxval"),
        (b"P6\nx 2\n255\n" + bytes(12), "Invalid PPM/PGM header"),
        (b"P6\n2 2\n0\n" + bytes(12), "maxval must be in [1, 65535]"),
        (b"P6\n0 2\n255\n", "invalid size 0x2"),
    ],
)
def test_ppm_damage_is_named(data, message):
    with pytest.raises(PpmFormatError, match=f"PPM image|Image bad.ppm") as error:
        decode_ppm(data, "bad.ppm")
    assert message in str(error.value) and "bad.ppm" in str(error.value)


@pytest.mark.real_data
def test_real_gtsrb_training_set_and_track_split(monkeypatch):
    # The real decode is cached where real runs cache it, so reruns are fast.
    monkeypatch.delenv("STN_CACHE_DIR")
    loaded = gtsrb.load_gtsrb()
    assert loaded["x_train"].shape == (39209, 32, 32, 3)
    assert set(np.unique(loaded["y_train"])) == set(range(43))
    dataset = load_dataset("gtsrb")
    is_val = np.isin(loaded["tracks_train"], dataset.source["val_tracks"])
    np.testing.assert_array_equal(dataset.y_val, loaded["y_train"][is_val])
    np.testing.assert_array_equal(dataset.x_train, loaded["x_train"][~is_val])
    assert not set(loaded["tracks_train"][~is_val]) & set(dataset.source["val_tracks"])
    # About 10% of the tracks of every class, so every class is validated.
    assert set(np.unique(dataset.y_val)) == set(range(43))
    assert 0.08 < len(dataset.x_val) / 39209 < 0.12


def test_test_split_problems_are_counted_separately(tmp_path):
    folder = write_gtsrb_tree(tmp_path)
    _remove(folder, f"{TRAINING_FOLDER}/00000/00000_00000.ppm")
    _remove(folder, "GTSRB/Final_Test/Images/00001.ppm")
    loaded = gtsrb.load_gtsrb(tmp_path, on_error="skip", download=False)
    assert loaded["skipped"] == {"train": 1, "test": 1}
    np.testing.assert_array_equal(loaded["y_test"], [TEST_IMAGES[0][2], TEST_IMAGES[2][2]])
    with pytest.raises(gtsrb.GtsrbDataError, match="GTSRB training split has 1 problem"):
        gtsrb.load_gtsrb(tmp_path, download=False)


def _training_zip(tmp_path):
    tree = write_gtsrb_tree(tmp_path / "tree", with_test=False)
    folder = tmp_path / "data" / "gtsrb"
    folder.mkdir(parents=True)
    return zip_members(tree, folder / gtsrb.TRAINING_ARCHIVE, "GTSRB/Final_Training")


def _truncate(archive):
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    return "it is not a complete zip archive, truncated or overwritten (File is not a zip file)"


def _flip_an_image(archive):
    with zipfile.ZipFile(archive) as opened:
        member = next(info for info in opened.infolist() if info.filename.endswith(".ppm"))
    data = bytearray(archive.read_bytes())
    # A stored member's bytes follow its 30-byte local header, name and extra field.
    start = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra)
    data[start + 20 : start + 28] = bytes(255 - byte for byte in data[start + 20 : start + 28])
    archive.write_bytes(bytes(data))
    return f"its member '{member.filename}' cannot be read (Bad CRC-32 for file '{member.filename}')"


@pytest.mark.parametrize("damage", [_truncate, _flip_an_image], ids=["truncated", "flipped bytes"])
def test_a_damaged_archive_is_named_with_what_to_do_and_nothing_is_cached(tmp_path, damage, capsys):
    archive = _training_zip(tmp_path)
    problem = damage(archive)
    with pytest.raises(gtsrb.GtsrbDataError) as error:
        gtsrb.load_gtsrb(tmp_path / "data", download=False, on_error="skip")
    with pytest.raises(SystemExit) as exit_info:
        data_command_line(["preview", "--dataset", "gtsrb", "--data-dir", str(tmp_path / "data")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"python -m stn_keras.data: error: {error.value}\n"
    assert str(error.value) == (
        f"Archive '{archive}' is damaged: {problem}. Delete it and download it again from "
        "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/"
        "GTSRB_Final_Training_Images.zip (the published archive has md5 "
        "f33fd80ac59bff73c82d25ab499e03a3), or copy an undamaged one over it."
    )
    cache = tmp_path / "cache"
    assert not cache.exists() or not list(cache.iterdir())
