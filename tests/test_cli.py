"""train.py, evaluate.py, serve.py and predict.py: help, and errors for bad arguments."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

import evaluate
import train
from stn_keras import settings
from stn_keras import training
from stn_keras.training import planning
from tests.data_fixtures import write_mnist_like

ROOT = Path(__file__).resolve().parents[1]


def run(main, argv, capsys):
    """Runs a CLI's main in-process; returns (exit code, stdout, stderr)."""
    try:
        code = main(argv)
    except SystemExit as exit:
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_train_help_lists_flags_with_defaults(capsys):
    code, out, _ = run(train.main, ["--help"], capsys)
    assert code == 0
    for flag in (
        "--dataset", "--distortion", "--model", "--transform", "--epochs",
        "--batch-size", "--optimizer", "--learning-rate", "--lr-schedule",
        "--seed", "--data-dir", "--output-dir", "--val-size",
        "--mixed-precision", "--jit-compile", "--strategy", "--resume",
        "--config", "--model-option", "--augment", "--augmentation-option",
        "--weight-decay",
    ):
        assert flag in out, flag
    text = " ".join(out.split())
    assert "base learning rate (default: 0.001)" in text
    assert "(default: st_cnn)" in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "resnet"], ["invalid choice: 'resnet'", "fcn", "compact_st_cnn"]),
        (["--optimizer", "adagrad"], ["invalid choice: 'adagrad'", "sgd", "rmsprop"]),
        (["--lr-schedule", "linear"], ["invalid choice: 'linear'", "constant", "cosine"]),
        (["--strategy", "tpu"], ["invalid choice: 'tpu'", "default", "mirrored", "data_parallel"]),
        (["--mixed-precision", "half"], ["invalid choice: 'half'", "bfloat16", "float16"]),
        (["--transform", "spline"], ["invalid choice: 'spline'", "affine", "tps"]),
        (["--localization-convolution", "dense"], ["invalid choice: 'dense'", "coordconv"]),
        (["--model", "cnn", "--transform", "tps"], ["Model 'cnn' has no spatial transformer, so transform does not apply"]),
        (["--val-size", "ten"], "argument --val-size: expected an image count (e.g. 5000) or a fraction (e.g. 0.1). Received: 'ten'"),
        (["--epochs", "zero"], "argument --epochs: invalid int value: 'zero'"),
        (["--epochs", "0"], "`epochs` must be an int >= 1. Received: epochs=0"),
        (["--model-option", "filters"], "expected KEY=VALUE, e.g. filters=16"),
        (["--augmentation-option", "rotation_range=[-5,5]"], "`augmentation_options` are only used with `augment`"),
        (["--augment", "--augmentation-option", "zoom=2"], "Unknown augmentation option(s) ['zoom']"),
        (["--weight-decay", "-1"], "`weight_decay` must be a finite number >= 0"),
        (["--config", "missing.yaml"], "Config file not found. Received: path='missing.yaml'"),
    ],
)
def test_train_bad_arguments(argv, message, capsys):
    code, _, err = run(train.main, argv, capsys)
    assert code == 2
    for part in [message] if isinstance(message, str) else message:
        assert part in err


def test_train_resume_without_a_run(tmp_path, capsys):
    code, _, err = run(
        train.main, ["--resume", "--output-dir", str(tmp_path / "none")], capsys
    )
    assert code == 2
    assert "config.json' does not exist: no run was started" in err


def test_evaluate_help(capsys):
    code, out, _ = run(evaluate.main, ["--help"], capsys)
    assert code == 0
    for flag in ("--model", "--dataset", "--distortion", "--split", "--output-dir"):
        assert flag in out


def test_evaluate_data_flags_are_trains_from_the_settings_schema(capsys):
    _, train_help, _ = run(train.main, ["--help"], capsys)
    _, evaluate_help, _ = run(evaluate.main, ["--help"], capsys)
    train_text, evaluate_text = (" ".join(text.split()) for text in (train_help, evaluate_help))
    assert set(evaluate.DATA_FLAGS) <= set(settings.DATA_SETTINGS)
    for name in evaluate.DATA_FLAGS:
        option = settings.OPTIONS[name]
        flag = "--" + name.replace("_", "-")
        assert f"{flag} {name.upper()} {option.help}" in train_text, flag
        default = "the run's" if option.default is None else f"the run's, or {option.default}"
        assert f"{flag} {name.upper()} {option.help} (default: {default})" in evaluate_text, flag
    arguments = evaluate.build_parser().parse_args(
        ["--model", "m.keras", "--seed", "3", "--test-seed", "5", "--val-size", "0.1",
         "--image-size", "20"]
    )
    assert (arguments.seed, arguments.test_seed, arguments.val_size, arguments.image_size) == (
        3, 5, 0.1, 20
    )
    assert arguments.dataset is None and arguments.distortion is None  # the run's


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "the following arguments are required: --model"),
        (["--model", "m.keras", "--val-size", "ten"], "argument --val-size: expected an image count (e.g. 5000) or a fraction (e.g. 0.1). Received: 'ten'"),
        (["--model", "m.keras", "--seed", "one"], "argument --seed: invalid int value: 'one'"),
        (["--model", "m.keras", "--split", "dev"], "invalid choice: 'dev'"),
        (["--model", "m.keras", "--batch-size", "0"], "--batch-size and --num-samples must be >= 1"),
        (["--model", "no/such/model.keras"], "Model not found. Received: model path='no/such/model.keras'"),
    ],
)
def test_evaluate_bad_arguments(argv, message, capsys):
    code, _, err = run(evaluate.main, argv, capsys)
    assert code == 2
    assert message in err


def small_keras_file(path):
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.save(path)
    return path


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda data: b"\x00" * 100, "it is not a complete .keras (zip) archive (100 bytes: truncated, or another kind of file)"),
        (lambda data: data[: len(data) // 2], "it is not a complete .keras (zip) archive ("),
        (lambda data: b"", "it is empty (0 bytes)"),
        (
            lambda data: data[:30000] + bytes(255 - byte for byte in data[30000:30064]) + data[30064:],
            "its member 'model.weights.h5' fails its CRC-32 check (flipped bytes)",
        ),
    ],
    ids=["zeros", "truncated", "empty", "flipped bytes"],
)
def test_evaluate_damaged_model_file(tmp_path, capsys, damage, problem):
    path = small_keras_file(tmp_path / "model.keras")
    path.write_bytes(damage(path.read_bytes()))
    code, _, err = run(evaluate.main, ["--model", str(path)], capsys)
    assert code == 2
    assert err.startswith(f"evaluate.py: error: Cannot load model file '{path}': the file is damaged: {problem}")
    assert err.endswith("Save or export the model again, or use an undamaged copy.\n")
    assert "File not found" not in err and err.count("\n") == 1


def test_train_failure_is_one_line_and_exit_code_1(tmp_path, capsys, monkeypatch):
    def failing(settings):
        raise training.TrainingFailed("Training failed: the training loss became nan in epoch 2. ...")

    monkeypatch.setattr(training, "train", failing)
    code, _, err = run(train.main, ["--output-dir", str(tmp_path / "run")], capsys)
    assert code == 1
    assert err == "train.py: error: Training failed: the training loss became nan in epoch 2. ...\n"


def test_damaged_data_files_are_one_line_errors_of_train_and_evaluate(tmp_path, capsys):
    write_mnist_like(tmp_path / "mnist")
    damaged = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    damaged.write_bytes(damaged.read_bytes()[:20])
    model = small_keras_file(tmp_path / "model.keras")
    for main, argv in [
        (train.main, ["--dataset", "mnist", "--output-dir", str(tmp_path / "run")]),
        (evaluate.main, ["--model", str(model), "--dataset", "mnist"]),
    ]:
        code, _, err = run(main, [*argv, "--data-dir", str(tmp_path)], capsys)
        assert code == 2
        assert f"error: IDX file {damaged} is a corrupt or truncated gzip archive" in err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_train_then_evaluate_on_digits(tmp_path, capsys):
    run_dir = tmp_path / "run"
    # The ST-FCN: the lightest model with a transformer (st_samples.png needs one).
    code, out, err = run(
        train.main,
        ["--dataset", "digits", "--distortion", "rts", "--model", "st_fcn",
         "--epochs", "1", "--learning-rate", "0.002",
         "--verbose", "0", "--output-dir", str(run_dir)],
        capsys,
    )
    assert code == 0, err
    backend = keras.backend.backend()
    assert f"Device: {backend}: CPU" in out and "best val_accuracy" in out
    for name in ("model.keras", "history.csv", "config.json"):
        assert (run_dir / name).is_file(), name
    model = "saved_model" if backend == "tensorflow" else "model.keras"
    code, out, err = run(
        evaluate.main,
        ["--model", str(run_dir / model), "--compare-with", str(run_dir / "model.keras")],
        capsys,
    )
    assert code == 0, err
    evaluation_dir = run_dir / "evaluation"
    metrics = json.loads((evaluation_dir / "metrics.json").read_text())
    assert f"/{metrics['num_samples']} (" in out
    # Distorted digits: the errors by angle and on the digits undistorted.
    assert "\nErrors by angle:\n" in out and "The same digits undistorted" in out
    assert set(metrics["distortion_breakdown"]) == {"by_parameter", "undistorted"}
    # Compared with itself in another format: no image tells them apart.
    comparison = metrics["comparison"]
    assert comparison["other_model"]["path"] == str(run_dir / "model.keras")
    assert comparison["only_this_correct"] == comparison["only_other_correct"] == 0
    assert comparison["errors"] == comparison["other_errors"] == (
        metrics["num_samples"] - metrics["num_correct"]
    )
    assert "0 only the other; exact McNemar two-sided p = 1\n" in out
    assert metrics["data"]["name"] == "digits" and metrics["data"]["distortion"] == "rts"
    for name in ("confusion_matrix.csv", "confusion_matrix.png", "misclassified.png", "st_samples.png"):
        assert (evaluation_dir / name).is_file(), name
    assert not [path.name for path in run_dir.iterdir() if path.name.startswith(".")]
    code, _, err = run(
        evaluate.main, ["--model", str(run_dir / "model.keras"), "--distortion", "none",
                        "--image-size", "20"],
        capsys,
    )
    assert code == 2 and "expects images of shape" in err


class _FinishedRun:
    run_dir = "runs/finished"

    def summary(self):
        return "best val_accuracy 1.0000"


@pytest.mark.parametrize("flags, exported", [([], ["runs/finished"]), (["--no-export"], [])])
def test_train_exports_the_best_model_as_its_own_step_unless_told_not_to(
    tmp_path, capsys, monkeypatch, flags, exported
):
    trained, calls = [], []
    monkeypatch.setattr(training, "train", lambda settings: trained.append(settings) or _FinishedRun())
    monkeypatch.setattr(train, "export_best_model", calls.append)
    code, out, _ = run(train.main, ["--output-dir", str(tmp_path / "run"), *flags], capsys)
    assert code == 0 and "best val_accuracy" in out
    assert calls == exported
    # --export is a step of the command line, not a setting of the run.
    assert trained[0].output_dir == str(tmp_path / "run")
    assert "export" not in trained[0].as_dict()


COMMAND_LINES = [
    [str(ROOT / "train.py")],
    [str(ROOT / "evaluate.py")],
    [str(ROOT / "serve.py")],
    [str(ROOT / "predict.py")],
    *(["-m", f"stn_keras.{module}"] for module in ("demo", "export", "serving", "data")),
]


@pytest.mark.parametrize("command_line", COMMAND_LINES, ids=" ".join)
def test_cli_help_starts_quietly(command_line):
    completed = subprocess.run(
        [sys.executable, *command_line, "--help"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "KERAS_BACKEND": keras.backend.backend()},
    )
    assert completed.returncode == 0, completed.stderr
    assert "usage:" in completed.stdout
    assert completed.stderr == ""


def test_data_dir_that_does_not_exist_is_an_error_before_anything_is_created(tmp_path, capsys):
    missing = tmp_path / "missing" / "dir"
    code, _, err = run(
        train.main,
        ["--dataset", "mnist", "--data-dir", str(missing), "--output-dir", str(tmp_path / "run")],
        capsys,
    )
    assert code == 2
    assert f"Data directory '{missing}' does not exist" in err
    assert not (tmp_path / "missing").exists() and not (tmp_path / "run").exists()


def test_data_dir_with_digits_is_refused(tmp_path, capsys):
    code, _, err = run(
        train.main, ["--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "run")], capsys
    )
    assert code == 2
    assert "The digits data set ships with scikit-learn and reads no data directory" in err
    code, _, err = run(
        train.main, ["--download", "--output-dir", str(tmp_path / "run")], capsys
    )
    assert code == 2 and "Unknown option(s) ['download'] for data set 'digits'" in err


def test_missing_data_shows_the_data_layer_error(tmp_path, capsys, monkeypatch):
    def missing(config):
        raise FileNotFoundError("Data set 'gtsrb' is incomplete. Looked for X in: Y.")

    monkeypatch.setattr(planning, "load_data", missing)
    code, _, err = run(
        train.main, ["--dataset", "gtsrb", "--output-dir", str(tmp_path / "run")], capsys
    )
    assert code == 2
    assert err.strip().endswith("train.py: error: Data set 'gtsrb' is incomplete. Looked for X in: Y.")
    assert not (tmp_path / "run").exists()


def resolved_from_command_line(argv):
    """The settings ``train.py argv`` would train with."""
    arguments = vars(train.build_parser().parse_args(argv))
    config_path = arguments.pop("config", None)
    arguments.pop("export")
    for name in train.MAPPING_FLAGS:
        if name in arguments:
            arguments[name] = dict(arguments[name])
    return settings.resolve_settings(arguments, config_path)


def test_a_flag_turns_off_what_the_config_file_sets(tmp_path):
    config = tmp_path / "recipe.yaml"
    config.write_text(
        "dataset: digits\nmodel: compact_st_cnn\ntransform: affine\nema_momentum: 0.999\n"
        "val_size: 100\nimage_size: 20\nmodel_options: {filters: [8, 16, 32], dropout: 0.5}\n"
    )
    resolved = resolved_from_command_line(
        ["--config", str(config), "--ema-momentum", "none", "--val-size", "none",
         "--image-size", "None", "--model", "compact_cnn", "--transform", "none",
         "--model-option", "dropout=0.3", "--model-option", "dense_units=64"]
    )
    assert resolved.ema_momentum is None and resolved.val_size is None
    assert resolved.image_size is None and resolved.transform is None
    assert resolved.model_options == {"filters": [8, 16, 32], "dropout": 0.3, "dense_units": 64}
    kept = resolved_from_command_line(["--config", str(config)])
    assert kept.ema_momentum == 0.999 and kept.transform == "affine" and kept.image_size == 20


def test_none_is_offered_beside_a_flag_s_choices(capsys):
    with pytest.raises(SystemExit):
        train.build_parser().parse_args(["--transform", "spline"])
    assert "invalid choice: 'spline' (choose from" in capsys.readouterr().err
    help_text = " ".join(train.build_parser().format_help().split())
    assert "--transform {affine,attention,similarity,projective,tps,none}" in help_text
