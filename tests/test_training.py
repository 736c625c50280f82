"""Training: configuration, the resumable pipeline, the run directory, resume."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from stn_keras import training
from tiny_data import tiny_dataset
from tiny_data import tiny_distorted_dataset

ROOT = Path(__file__).resolve().parents[1]
# Small, fast, deterministic settings for the tiny data set (96 images).
TINY = {
    "epochs": 4,
    "optimizer": "sgd",
    "momentum": 0.9,
    "learning_rate": 0.05,
    "batch_size": 16,
    "verbose": 0,
}


class SendSignalMidEpoch(keras.callbacks.Callback):
    """Sends ``signal_number`` to this process during epoch ``epoch`` (0-based)."""

    def __init__(self, signal_number, epoch=2, batch=1):
        super().__init__()
        self.signal_number, self.epoch, self.batch = signal_number, epoch, batch
        self.current_epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.current_epoch, batch) == (self.epoch, self.batch):
            os.kill(os.getpid(), self.signal_number)


def tiny_config(run_dir, **overrides):
    return training.resolve_config({**TINY, "output_dir": str(run_dir), **overrides})


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """An uninterrupted 4-epoch run on the tiny data set."""
    run_dir = tmp_path_factory.mktemp("runs") / "full"
    result = training.train(tiny_config(run_dir), tiny_dataset())
    return result


def test_resolve_config_precedence(tmp_path):
    path = tmp_path / "experiment.yaml"
    path.write_text(
        "model: cnn\nbatch-size: 32\nepochs: 7\ndistortion: rts\nonline-distortion: true\n"
    )
    config = training.resolve_config({"epochs": 2}, path)
    assert config["online_distortion"] is True  # from the file, hyphenated key
    assert config["model"] == "cnn"  # from the file
    assert config["batch_size"] == 32  # file, hyphenated key
    assert config["epochs"] == 2  # the command line wins
    assert config["optimizer"] == training.DEFAULTS["optimizer"]  # default
    json_path = tmp_path / "experiment.json"
    json_path.write_text(json.dumps({"distortion": "none", "lr_schedule": "cosine"}))
    config = training.resolve_config({}, json_path)
    assert config["distortion"] is None and config["lr_schedule"] == "cosine"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"epochs": 0}, "`epochs` must be an int >= 1. Received: epochs=0"),
        ({"optimizer": "adagrad"}, "`optimizer` must be one of ('sgd', 'adam', 'rmsprop')"),
        ({"lr_schedule": "linear"}, "`lr_schedule` must be one of ('constant', 'step', 'cosine')"),
        ({"strategy": "tpu"}, "`strategy` must be one of ('default', 'mirrored')"),
        ({"model": "vgg"}, "`model` must be one of ('fcn', 'cnn'"),
        ({"learning_rate": -1.0}, "`learning_rate` must be a finite number > 0"),
        ({"momentum": 1.5}, "`momentum` must be a number in [0, 1)"),
        ({"mixed_precision": "yes"}, "`mixed_precision` must be true or false"),
        ({"batchsize": 3}, "Unknown setting(s) ['batchsize'] in arguments"),
        (
            {"online_distortion": True},
            "`online_distortion` needs a distortion to draw afresh every epoch: "
            "set `distortion` (e.g. rts) or turn online_distortion off. "
            "Received: online_distortion=True, distortion=None",
        ),
        (
            {"online_distortion": True, "distortion": "rts", "strategy": "mirrored"},
            "`online_distortion` is not supported with the mirrored strategy",
        ),
        ({"online_distortion": 1}, "`online_distortion` must be true or false"),
    ],
)
def test_bad_settings(overrides, message):
    with pytest.raises(ValueError) as error:
        training.resolve_config(overrides)
    assert message in str(error.value)


def test_bad_config_files(tmp_path):
    with pytest.raises(ValueError, match="Config file not found"):
        training.resolve_config({}, tmp_path / "missing.yaml")
    text_file = tmp_path / "settings.txt"
    text_file.write_text("epochs: 3")
    with pytest.raises(ValueError, match=r"must end in \.yaml, \.yml or \.json"):
        training.resolve_config({}, text_file)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="must hold a mapping of settings"):
        training.resolve_config({}, listing)
    broken = tmp_path / "broken.json"
    broken.write_text("{epochs: ")
    with pytest.raises(ValueError, match="Cannot parse config file"):
        training.resolve_config({}, broken)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("epochz: 3\n")
    with pytest.raises(ValueError, match=r"Unknown setting\(s\) \['epochz'\] in config file"):
        training.resolve_config({}, unknown)


@pytest.mark.tensorflow_only
def test_epoch_batches_are_seeded_per_epoch():
    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1)
    labels = np.arange(10)
    full, steps = training.epoch_batches(images, labels, 4, 7, 0, 3)
    assert steps == 3  # 4 + 4 + 2: the last batch is partial, nothing dropped
    batches = [label.numpy().tolist() for _, label in full]
    epochs = [sum(batches[index : index + 3], []) for index in (0, 3, 6)]
    for order in epochs:
        assert sorted(order) == list(range(10))  # every image once per epoch
    assert epochs[0] != epochs[1]  # reshuffled each epoch
    tail, _ = training.epoch_batches(images, labels, 4, 7, 1, 3)
    assert [label.numpy().tolist() for _, label in tail] == batches[3:]
    first_images, first_labels = next(iter(full))
    np.testing.assert_allclose(
        first_images.numpy().ravel(), first_labels.numpy() / 255.0, rtol=1e-6
    )


@pytest.mark.tensorflow_only
def test_run_directory_contents(finished_run):
    run_dir = finished_run.run_dir
    for name in ("config.json", "history.csv", "model.keras", "saved_model/saved_model.pb"):
        assert (run_dir / name).exists(), name
    assert not (run_dir / "backup").exists()  # deleted after success
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["config"]["epochs"] == 4 and saved["config"]["model"] == "st_cnn"
    assert saved["data"] == {"name": "tiny", "sha256": "synthetic"}
    assert {"keras", "tensorflow", "numpy", "stn_keras"} <= set(saved["versions"])
    assert saved["num_parameters"] == finished_run.num_parameters
    rows = (run_dir / "history.csv").read_text().splitlines()
    assert rows[0] == "epoch,accuracy,loss,val_accuracy,val_loss"
    assert len(rows) == 5
    best = max(float(row.split(",")[3]) for row in rows[1:])
    assert finished_run.best_val_accuracy == pytest.approx(best)
    summary = finished_run.summary()
    assert "best val_accuracy" in summary and "images/s" in summary


@pytest.mark.tensorflow_only
def test_sigterm_keeps_last_epoch_and_resume_gives_the_same_result(
    tmp_path, finished_run
):
    run_dir = tmp_path / "interrupted"
    with pytest.raises(training.TrainingInterrupted):
        training.train(
            tiny_config(run_dir),
            tiny_dataset(),
            callbacks=[SendSignalMidEpoch(signal.SIGTERM)],
        )
    state = json.loads((run_dir / "backup" / "state.json").read_text())
    assert state["epoch"] == 2
    assert len((run_dir / "history.csv").read_text().splitlines()) == 3
    assert signal.getsignal(signal.SIGTERM) is not training._raise_interrupted
    training.train(tiny_config(run_dir, resume=True), tiny_dataset())
    assert (run_dir / "history.csv").read_text() == (
        finished_run.run_dir / "history.csv"
    ).read_text()


def run_training_script(script):
    """Runs ``script`` in a fresh TensorFlow-backend Python process."""
    return subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "KERAS_BACKEND": "tensorflow"},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.tensorflow_only
def test_killed_subprocess_resumes_to_the_uninterrupted_result(tmp_path, finished_run):
    run_dir = tmp_path / "killed"
    script = textwrap.dedent(
        f"""
        import signal, sys
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]
        from stn_keras import training
        from test_training import SendSignalMidEpoch, tiny_config
        from tiny_data import tiny_dataset
        training.train(tiny_config({str(run_dir)!r}), tiny_dataset(),
                       callbacks=[SendSignalMidEpoch(signal.SIGKILL)])
        """
    )
    completed = run_training_script(script)
    assert completed.returncode == -signal.SIGKILL, completed.stderr[-2000:]
    assert json.loads((run_dir / "backup" / "state.json").read_text())["epoch"] == 2
    with pytest.raises(ValueError, match="already holds a run. Pass --resume"):
        training.train(tiny_config(run_dir), tiny_dataset())
    training.train(tiny_config(run_dir, resume=True), tiny_dataset())
    assert (run_dir / "history.csv").read_text() == (
        finished_run.run_dir / "history.csv"
    ).read_text()
    full = keras.saving.load_model(finished_run.run_dir / "model.keras")
    resumed = keras.saving.load_model(run_dir / "model.keras")
    for expected, actual in zip(full.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(expected, actual)


@pytest.mark.tensorflow_only
def test_nothing_to_resume(tmp_path, finished_run):
    with pytest.raises(ValueError, match="Nothing to resume"):
        training.train(tiny_config(finished_run.run_dir, resume=True), tiny_dataset())
    with pytest.raises(ValueError, match="does not exist"):
        training.saved_run_config(tmp_path / "never")


@pytest.mark.tensorflow_only
def test_schedules_and_optimizers():
    config = training.resolve_config(
        {"lr_schedule": "step", "lr_decay_steps": 10, "learning_rate": 0.5}
    )
    optimizer = training.make_optimizer(config, steps_per_epoch=5)
    schedule = optimizer._learning_rate
    assert float(schedule(9)) == pytest.approx(0.5)
    assert float(schedule(10)) == pytest.approx(0.05)
    assert float(schedule(25)) == pytest.approx(0.005)
    cosine = training.make_optimizer(
        training.resolve_config({"lr_schedule": "cosine", "epochs": 2, "optimizer": "adam"}),
        steps_per_epoch=5,
    )
    assert isinstance(cosine, keras.optimizers.Adam)
    assert float(cosine._learning_rate(5)) == pytest.approx(0.005)
    assert float(cosine._learning_rate(10)) == pytest.approx(0.0, abs=1e-9)
    rmsprop = training.make_optimizer(
        training.resolve_config({"optimizer": "rmsprop"}), steps_per_epoch=1
    )
    assert isinstance(rmsprop, keras.optimizers.RMSprop)


@pytest.mark.tensorflow_only
def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    run_dir = tmp_path / "mirrored"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from stn_keras import training
        from test_training import tiny_config
        from tiny_data import tiny_dataset
        training.train(tiny_config({str(run_dir)!r}, epochs=1, strategy="mirrored"),
                       tiny_dataset())
        """
    )
    completed = run_training_script(script)
    assert completed.returncode == 0, completed.stderr[-3000:]
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["num_replicas"] == 2
    assert len((run_dir / "history.csv").read_text().splitlines()) == 2


@pytest.mark.tensorflow_only
def test_mixed_precision_and_jit_compile_train(tmp_path):
    result = training.train(
        tiny_config(
            tmp_path / "fast",
            epochs=1,
            mixed_precision=True,
            jit_compile=True,
            model="cnn",
        ),
        tiny_dataset(),
    )
    saved = json.loads((result.run_dir / "config.json").read_text())
    assert saved["mixed_precision_policy"] == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    assert np.isfinite(result.best_val_accuracy)


@pytest.mark.tensorflow_only
def test_tensorboard_gets_the_transformer_output_every_epoch(finished_run):
    pytest.importorskip("tensorboard")
    import tensorflow as tf

    steps = {}
    for path in (finished_run.run_dir / "logs" / "transformer").glob("events*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                steps.setdefault(value.tag, []).append(event.step)
    assert steps == {"inputs": [0], "transformer": [1, 2, 3, 4]}


ONLINE = {"online_distortion": True, "distortion": "rts", "model": "cnn", "epochs": 3}


@pytest.fixture(scope="module")
def online_run(tmp_path_factory):
    """An uninterrupted 3-epoch run on freshly distorted tiny data."""
    run_dir = tmp_path_factory.mktemp("runs") / "online"
    return training.train(tiny_config(run_dir, **ONLINE), tiny_distorted_dataset())


@pytest.mark.tensorflow_only
def test_online_distortion_trains_on_fresh_images_every_epoch(online_run):
    saved = json.loads((online_run.run_dir / "config.json").read_text())
    assert saved["config"]["online_distortion"] is True
    assert len((online_run.run_dir / "history.csv").read_text().splitlines()) == 4
    dataset = tiny_distorted_dataset()
    config = tiny_config(online_run.run_dir, **ONLINE)
    epoch_0, steps = training.training_batches(config, dataset, first_epoch=0)
    epoch_1, _ = training.training_batches(config, dataset, first_epoch=1)
    assert steps == len(epoch_0) == 2  # 32 images in batches of 16
    images_0, labels_0 = epoch_0[0]
    images_1, labels_1 = epoch_1[0]
    assert images_0.shape == (16, 42, 42, 1) == images_1.shape
    assert not np.array_equal(images_0, images_1)
    # Neither is the fixed distortion of the training split.
    fixed = dataset.x_train.astype("float32") / 255.0
    assert not any(np.array_equal(image, fixed_image) for image in images_0 for fixed_image in fixed)


@pytest.mark.tensorflow_only
def test_online_distortion_needs_a_distorted_dataset(tmp_path):
    with pytest.raises(ValueError, match="Received: online_distortion=True, distortion=None"):
        training.train(tiny_config(tmp_path / "plain", **ONLINE), tiny_dataset())
    assert not (tmp_path / "plain").exists()


@pytest.mark.tensorflow_only
def test_online_distortion_resumes_to_the_uninterrupted_result(tmp_path, online_run):
    run_dir = tmp_path / "interrupted"
    with pytest.raises(training.TrainingInterrupted):
        training.train(
            tiny_config(run_dir, **ONLINE),
            tiny_distorted_dataset(),
            callbacks=[SendSignalMidEpoch(signal.SIGTERM, epoch=1, batch=0)],
        )
    assert json.loads((run_dir / "backup" / "state.json").read_text())["epoch"] == 1
    training.train(tiny_config(run_dir, resume=True, **ONLINE), tiny_distorted_dataset())
    assert (run_dir / "history.csv").read_text() == (
        online_run.run_dir / "history.csv"
    ).read_text()


def test_saved_config_of_an_older_run_gets_new_settings_defaults(tmp_path):
    older = {key: value for key, value in training.DEFAULTS.items() if key != "online_distortion"}
    (tmp_path / "config.json").write_text(json.dumps({"config": {**older, "epochs": 3}}))
    saved = training.saved_run_config(tmp_path)
    assert saved["online_distortion"] is False and saved["epochs"] == 3
