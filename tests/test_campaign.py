"""The training campaign (stn_keras.campaign, experiments/gpu_campaign.sh) on the CPU."""

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import keras
import pytest

from stn_keras import campaign
from stn_keras.run_dir import RunDirectory

REPOSITORY = Path(__file__).resolve().parents[1]


def test_the_run_list_names_each_run_once_with_its_arguments(tmp_path):
    runs = campaign.read_run_list(REPOSITORY / "experiments" / "gpu_campaign_runs.txt")
    assert [run.name for run in runs[:2]] == ["rts_st_cnn_affine_s0", "rts_cnn_s0"]
    assert runs[0].arguments == (
        "--config", "experiments/table1/rts_st_cnn_affine.yaml", "--seed", "0"
    )
    for run in runs:
        assert (REPOSITORY / run.arguments[1]).is_file()


@pytest.mark.parametrize(
    "line, problem",
    [
        ("a --epochs 1\na --epochs 2", "used twice"),
        ("a/b --epochs 1", "run name"),
        ("a --output-dir runs/x", "set by the campaign"),
    ],
)
def test_a_run_list_that_cannot_work_is_refused(tmp_path, line, problem):
    path = tmp_path / "runs.txt"
    path.write_text(line)
    with pytest.raises(ValueError, match=problem):
        campaign.read_run_list(path)


def _sleeping_trainer(tmp_path):
    """An interpreter stand-in that trains forever, until a signal."""
    trainer = tmp_path / "trainer"
    trainer.write_text("#!/bin/sh\nexec sleep 600\n")
    trainer.chmod(0o755)
    return trainer


def test_the_budget_stops_runs_started_in_parallel_and_leaves_the_rest(tmp_path):
    runs = [campaign.PlannedRun(name, ()) for name in ("first", "second", "third")]
    start = time.monotonic()
    records = campaign.run_campaign(
        runs,
        tmp_path / "runs",
        train_seconds=2,
        parallel=2,
        python=_sleeping_trainer(tmp_path),
        minimum_start_seconds=1,
        poll_seconds=0.1,
    )
    assert time.monotonic() - start < 10
    for name in ("first", "second"):
        assert records[name]["stopped_by_campaign"]
        assert records[name]["return_code"] == -signal.SIGTERM
        assert records[name]["seconds"] >= 2
        assert (tmp_path / "runs" / name / campaign.TRAIN_LOG).is_file()
    # Its turn came only once the budget stopped the others: never started.
    assert records["third"]["action"] == "not started: the budget ended first"
    assert "return_code" not in records["third"]


def test_an_interrupted_run_is_resumed_with_its_saved_settings(tmp_path):
    run_dir = tmp_path / "runs" / "interrupted"
    (run_dir / "backup").mkdir(parents=True)
    (run_dir / "backup" / "state.json").write_text('{"backups": [{"epoch": 3}]}')
    records = campaign.run_campaign(
        [campaign.PlannedRun("interrupted", ("--seed", "1"))],
        tmp_path / "runs",
        train_seconds=1,
        extra_arguments=("--epochs", "1"),
        python=_sleeping_trainer(tmp_path),
        minimum_start_seconds=0,
        poll_seconds=0.1,
    )
    record = records["interrupted"]
    assert record["action"] == "resume" and record["epochs_before"] == 3
    assert record["command"].endswith(f"--output-dir {run_dir} --verbose 2 --resume")
    assert "--seed" not in record["command"] and "--epochs" not in record["command"]


def test_finished_and_failed_runs_are_left_alone(tmp_path):
    finished = RunDirectory(tmp_path / "runs" / "finished")
    finished.path.mkdir(parents=True)
    finished.write_config({"config": {}, "finished": True})
    failed = RunDirectory(tmp_path / "runs" / "failed")
    failed.path.mkdir(parents=True)
    failed.write_config({"config": {}, "finished": False, "failure": "nan"})
    records = campaign.run_campaign(
        [campaign.PlannedRun("finished", ()), campaign.PlannedRun("failed", ())],
        tmp_path / "runs",
        train_seconds=30,
        python=_sleeping_trainer(tmp_path),
    )
    assert records["finished"]["action"] == "skip: finished earlier"
    assert records["failed"]["action"] == "skip: failed earlier"


def _fake_mnist(folder):
    (folder / "mnist").mkdir(parents=True)
    for name in campaign.IDX_FILE_NAMES:
        (folder / "mnist" / name).write_bytes(name.encode())


def test_pack_copies_mnist_and_the_resumable_runs_only(tmp_path):
    _fake_mnist(tmp_path / "data")
    local_runs = tmp_path / "local"
    for name in ("interrupted", "finished"):
        (local_runs / name / "logs").mkdir(parents=True)
        (local_runs / name / "history.csv").write_text("epoch\n0\n")
    (local_runs / "interrupted" / "backup").mkdir()
    (local_runs / "interrupted" / "backup" / "state.json").write_text('{"backups": []}')
    campaign.pack(tmp_path / "data", tmp_path / "packed", local_runs)
    assert sorted(path.name for path in (tmp_path / "packed" / "mnist").iterdir()) == sorted(
        campaign.IDX_FILE_NAMES
    )
    assert [path.name for path in (tmp_path / "packed" / "runs").iterdir()] == ["interrupted"]
    assert not (tmp_path / "packed" / "runs" / "interrupted" / "logs").exists()
    with pytest.raises(FileNotFoundError, match="mnist"):
        campaign.pack(tmp_path / "nowhere", tmp_path / "packed")


def test_archives_hold_whole_runs_within_their_size_and_unpack_in_place(tmp_path):
    runs_dir = tmp_path / "runs"
    for name, size in (("a", 600), ("b", 600), ("c", 300), ("huge", 5000)):
        (runs_dir / name / "logs").mkdir(parents=True)
        (runs_dir / name / "history.csv").write_bytes(b"x" * size)
        (runs_dir / name / "logs" / "events").write_bytes(b"x" * 10_000)
    archives, left_out = campaign.archive_runs(
        ["a", "b", "c", "huge"], runs_dir, tmp_path / "out", max_bytes=1000
    )
    assert archives == ["runs-1.tar.gz", "runs-2.tar.gz"]
    assert left_out == ["huge"]
    with tarfile.open(tmp_path / "out" / "runs-1.tar.gz") as tar:
        assert sorted(tar.getnames()) == ["a", "a/history.csv", "c", "c/history.csv"]
    # A stale backup/ of the local copy must not survive the returned run.
    (tmp_path / "local" / "a" / "backup").mkdir(parents=True)
    names = campaign.unpack(tmp_path / "out", tmp_path / "local")
    assert sorted(names) == ["a", "b", "c"]
    assert sorted(os.listdir(tmp_path / "local" / "a")) == ["history.csv"]


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="the campaign trains on JAX; run in the JAX pass")
def test_the_campaign_script_trains_in_parallel_and_stops_resumably(tmp_path):
    run_list = tmp_path / "runs.txt"
    tiny = "--dataset digits --image-size 10 --model fcn --epochs 1000"
    run_list.write_text(f"alpha {tiny} --seed 0\nbeta {tiny} --seed 1\n")
    out, data = tmp_path / "out", tmp_path / "data"
    environment = {
        **os.environ,
        "PYTHON": sys.executable,
        "KERAS_BACKEND": "jax",
        "OUT": str(out),
        "CAMPAIGN_DATA": str(data),
        "CAMPAIGN_RUNS": str(run_list),
        "CAMPAIGN_TRAIN_SECONDS": "900",
        "CAMPAIGN_EVALUATE_SECONDS": "0",
        "CAMPAIGN_TRAIN_ARGUMENTS": "--batch-size 128",
        "CAMPAIGN_INSTALL_WHEELS": "0",
    }
    script = subprocess.Popen(
        ["bash", REPOSITORY / "experiments" / "gpu_campaign.sh", "run"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    runs = [RunDirectory(data / "runs" / name) for name in ("alpha", "beta")]
    # Stopped as the budget stops it (the same path), once both runs have an
    # epoch to keep: a fixed budget would be too short on a loaded machine.
    deadline = time.monotonic() + 600
    while not all(run.has_backup() for run in runs):
        assert script.poll() is None, script.stdout.read()
        assert time.monotonic() < deadline, "no backup of both runs within 600 s"
        time.sleep(0.5)
    script.send_signal(signal.SIGTERM)
    output, _ = script.communicate(timeout=120)
    assert script.returncode == 0, output
    summary = json.loads((out / campaign.SUMMARY_JSON).read_text())
    alpha, beta = summary["runs"]
    assert alpha["started_at"] <= beta["ended_at"] and beta["started_at"] <= alpha["ended_at"]
    for run_summary, run in zip(summary["runs"], runs):
        assert run_summary["stopped_by_campaign"]
        assert run_summary["status"] == "interrupted, resumable"
        assert run_summary["epochs_done"] >= 1 and run_summary["epochs_planned"] == 1000
        assert run.read_config()["batch_size"] == 128
        run.check_can_start(resume=True)
    assert summary["archives"] == ["runs-1.tar.gz"]
    assert sorted(os.listdir(out)) == sorted(
        [campaign.CAMPAIGN_LOG, campaign.SUMMARY_JSON, campaign.SUMMARY_MARKDOWN, "runs-1.tar.gz"]
    )
    assert "| alpha | interrupted, resumable |" in output
    assert campaign.unpack(out, tmp_path / "returned") == ["alpha", "beta"]
    RunDirectory(tmp_path / "returned" / "alpha").check_can_start(resume=True)


def test_a_run_summary_counts_backed_up_epochs_and_only_a_current_evaluation(tmp_path):
    run_dir = RunDirectory(tmp_path / "runs" / "run")
    (run_dir.backup_path).mkdir(parents=True)
    run_dir.write_config(
        {
            "config": {"batch_size": 256, "epochs": 766, "seed": 1},
            "data": {"split_sizes": {"train": 50000}},
            "device": {"description": "jax: 1 gpu (NVIDIA H200 #0)"},
            "finished": False,
        }
    )
    # The third row's epoch was not backed up: a resumed run redoes it.
    run_dir.history_path.write_text(
        "epoch,accuracy,loss,val_accuracy,val_loss\n"
        "0,0.5,1.0,0.6,0.9\n1,0.7,0.8,0.8,0.7\n2,0.8,0.6,0.9,0.5\n"
    )
    (run_dir.backup_path / "state.json").write_text('{"backups": [{"epoch": 2}]}')
    run_dir.model_path.write_bytes(b"model")
    (run_dir.evaluation_path).mkdir()
    (run_dir.evaluation_path / "metrics.json").write_text('{"error_percent": 0.75}')
    record = {"epochs_before": 1, "seconds": 10.0, "stopped_by_campaign": True}
    summary = campaign.summarise_run(tmp_path / "runs", "run", record)
    assert summary["status"] == "interrupted, resumable"
    assert (summary["epochs_done"], summary["iterations_done"]) == (2, 2 * 196)
    assert (summary["best"], summary["best_epoch"]) == (0.8, 2)
    assert summary["images_per_second"] == 5000
    assert summary["test_error_percent"] == 0.75
    assert summary["device"] == "jax: 1 gpu (NVIDIA H200 #0)"
    later = (run_dir.evaluation_path / "metrics.json").stat().st_mtime + 10
    os.utime(run_dir.model_path, (later, later))
    assert campaign.summarise_run(tmp_path / "runs", "run", record)["test_error_percent"] is None
    assert "| run | interrupted, resumable | 2/766 | 392 |" in campaign.summary_markdown([summary], [])
