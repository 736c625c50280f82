"""train.py and evaluate.py: help, and errors for bad arguments."""

import pytest

import evaluate
import train


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
        "--config", "--model-option",
    ):
        assert flag in out, flag
    text = " ".join(out.split())
    assert "base learning rate (default: 0.01)" in text
    assert "(default: st_cnn)" in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "resnet"], ["invalid choice: 'resnet'", "fcn", "compact_st_cnn"]),
        (["--optimizer", "adagrad"], ["invalid choice: 'adagrad'", "sgd", "rmsprop"]),
        (["--lr-schedule", "linear"], ["invalid choice: 'linear'", "constant", "cosine"]),
        (["--strategy", "tpu"], ["invalid choice: 'tpu'", "default", "mirrored"]),
        (["--transform", "spline"], ["invalid choice: 'spline'", "affine", "tps"]),
        (["--loc-conv", "dense"], ["invalid choice: 'dense'", "coordconv"]),
        (["--model", "cnn", "--transform", "tps"], ["Model 'cnn' has no spatial transformer, so transform does not apply"]),
        (["--val-size", "ten"], "argument --val-size: invalid count_or_fraction value: 'ten'"),
        (["--epochs", "zero"], "argument --epochs: invalid int value: 'zero'"),
        (["--epochs", "0"], "`epochs` must be an int >= 1. Received: epochs=0"),
        (["--model-option", "filters"], "expected KEY=VALUE, e.g. filters=16"),
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
    assert "Nothing to resume" in err and "config.json' does not exist" in err


def test_evaluate_help(capsys):
    code, out, _ = run(evaluate.main, ["--help"], capsys)
    assert code == 0
    for flag in ("--model", "--dataset", "--distortion", "--split", "--output-dir"):
        assert flag in out


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "the following arguments are required: --model"),
        (["--model", "m.keras", "--split", "dev"], "invalid choice: 'dev'"),
        (["--model", "m.keras", "--batch-size", "0"], "--batch-size and --num-samples must be >= 1"),
        (["--model", "no/such/model.keras"], "Model not found. Received: model path='no/such/model.keras'"),
    ],
)
def test_evaluate_bad_arguments(argv, message, capsys):
    code, _, err = run(evaluate.main, argv, capsys)
    assert code == 2
    assert message in err


def test_evaluate_corrupt_model_file(tmp_path, capsys):
    corrupt = tmp_path / "model.keras"
    corrupt.write_bytes(b"\x00" * 100)
    code, _, err = run(evaluate.main, ["--model", str(corrupt)], capsys)
    assert code == 2
    assert f"Cannot load model file '{corrupt}': it is not a valid .keras file" in err


@pytest.mark.tensorflow_only
def test_train_then_evaluate_on_digits(tmp_path, capsys):
    pytest.importorskip("stn_keras.data")
    run_dir = tmp_path / "run"
    code, out, err = run(
        train.main,
        ["--dataset", "digits", "--distortion", "rts", "--model", "st_cnn",
         "--epochs", "1", "--optimizer", "adam", "--learning-rate", "0.002",
         "--verbose", "0", "--output-dir", str(run_dir)],
        capsys,
    )
    assert code == 0, err
    assert "Device: " in out and "best val_accuracy" in out
    code, out, err = run(evaluate.main, ["--model", str(run_dir / "saved_model")], capsys)
    assert code == 0, err
    metrics = __import__("json").loads((run_dir / "evaluation" / "metrics.json").read_text())
    assert f"/{metrics['num_samples']} (" in out
    assert metrics["data"]["name"] == "digits" and metrics["data"]["distortion"] == "rts"
    code, _, err = run(
        evaluate.main, ["--model", str(run_dir / "model.keras"), "--distortion", "none",
                        "--image-size", "20"],
        capsys,
    )
    assert code == 2 and "expects images of shape" in err


def test_missing_data_shows_the_data_layer_error(tmp_path, capsys, monkeypatch):
    from stn_keras import training

    def missing(config):
        raise FileNotFoundError("Data set 'gtsrb' is incomplete. Looked for X in: Y.")

    monkeypatch.setattr(training, "load_data", missing)
    code, _, err = run(
        train.main, ["--dataset", "gtsrb", "--output-dir", str(tmp_path / "run")], capsys
    )
    assert code == 2
    assert err.strip().endswith("train.py: error: Data set 'gtsrb' is incomplete. Looked for X in: Y.")
    assert not (tmp_path / "run").exists()
