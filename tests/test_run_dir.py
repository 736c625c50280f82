"""The run directory: start/resume checks, writability, history, atomic files."""

import os
import stat
from pathlib import Path

import pytest

from stn_keras import files
from stn_keras.run_dir import RunDirectory
from stn_keras.run_dir import best_epoch
from stn_keras.files import write_text_atomically

HISTORY = "epoch,accuracy,loss,val_accuracy,val_loss\n0,0.5,1.0,0.6,0.9\n1,0.7,0.8,0.8,0.7\n2,0.9,0.3,0.75,0.6\n"


def test_history_rows_best_epoch_and_truncation(tmp_path):
    run = RunDirectory(tmp_path)
    assert run.read_history() == [] and run.truncate_history(0) == []
    run.history_path.write_text(HISTORY)
    rows = run.read_history()
    assert [row["epoch"] for row in rows] == [0, 1, 2]
    assert best_epoch(rows, "val_accuracy") == (0.8, 2)
    assert best_epoch([], "val_accuracy") == (None, 0)
    assert [row["epoch"] for row in run.kept_history(2)] == [0, 1]
    assert run.history_path.read_text() == HISTORY  # checked, not written
    kept = run.truncate_history(2)
    assert kept == run.kept_history(2)
    assert run.history_path.read_text() == HISTORY.rsplit("2,0.9", 1)[0]
    assert run.truncate_history(2) == kept  # nothing to drop, file unchanged


def test_start_and_resume_checks(tmp_path):
    run = RunDirectory(tmp_path / "run")
    run.check_can_start(resume=False)
    with pytest.raises(ValueError, match="it never completed an epoch"):
        run.check_can_start(resume=True)
    run.path.mkdir()
    run.model_path.write_bytes(b"model")
    assert run.is_finished()
    with pytest.raises(ValueError, match="already holds a run. Pass --resume"):
        run.check_can_start(resume=False)
    with pytest.raises(ValueError, match=r"has no backup \(the run finished\)"):
        run.check_can_start(resume=True)
    run.backup_path.mkdir()
    (run.backup_path / "state.json").write_text('{"epoch": 1}')
    assert run.has_backup() and not run.is_finished()
    run.check_can_start(resume=True)


def test_read_config_of_a_directory_without_a_run(tmp_path):
    with pytest.raises(ValueError, match="config.json' does not exist: no run was started"):
        RunDirectory(tmp_path).read_config()


def test_unwritable_output_directory_is_reported_with_its_path(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    run = RunDirectory(blocker / "run")
    with pytest.raises(ValueError) as error:
        run.check_writable()
    assert f"Cannot write to the run directory '{blocker / 'run'}'" in str(error.value)
    writable = RunDirectory(tmp_path / "new" / "run")
    writable.check_writable()
    assert writable.path.is_dir() and list(writable.path.iterdir()) == []


def test_write_atomically_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "config.json"
    write_text_atomically(target, "old")

    def fail(*arguments):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomically(target, "new")
    assert target.read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["config.json"]


def test_atomic_files_and_directories_get_the_umask_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        files.write_text_atomically(tmp_path / "config.json", "{}")
        files.write_file_atomically(tmp_path / "model.keras", lambda path: Path(path).write_text("m"))
        files.write_directory_atomically(
            tmp_path / "saved_model", lambda staging: (staging / "saved_model.pb").write_text("g")
        )
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "config.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "model.keras").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "saved_model").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "saved_model" / "saved_model.pb").stat().st_mode) == 0o644


def test_a_failed_swap_puts_the_previous_directory_back(tmp_path, monkeypatch):
    target = tmp_path / "evaluation"
    files.write_directory_atomically(target, lambda staging: (staging / "old").write_text("1"))
    real_replace = files.os.replace

    def second_rename_fails(source, destination):
        if Path(source).name.startswith(".evaluation.partial-"):
            raise OSError("disk full")
        return real_replace(source, destination)

    monkeypatch.setattr(files.os, "replace", second_rename_fails)
    with pytest.raises(OSError, match="disk full"):
        files.write_directory_atomically(target, lambda staging: (staging / "new").write_text("2"))
    assert [path.name for path in tmp_path.iterdir()] == ["evaluation"]
    assert [path.name for path in target.iterdir()] == ["old"]


def test_a_run_that_stopped_before_its_first_backup_can_start_again(tmp_path):
    run = RunDirectory(tmp_path / "run")
    run.path.mkdir()
    run.write_config({"config": {"epochs": 3}, "finished": False})
    run.model_path.write_bytes(b"best model of an unfinished first epoch")
    assert not run.is_finished()
    run.check_can_start(resume=False)
    with pytest.raises(ValueError, match="it never completed an epoch"):
        run.check_can_start(resume=True)
    run.mark_finished()
    assert run.is_finished() and run.read_config() == {"epochs": 3}
    with pytest.raises(ValueError, match="already holds a run"):
        run.check_can_start(resume=False)


def test_history_without_validation_values(tmp_path):
    run = RunDirectory(tmp_path)
    run.history_path.write_text("epoch,accuracy,loss,val_accuracy,val_loss\n0,0.4,1.0,NA,NA\n1,0.6,0.9,NA,NA\n")
    rows = run.read_history()
    assert rows[1] == {"epoch": 1, "accuracy": 0.6, "loss": 0.9, "val_accuracy": None, "val_loss": None}
    assert best_epoch(rows, "val_accuracy") == (None, 0)
    assert best_epoch(rows, "accuracy") == (0.6, 2)
    rows.append({"epoch": 2, "accuracy": 0.5, "loss": 0.95, "val_accuracy": None, "val_loss": None})
    # Without a monitor (no validation split), the last epoch is the kept one.
    assert best_epoch(rows, None) == (0.5, 3)
    assert best_epoch([], None) == (None, 0)
