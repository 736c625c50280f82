"""Training: the resumable pipeline, the run directory, resume, the export step after it."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from stn_keras import models
from stn_keras import runtime
from stn_keras import training
from stn_keras.export import export_best_model
from stn_keras.losses import SmoothedSparseCategoricalCrossentropy
from stn_keras.run_dir import RunDirectory
from stn_keras.settings import resolve_settings
from stn_keras.training import fit_callbacks
from stn_keras.training import interruption
from tiny_data import tiny_dataset
from tiny_data import tiny_distorted_dataset

ROOT = Path(__file__).resolve().parents[1]
# Small, fast, deterministic settings for the tiny data set (96 images). The
# ST-FCN is the lightest model with a transformer (the pictures and
# TensorBoard callbacks need one): on JAX the ST-CNN took a third longer.
TINY = {
    "epochs": 4,
    "model": "st_fcn",
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


class LastEpochWeights(keras.callbacks.Callback):
    """Keeps a copy of the model's weights at the end of each epoch."""

    weights = None

    def on_epoch_end(self, epoch, logs=None):
        self.weights = self.model.get_weights()


def backed_up_epoch(run_dir):
    """The newest epoch in the run's backup."""
    return json.loads((run_dir / "backup" / "state.json").read_text())["backups"][0]["epoch"]


def tiny_settings(run_dir, **overrides):
    return resolve_settings({**TINY, "output_dir": str(run_dir), **overrides})


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """An uninterrupted 4-epoch run on the tiny data set."""
    run_dir = tmp_path_factory.mktemp("runs") / "full"
    result = training.train(tiny_settings(run_dir), tiny_dataset())
    return result


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory):
    """A run stopped by SIGTERM in epoch 3, epochs 1 and 2 backed up."""
    run_dir = tmp_path_factory.mktemp("runs") / "interrupted"
    with pytest.raises(training.TrainingInterrupted):
        training.train(
            tiny_settings(run_dir), tiny_dataset(), callbacks=[SendSignalMidEpoch(signal.SIGTERM)]
        )
    return run_dir


def test_training_batches_depend_only_on_seed_epoch_and_index():
    dataset = tiny_dataset(train=10)
    settings = tiny_settings("unused", batch_size=4, seed=7, epochs=3)
    stream = training.training_batches(settings, dataset, first_epoch=0)
    assert stream.steps_per_epoch == 3 and len(stream) == 9  # 4 + 4 + 2 a epoch
    labels = [stream[index][1] for index in range(9)]
    epochs = [np.concatenate(labels[start : start + 3]) for start in (0, 3, 6)]
    for order in epochs:
        assert sorted(order.tolist()) == sorted(dataset.y_train.tolist())
    images = np.concatenate([stream[index][0] for index in range(3)])
    assert images.dtype == np.float32 and images.max() == 1.0
    # A resumed run's stream is the tail of the uninterrupted one, whatever
    # Keras does with on_epoch_end.
    tail = training.training_batches(settings, dataset, first_epoch=1)
    tail.on_epoch_end()
    assert len(tail) == 6
    for index in range(6):
        np.testing.assert_array_equal(tail[index][1], labels[index + 3])
        np.testing.assert_array_equal(tail[index][0], stream[index + 3][0])
    assert not all(np.array_equal(labels[i], labels[i + 3]) for i in range(3))


def test_replicated_batches_split_evenly():
    batches = training.training_batches(
        tiny_settings("unused", batch_size=4), tiny_dataset(train=11), 0, num_replicas=2
    )
    sizes = [len(batches[index][1]) for index in range(batches.steps_per_epoch)]
    assert sizes == [4, 4, 2]  # the 11th image waits for another epoch


def test_run_directory_contents(finished_run):
    run_dir = finished_run.run_dir
    for name in ("config.json", "history.csv", "model.keras"):
        assert (run_dir / name).exists(), name
    assert not (run_dir / "saved_model").exists()  # exporting is a step of its own
    assert not (run_dir / "backup").exists()  # deleted after success
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["config"]["epochs"] == 4 and saved["config"]["model"] == TINY["model"]
    assert saved["data"] == {"name": "tiny", "sha256": "synthetic"}
    assert {"keras", "keras_backend", "numpy", "stn_keras"} <= set(saved["versions"])
    assert saved["versions"]["keras_backend"] == keras.backend.backend()
    assert saved["device"]["backend"] == keras.backend.backend()
    assert saved["device"]["kind"] == "cpu" and saved["device"]["names"]
    assert saved["device"]["description"] in finished_run.summary()
    assert saved["num_parameters"] == finished_run.num_parameters
    rows = (run_dir / "history.csv").read_text().splitlines()
    assert rows[0] == "epoch,accuracy,loss,val_accuracy,val_loss"
    assert len(rows) == 5
    best = max(float(row.split(",")[3]) for row in rows[1:])
    assert finished_run.best_accuracy == pytest.approx(best)
    summary = finished_run.summary()
    assert "best val_accuracy" in summary and "images/s" in summary


def test_sigterm_keeps_last_epoch_and_resume_gives_the_same_result(
    tmp_path, interrupted_run, finished_run
):
    run_dir = shutil.copytree(interrupted_run, tmp_path / "interrupted")
    state = json.loads((run_dir / "backup" / "state.json").read_text())
    assert [backup["epoch"] for backup in state["backups"]] == [2, 1]
    assert len((run_dir / "history.csv").read_text().splitlines()) == 3
    assert signal.getsignal(signal.SIGTERM) is not interruption._raise_interrupted
    training.train(tiny_settings(run_dir, resume=True), tiny_dataset())
    assert (run_dir / "history.csv").read_text() == (
        finished_run.run_dir / "history.csv"
    ).read_text()


class RecordWeights(keras.callbacks.Callback):
    """The trained weights and the optimizer's averages of them at every epoch's
    end (after the built-in callbacks), and the weights ``fit`` ends with."""

    def __init__(self):
        super().__init__()
        self.trained, self.averages, self.final = {}, {}, None

    def on_epoch_end(self, epoch, logs=None):
        self.trained[epoch] = values(self.model.trainable_variables)
        averages = getattr(self.model.optimizer, "_model_variables_moving_average", [])
        self.averages[epoch] = values(averages)

    def on_train_end(self, logs=None):
        self.final = values(self.model.trainable_variables)


def values(variables):
    return [keras.ops.convert_to_numpy(variable) for variable in variables]


DROPOUT = {
    "model": "compact_st_cnn",
    "model_options": {"dropout": 0.5, "filters": [4, 4, 4], "dense_units": 16},
}


# Dropout's seed-generator state is not in save_weights; the backup keeps
# it. The weights' moving average is optimizer state beside the trained
# weights, which the backup must keep unaveraged.
@pytest.mark.parametrize("settings", [DROPOUT, {"ema_momentum": 0.8}], ids=["dropout", "ema"])
def test_resumes_to_the_uninterrupted_result(tmp_path, settings):
    uninterrupted = RecordWeights()
    full = training.train(
        tiny_settings(tmp_path / "full", **settings), tiny_dataset(), callbacks=[uninterrupted]
    )
    run_dir = tmp_path / "interrupted"
    with pytest.raises(training.TrainingInterrupted):
        training.train(
            tiny_settings(run_dir, **settings),
            tiny_dataset(),
            callbacks=[SendSignalMidEpoch(signal.SIGTERM)],
        )
    if settings is DROPOUT:
        state = json.loads((run_dir / "backup" / "state.json").read_text())
        seeds = state["backups"][0]["seed_states"]
        assert len(seeds) == 1 and seeds[0][1] > 0
    resumed = RecordWeights()
    training.train(tiny_settings(run_dir, resume=True), tiny_dataset(), callbacks=[resumed])
    assert (run_dir / "history.csv").read_text() == (full.run_dir / "history.csv").read_text()
    for weights, expected in zip(resumed.final, uninterrupted.final):
        np.testing.assert_array_equal(weights, expected)
    best = keras.saving.load_model(run_dir / "model.keras")
    expected = keras.saving.load_model(full.run_dir / "model.keras")
    for weights, expected_weights in zip(best.get_weights(), expected.get_weights()):
        np.testing.assert_array_equal(weights, expected_weights)


def test_with_a_moving_average_validation_and_the_best_model_use_the_averages(tmp_path):
    recorder = RecordWeights()
    result = training.train(
        tiny_settings(tmp_path / "ema", ema_momentum=0.8), tiny_dataset(), callbacks=[recorder]
    )
    epoch = result.best_epoch - 1
    best = keras.saving.load_model(result.run_dir / "model.keras")
    assert best.optimizer.use_ema and best.optimizer.ema_momentum == pytest.approx(0.8)
    # The averages of the epoch it was saved at, while training went on
    # from the trained weights, which differ.
    for saved, average in zip(values(best.trainable_variables), recorder.averages[epoch]):
        np.testing.assert_array_equal(saved, average)
    assert not all(
        np.allclose(trained, average)
        for trained, average in zip(recorder.trained[epoch], recorder.averages[epoch])
    )
    # The final model holds the last epoch's averages, as Keras' fit leaves it.
    for final, average in zip(recorder.final, recorder.averages[TINY["epochs"] - 1]):
        np.testing.assert_array_equal(final, average)
    row = RunDirectory(result.run_dir).read_history()[epoch]
    images, labels = training.validation_data(tiny_dataset(), num_replicas=1)
    loss, accuracy = best.evaluate(images, labels, batch_size=TINY["batch_size"], verbose=0)
    assert (loss, accuracy) == pytest.approx((row["val_loss"], row["val_accuracy"]), rel=1e-5)
    for variable, trained in zip(best.trainable_variables, recorder.trained[epoch]):
        variable.assign(trained)
    trained_loss, _ = best.evaluate(images, labels, batch_size=TINY["batch_size"], verbose=0)
    # Ten times the tolerance the averages reproduced the row with.
    assert trained_loss != pytest.approx(row["val_loss"], rel=1e-4)


def run_training_script(script, backend=None, **environment):
    """Runs ``script`` in a fresh Python process on ``backend`` (default: this one)."""
    return subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "KERAS_BACKEND": backend or keras.backend.backend(), **environment},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_killed_subprocess_resumes_to_the_uninterrupted_result(tmp_path, finished_run):
    run_dir = tmp_path / "killed"
    script = textwrap.dedent(
        f"""
        import signal, sys
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]
        from stn_keras import training
        from test_training import SendSignalMidEpoch, tiny_settings
        from tiny_data import tiny_dataset
        training.train(tiny_settings({str(run_dir)!r}), tiny_dataset(),
                       callbacks=[SendSignalMidEpoch(signal.SIGKILL)])
        """
    )
    completed = run_training_script(script)
    assert completed.returncode == -signal.SIGKILL, completed.stderr[-2000:]
    assert backed_up_epoch(run_dir) == 2
    with pytest.raises(ValueError, match="already holds a run. Pass --resume"):
        training.train(tiny_settings(run_dir), tiny_dataset())
    training.train(tiny_settings(run_dir, resume=True), tiny_dataset())
    assert (run_dir / "history.csv").read_text() == (
        finished_run.run_dir / "history.csv"
    ).read_text()
    full = keras.saving.load_model(finished_run.run_dir / "model.keras")
    resumed = keras.saving.load_model(run_dir / "model.keras")
    for expected, actual in zip(full.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(expected, actual)


def test_nothing_to_resume(tmp_path, finished_run):
    with pytest.raises(ValueError, match="Nothing to resume"):
        training.train(tiny_settings(finished_run.run_dir, resume=True), tiny_dataset())


def test_train_takes_resolved_settings_only(tmp_path):
    with pytest.raises(TypeError, match="`settings` must be a RunSettings: resolve them first"):
        training.train({**TINY, "output_dir": str(tmp_path / "run")}, tiny_dataset())
    assert not (tmp_path / "run").exists()


def test_the_best_model_is_exported_as_a_step_of_its_own(tmp_path, finished_run, caplog):
    run_dir = shutil.copytree(finished_run.run_dir, tmp_path / "run")
    on_tensorflow = keras.backend.backend() == "tensorflow"
    with caplog.at_level("INFO"):
        assert export_best_model(run_dir) == on_tensorflow
    assert (run_dir / "saved_model" / "saved_model.pb").exists() == on_tensorflow
    if not on_tensorflow:
        assert "No saved_model/ written: SavedModel export needs the TensorFlow backend" in caplog.text


def test_schedules_and_optimizers():
    settings = resolve_settings(
        {"lr_schedule": "step", "lr_decay_steps": 10, "learning_rate": 0.5}
    )
    optimizer = training.make_optimizer(settings, steps_per_epoch=5)
    schedule = optimizer._learning_rate
    assert float(schedule(9)) == pytest.approx(0.5)
    assert float(schedule(10)) == pytest.approx(0.05)
    assert float(schedule(25)) == pytest.approx(0.005)
    cosine = training.make_optimizer(
        resolve_settings(
            {"lr_schedule": "cosine", "epochs": 2, "optimizer": "adam", "learning_rate": 0.01}
        ),
        steps_per_epoch=5,
    )
    assert isinstance(cosine, keras.optimizers.Adam)
    assert float(cosine._learning_rate(5)) == pytest.approx(0.005)
    assert float(cosine._learning_rate(10)) == pytest.approx(0.0, abs=1e-9)
    rmsprop = training.make_optimizer(
        resolve_settings({"optimizer": "rmsprop"}), steps_per_epoch=1
    )
    assert isinstance(rmsprop, keras.optimizers.RMSprop)


def test_weight_decay_shrinks_kernels_and_leaves_biases_alone():
    settings = resolve_settings(
        {"optimizer": "adam", "learning_rate": 0.1, "weight_decay": 0.5}
    )
    model = models.build_model("st_cnn", (28, 28, 1), 10)
    optimizer = training.make_optimizer(settings, steps_per_epoch=1, model=model)
    before = {variable.path: np.array(variable.numpy()) for variable in model.trainable_variables}
    # Zero gradients: Adam's own step is 0, so only the decay moves anything.
    optimizer.apply(
        [keras.ops.zeros(variable.shape) for variable in model.trainable_variables],
        model.trainable_variables,
    )
    for variable in model.trainable_variables:
        value = variable.numpy()
        if len(variable.shape) <= 1:
            np.testing.assert_array_equal(value, before[variable.path], err_msg=variable.path)
        else:  # decoupled: w <- w - learning_rate * weight_decay * w
            np.testing.assert_allclose(value, before[variable.path] * 0.95, rtol=1e-5, atol=1e-7)
    theta_bias = next(v for v in model.trainable_variables if v.path == "transformer/regression/bias")
    np.testing.assert_array_equal(theta_bias.numpy(), [1, 0, 0, 0, 1, 0])


def test_weight_decay_spares_a_frozen_localisation_net_and_needs_the_model():
    settings = resolve_settings(
        {"optimizer": "adam", "learning_rate": 0.1, "weight_decay": 0.5}
    )
    model = models.build_model(
        "st_cnn", (28, 28, 1), 10, localization_learning_rate_multiplier=0.0
    )
    optimizer = training.make_optimizer(settings, steps_per_epoch=1, model=model)
    localization = [v for v in model.trainable_variables if v.path.startswith("transformer/")]
    before = [np.array(variable.numpy()) for variable in localization]
    conv_1 = next(v for v in model.trainable_variables if v.path == "conv_1/kernel")
    conv_1_before = np.array(conv_1.numpy())
    optimizer.apply(
        [keras.ops.zeros(variable.shape) for variable in model.trainable_variables],
        model.trainable_variables,
    )
    for variable, value in zip(localization, before):
        np.testing.assert_array_equal(variable.numpy(), value, err_msg=variable.path)
    # The classifier still decays: w <- w - 0.1 * 0.5 * w.
    np.testing.assert_allclose(conv_1.numpy(), conv_1_before * 0.95, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="needs the model when `weight_decay` is set"):
        training.make_optimizer(settings, steps_per_epoch=1)


def test_without_weight_decay_no_variable_decays():
    optimizer = training.make_optimizer(resolve_settings({}), steps_per_epoch=1)
    assert optimizer.weight_decay is None


def test_label_smoothing_compiles_the_smoothed_loss_and_its_model_reloads(tmp_path, finished_run):
    result = training.train(
        tiny_settings(tmp_path / "smoothed", epochs=1, label_smoothing=0.2), tiny_dataset()
    )
    model = keras.saving.load_model(result.run_dir / "model.keras")
    assert isinstance(model.loss, SmoothedSparseCategoricalCrossentropy)
    assert model.loss.label_smoothing == 0.2
    # Unsmoothed runs compile the same string as before label smoothing.
    assert keras.saving.load_model(finished_run.run_dir / "model.keras").loss == (
        "sparse_categorical_crossentropy"
    )


def test_augmented_training_batches_are_new_every_epoch_and_resume_exactly():
    dataset = tiny_dataset(train=8)
    settings = tiny_settings("unused", batch_size=8, epochs=2, augment=True)
    stream = training.training_batches(settings, dataset, first_epoch=0)
    plain = training.training_batches(tiny_settings("unused", batch_size=8, epochs=2), dataset, 0)
    # Same order (same seed), other pixels.
    np.testing.assert_array_equal(stream[0][1], plain[0][1])
    assert not np.allclose(stream[0][0], plain[0][0])
    resumed = training.training_batches(settings, dataset, first_epoch=1)
    np.testing.assert_array_equal(resumed[0][0], stream[1][0])


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
        from test_training import tiny_settings
        from tiny_data import tiny_dataset
        training.train(tiny_settings({str(run_dir)!r}, epochs=1, strategy="mirrored"),
                       tiny_dataset())
        """
    )
    completed = run_training_script(script, backend="tensorflow")
    assert completed.returncode == 0, completed.stderr[-3000:]
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["num_replicas"] == 2 and saved["strategy"] == "mirrored"
    assert len((run_dir / "history.csv").read_text().splitlines()) == 2


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="keras.distribution is JAX's")
def test_data_parallel_over_two_host_devices_matches_one_device(tmp_path):
    """Two replicas of each batch's halves give the single-device result."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]
        from stn_keras import training
        from test_training import tiny_settings
        from tiny_data import tiny_dataset
        for strategy in ("data_parallel", "default"):
            training.train(tiny_settings({str(tmp_path)!r} + "/" + strategy, epochs=2,
                                       strategy=strategy, tensorboard_images=3),
                           tiny_dataset(val=31))
        """
    )
    completed = run_training_script(
        script,
        XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2",
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    parallel = json.loads((tmp_path / "data_parallel" / "config.json").read_text())
    assert parallel["num_replicas"] == 2 and len(parallel["device"]["names"]) == 2
    rows = {
        strategy: np.loadtxt(tmp_path / strategy / "history.csv", delimiter=",", skiprows=1)
        for strategy in ("data_parallel", "default")
    }
    # Same batches (96 images split 16 a batch, none dropped), same maths up
    # to the order of the gradient all-reduce; 31 validation images are
    # padded to 32 with a weightless copy, so val_accuracy counts 31.
    np.testing.assert_allclose(rows["data_parallel"], rows["default"], rtol=1e-4, atol=1e-5)
    assert np.all(np.round(rows["default"][:, 3] * 31, 4) % 1 == 0)


def test_strategy_of_another_backend_is_refused(tmp_path):
    other = {"tensorflow": "data_parallel", "jax": "mirrored", "torch": "mirrored"}[
        keras.backend.backend()
    ]
    with pytest.raises(ValueError, match=f"Strategy '{other}' needs the .* backend"):
        training.train(tiny_settings(tmp_path / "run", strategy=other), tiny_dataset())
    assert not (tmp_path / "run").exists()


def test_batch_size_must_split_over_replicas(tmp_path, monkeypatch):
    monkeypatch.setattr(
        runtime,
        "make_distribution",
        lambda name: runtime.Distribution(name, 3, __import__("contextlib").nullcontext),
    )
    with pytest.raises(ValueError, match="`batch_size` must be a multiple of the 3 replicas"):
        training.train(tiny_settings(tmp_path / "run"), tiny_dataset())


def test_mixed_precision_and_jit_compile_train(tmp_path, dtype_policy):
    # torch's jit_compile is torch.compile: minutes on a CPU, not tested here.
    jit_compile = keras.backend.backend() != "torch"
    result = training.train(
        tiny_settings(
            tmp_path / "fast",
            epochs=1,
            mixed_precision="auto",
            jit_compile=jit_compile,
        ),
        tiny_dataset(),
    )
    saved = json.loads((result.run_dir / "config.json").read_text())
    assert saved["mixed_precision_policy"] == "mixed_bfloat16"  # auto on a CPU
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    dtype_policy("mixed_bfloat16")
    model = keras.saving.load_model(result.run_dir / "model.keras")
    assert model.get_layer("logits").compute_dtype == "bfloat16"
    dataset = tiny_dataset()
    images = dataset.x_val.astype("float32") / 255
    _, theta = models.transformer_model(model)([images[:2]])
    # The transformer's parameters (and so its grid) stay float32.
    assert keras.backend.standardize_dtype(theta.dtype) == "float32"
    # One epoch: the model written is the one whose accuracy is reported.
    predictions = model.predict(images, batch_size=TINY["batch_size"], verbose=0)
    accuracy = np.mean(np.argmax(predictions, axis=-1) == dataset.y_val)
    assert result.best_accuracy == pytest.approx(accuracy, abs=1e-6)


def test_training_goes_on_without_tensorboard(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(fit_callbacks, "tensorboard_available", lambda: False)
    with caplog.at_level("WARNING"):
        result = training.train(tiny_settings(tmp_path / "run", epochs=1), tiny_dataset())
    warnings = [record for record in caplog.records if "No TensorBoard logs" in record.message]
    assert len(warnings) == 1 and "needs TensorFlow" in warnings[0].message
    assert not (result.run_dir / "logs").exists()
    assert (result.run_dir / "model.keras").exists()


def test_tensorboard_gets_the_transformer_output_every_epoch(finished_run):
    pytest.importorskip("tensorboard")
    tf = pytest.importorskip("tensorflow")

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
    return training.train(tiny_settings(run_dir, **ONLINE), tiny_distorted_dataset())


def test_online_distortion_trains_on_fresh_images_every_epoch(online_run):
    saved = json.loads((online_run.run_dir / "config.json").read_text())
    assert saved["config"]["online_distortion"] is True
    assert len((online_run.run_dir / "history.csv").read_text().splitlines()) == 4
    dataset = tiny_distorted_dataset()
    settings = tiny_settings(online_run.run_dir, **ONLINE)
    epoch_0 = training.training_batches(settings, dataset, first_epoch=0)
    epoch_1 = training.training_batches(settings, dataset, first_epoch=1)
    assert epoch_0.steps_per_epoch == 2  # 32 images in batches of 16
    images_0, labels_0 = epoch_0[0]
    images_1, labels_1 = epoch_1[0]
    assert images_0.shape == (16, 42, 42, 1) == images_1.shape
    assert not np.array_equal(images_0, images_1)
    # Neither is the fixed distortion of the training split.
    fixed = dataset.x_train.astype("float32") / 255.0
    assert not any(np.array_equal(image, fixed_image) for image in images_0 for fixed_image in fixed)


def test_online_distortion_needs_a_distorted_dataset(tmp_path):
    with pytest.raises(ValueError, match="data set 'tiny' has none. Set `distortion`"):
        training.train(tiny_settings(tmp_path / "plain", **ONLINE), tiny_dataset())
    assert not (tmp_path / "plain").exists()


def test_online_distortion_resumes_to_the_uninterrupted_result(tmp_path, online_run):
    run_dir = tmp_path / "interrupted"
    with pytest.raises(training.TrainingInterrupted):
        training.train(
            tiny_settings(run_dir, **ONLINE),
            tiny_distorted_dataset(),
            callbacks=[SendSignalMidEpoch(signal.SIGTERM, epoch=1, batch=0)],
        )
    assert backed_up_epoch(run_dir) == 1
    training.train(tiny_settings(run_dir, resume=True, **ONLINE), tiny_distorted_dataset())
    assert (run_dir / "history.csv").read_text() == (
        online_run.run_dir / "history.csv"
    ).read_text()


def test_early_stopping_without_a_validation_split_is_refused_before_anything_is_written(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(ValueError, match=r"no validation split\. Set val_size above 0 .*"
                       r"early_stopping_patience=2"):
        training.train(tiny_settings(run_dir, early_stopping_patience=2), tiny_dataset(val=0))
    assert not run_dir.exists() or not any(run_dir.iterdir())


def test_without_a_validation_split_the_run_keeps_its_last_epoch(tmp_path):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        last_epoch = LastEpochWeights()
        result = training.train(
            tiny_settings(tmp_path / "run", epochs=2, model="cnn", mixed_precision="off"),
            tiny_dataset(val=0),
            callbacks=[last_epoch],
        )
        # The caller's policy comes back, whatever the run used.
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    finally:
        keras.mixed_precision.set_global_policy("float32")
    rows = RunDirectory(result.run_dir).read_history()
    assert [row["val_accuracy"] for row in rows] == [None, None]  # Keras writes NA
    assert result.monitor is None and result.best_epoch == 2
    assert result.best_accuracy == pytest.approx(rows[-1]["accuracy"])
    assert "kept the last epoch (2)" in result.summary()
    assert "val_accuracy" not in result.summary()
    kept = keras.saving.load_model(result.run_dir / "model.keras")
    for kept_weights, last_weights in zip(kept.get_weights(), last_epoch.weights, strict=True):
        np.testing.assert_array_equal(kept_weights, last_weights)
    assert json.loads((result.run_dir / "config.json").read_text())["finished"] is True


class PoisonWeightsMidEpoch(keras.callbacks.Callback):
    """Sets the model's weights to NaN at the start of epoch ``epoch`` (0-based)."""

    def __init__(self, epoch=1):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            for variable in self.model.trainable_variables:
                variable.assign(np.full(variable.shape, np.nan, "float32"))


def test_a_non_finite_loss_fails_the_run_without_recording_or_exporting_it(tmp_path):
    run_dir = tmp_path / "nan"
    with pytest.raises(training.TrainingFailed) as failure:
        training.train(tiny_settings(run_dir), tiny_dataset(), callbacks=[PoisonWeightsMidEpoch()])
    reason = "the training loss became nan in epoch 2"
    assert str(failure.value) == (
        f"Training failed: {reason}. The run in '{run_dir}' is recorded as failed in its "
        "config.json and was not exported. Start it afresh in another --output-dir, for "
        "example with a lower --learning-rate."
    )
    record = json.loads((run_dir / "config.json").read_text())
    assert record["finished"] is False and record["failure"] == reason
    assert not (run_dir / "saved_model").exists()
    assert len((run_dir / "history.csv").read_text().splitlines()) == 2  # epoch 1 only
    assert backed_up_epoch(run_dir) == 1
    assert not RunDirectory(run_dir).is_finished()
    with pytest.raises(ValueError, match=re.escape(f"The run in '{run_dir}' failed ({reason})")):
        training.train(tiny_settings(run_dir, resume=True), tiny_dataset())


def test_a_damaged_newest_backup_resumes_from_the_previous_one_to_the_same_result(
    tmp_path, interrupted_run, finished_run, caplog
):
    run_dir = shutil.copytree(interrupted_run, tmp_path / "run")
    newest = run_dir / "backup" / "epoch-00002.weights.h5"
    data = bytearray(newest.read_bytes())
    data[-4096:] = bytes(255 - byte for byte in data[-4096:])
    newest.write_bytes(bytes(data))
    with caplog.at_level("WARNING"):
        training.train(tiny_settings(run_dir, resume=True), tiny_dataset())
    assert f"Refusing a backup: '{newest}' is damaged" in caplog.text
    assert (run_dir / "history.csv").read_text() == (finished_run.run_dir / "history.csv").read_text()
    full = keras.saving.load_model(finished_run.run_dir / "model.keras")
    resumed = keras.saving.load_model(run_dir / "model.keras")
    for expected, actual in zip(full.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(expected, actual)


def _set_newest_epoch(run_dir, epoch):
    path = run_dir / "backup" / "state.json"
    state = json.loads(path.read_text())
    state["backups"][0]["epoch"] = epoch
    path.write_text(json.dumps(state))


def _drop_a_history_row(run_dir):
    path = run_dir / "history.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:1] + lines[2:]))


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda run_dir: _set_newest_epoch(run_dir, 99),
            "'{run}/backup/state.json' says 99 epochs are finished, but the run has 4 "
            "(its config.json): the backup does not belong to this run. Start the run "
            "afresh in another --output-dir.",
        ),
        (
            _drop_a_history_row,
            "'{run}/history.csv' does not match the backup, which holds 2 finished epoch(s): "
            "its rows are of epochs [1]. The run cannot be resumed; start it afresh in "
            "another --output-dir.",
        ),
        (
            lambda run_dir: (run_dir / "backup" / "state.json").write_text("{not json"),
            "The backup index '{run}/backup/state.json' is damaged (JSONDecodeError: ",
        ),
        (
            lambda run_dir: (run_dir / "config.json").write_text("{not json"),
            "'{run}/config.json' is not valid JSON (",
        ),
    ],
    ids=["epoch beyond the run", "history row missing", "state not JSON", "config not JSON"],
)
def test_a_backup_that_disagrees_with_the_run_is_refused_naming_the_file(
    tmp_path, interrupted_run, damage, message
):
    run_dir = shutil.copytree(interrupted_run, tmp_path / "run")
    damage(run_dir)
    history = (run_dir / "history.csv").read_text()
    with pytest.raises(ValueError) as error:
        training.train(tiny_settings(run_dir, resume=True), tiny_dataset())
    assert str(error.value).startswith(message.format(run=run_dir)), str(error.value)
    assert (run_dir / "history.csv").read_text() == history
