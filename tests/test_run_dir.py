"""The run directory: start/resume checks, writability, history, atomic files."""

import pytest

from stn_keras import run_dir as run_dir_module
from stn_keras.run_dir import RunDirectory
from stn_keras.run_dir import best_epoch
from stn_keras.run_dir import write_atomically

HISTORY = "epoch,accuracy,loss,val_accuracy,val_loss\n0,0.5,1.0,0.6,0.9\n1,0.7,0.8,0.8,0.7\n2,0.9,0.3,0.75,0.6\n"


def test_history_rows_best_epoch_and_truncation(tmp_path):
    run = RunDirectory(tmp_path)
    assert run.read_history() == [] and run.truncate_history(2) == []
    run.history_path.write_text(HISTORY)
    rows = run.read_history()
    assert [row["epoch"] for row in rows] == [0, 1, 2]
    assert best_epoch(rows, "val_accuracy") == (0.8, 2)
    assert best_epoch([], "val_accuracy") == (None, 0)
    kept = run.truncate_history(2)
    assert [row["epoch"] for row in kept] == [0, 1]
    assert run.history_path.read_text() == HISTORY.rsplit("2,0.9", 1)[0]
    assert run.truncate_history(5) == kept  # nothing to drop, file unchanged


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
    write_atomically(target, "old")

    def fail(*arguments):
        raise OSError("disk full")

    monkeypatch.setattr(run_dir_module.os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, "new")
    assert target.read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["config.json"]
