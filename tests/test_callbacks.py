"""Training callbacks: verified backups, the atomically replaced best model,
resumable early stopping, the non-finite loss stop."""

import hashlib
import json
import re
from pathlib import Path

import keras
import numpy as np
import pytest

from stn_keras.callbacks import AtomicBackupAndRestore
from stn_keras.callbacks import BackupError
from stn_keras.callbacks import BestModelCheckpoint
from stn_keras.callbacks import NonFiniteLossError
from stn_keras.callbacks import StopOnNonFiniteLoss
from stn_keras.callbacks import ResumableEarlyStopping
from stn_keras.callbacks import ValidateOnAveragedWeights


def small_model(value):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="dense")])
    model.set_weights([np.full((2, 1), value, "float32"), np.zeros(1, "float32")])
    return model


def saved_value(path):
    return float(keras.saving.load_model(path).get_layer("dense").get_weights()[0][0, 0])


def test_keeps_the_best_epoch_only(tmp_path):
    path = tmp_path / "model.keras"
    model = small_model(0.0)
    checkpoint = BestModelCheckpoint(path, monitor="val_accuracy")
    checkpoint.set_model(model)
    for epoch, (accuracy, weight) in enumerate([(0.5, 1.0), (0.7, 2.0), (0.6, 3.0), (0.7, 4.0)]):
        model.get_layer("dense").set_weights([np.full((2, 1), weight, "float32"), np.zeros(1)])
        checkpoint.on_epoch_end(epoch, {"val_accuracy": accuracy})
    assert saved_value(path) == 2.0  # 0.7 first reached at epoch 1; a tie does not replace
    assert [entry.name for entry in tmp_path.iterdir()] == ["model.keras"]


def test_without_a_monitor_every_epoch_replaces_the_model(tmp_path):
    path = tmp_path / "model.keras"
    model = small_model(0.0)
    checkpoint = BestModelCheckpoint(path, monitor=None)
    checkpoint.set_model(model)
    for epoch, (accuracy, weight) in enumerate([(0.9, 1.0), (0.5, 2.0)]):
        model.get_layer("dense").set_weights([np.full((2, 1), weight, "float32"), np.zeros(1)])
        checkpoint.on_epoch_end(epoch, {"accuracy": accuracy})
        # A worse training accuracy does not keep the earlier epoch.
        assert saved_value(path) == weight


def test_a_resumed_run_must_beat_its_earlier_best(tmp_path):
    path = tmp_path / "model.keras"
    checkpoint = BestModelCheckpoint(path, monitor="loss", mode="min", initial_value_threshold=0.2)
    checkpoint.set_model(small_model(1.0))
    checkpoint.on_epoch_end(0, {"loss": 0.3})
    assert not path.exists()
    checkpoint.on_epoch_end(1, {"loss": 0.1})
    assert saved_value(path) == 1.0


def test_an_interrupted_save_leaves_the_previous_best_whole(tmp_path, monkeypatch):
    path = tmp_path / "model.keras"
    model = small_model(1.0)
    checkpoint = BestModelCheckpoint(path)
    checkpoint.set_model(model)
    checkpoint.on_epoch_end(0, {"val_accuracy": 0.5})

    def killed_mid_write(target, *arguments, **options):
        with open(target, "wb") as file:
            file.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(model, "save", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.on_epoch_end(1, {"val_accuracy": 0.9})
    assert saved_value(path) == 1.0
    assert [entry.name for entry in tmp_path.iterdir()] == ["model.keras"]


@pytest.mark.parametrize("loss_scaled", [False, True], ids=["plain", "loss_scale_optimizer"])
def test_with_a_moving_average_the_best_model_holds_the_averages(tmp_path, loss_scaled):
    model = small_model(1.0)
    averaging = keras.optimizers.SGD(use_ema=True)
    # Mixed float16 wraps the averaging optimizer in a LossScaleOptimizer.
    model.compile(
        optimizer=keras.optimizers.LossScaleOptimizer(averaging) if loss_scaled else averaging,
        loss="mse",
    )
    model.optimizer.build(model.trainable_variables)
    for average in averaging._model_variables_moving_average:
        average.assign(np.full(average.shape, 5.0, "float32"))
    checkpoint = BestModelCheckpoint(tmp_path / "model.keras")
    checkpoint.set_model(model)
    checkpoint.on_epoch_end(0, {"val_accuracy": 0.5})
    assert saved_value(tmp_path / "model.keras") == 5.0
    # Training goes on from the trained weights; the averages are kept.
    np.testing.assert_array_equal(model.get_layer("dense").get_weights()[0], np.ones((2, 1)))
    for average in averaging._model_variables_moving_average:
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(average), 5.0)


def test_bad_mode_and_missing_metric_are_explained(tmp_path):
    with pytest.raises(ValueError, match="Unknown mode. Expected one of \\('max', 'min'\\)"):
        BestModelCheckpoint(tmp_path / "m.keras", mode="up")
    checkpoint = BestModelCheckpoint(tmp_path / "m.keras")
    checkpoint.set_model(small_model(0.0))
    with pytest.raises(ValueError, match="the epoch logs have no 'val_accuracy'"):
        checkpoint.on_epoch_end(0, {"accuracy": 0.5})


def stopping_epoch(callback, values, first_epoch=0):
    """The epoch at which ``callback`` stops a run seeing ``values`` (or None)."""
    callback.set_model(small_model(0.0))
    callback.on_train_begin()
    for epoch in range(first_epoch, len(values)):
        callback.model.stop_training = False
        callback.on_epoch_end(epoch, {"val_accuracy": values[epoch]})
        if callback.model.stop_training:
            return epoch
    return None


def test_early_stopping_resumed_mid_run_stops_where_the_whole_run_would():
    values = [0.5, 0.6, 0.55, 0.58, 0.57, 0.9]
    settings = {"monitor": "val_accuracy", "mode": "max", "patience": 3}
    whole = stopping_epoch(keras.callbacks.EarlyStopping(**settings), values)
    assert whole == 4
    rows = [{"epoch": epoch, "val_accuracy": value} for epoch, value in enumerate(values[:3])]
    resumed = stopping_epoch(ResumableEarlyStopping(rows, **settings), values, first_epoch=3)
    assert resumed == whole
    forgetful = stopping_epoch(keras.callbacks.EarlyStopping(**settings), values, first_epoch=3)
    assert forgetful is None  # Keras' own callback waits 3 epochs afresh


def backed_up_run(backup_dir, values=(1.0, 2.0, 3.0)):
    """Backs up one epoch per weight in ``values``; returns the compiled model."""
    model = small_model(0.0)
    model.compile(optimizer="sgd", loss="mse")
    backup = AtomicBackupAndRestore(backup_dir)
    backup.set_model(model)
    for epoch, value in enumerate(values):
        model.get_layer("dense").set_weights([np.full((2, 1), value, "float32"), np.zeros(1)])
        backup.on_epoch_end(epoch, {"loss": 0.5})
    return model


def resumed(backup_dir):
    """``(initial epoch, restored weight)`` of a fresh callback on ``backup_dir``."""
    model = small_model(0.0)
    model.compile(optimizer="sgd", loss="mse")
    backup = AtomicBackupAndRestore(backup_dir)
    backup.set_model(model)
    epoch = backup.initial_epoch()
    backup.on_train_begin()
    return epoch, float(model.get_layer("dense").get_weights()[0][0, 0])


def test_backups_record_their_checksums_and_the_last_two_are_kept(tmp_path):
    backed_up_run(tmp_path)
    state = json.loads((tmp_path / "state.json").read_text())
    assert [entry["epoch"] for entry in state["backups"]] == [3, 2]
    for entry in state["backups"]:
        digest = hashlib.sha256((tmp_path / entry["weights"]).read_bytes()).hexdigest()
        assert entry["sha256"] == digest
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "epoch-00002.weights.h5", "epoch-00003.weights.h5", "state.json"
    ]
    assert resumed(tmp_path) == (3, 3.0)


def _flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(255 - byte for byte in data[len(data) // 2 : len(data) // 2 + 64])
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[:100])


def _empty(path):
    path.write_bytes(b"")


@pytest.mark.parametrize("damage", [_flip, _truncate, _empty, Path.unlink])
def test_a_damaged_backup_is_refused_and_the_previous_one_used(tmp_path, damage, caplog):
    backed_up_run(tmp_path)
    newest = tmp_path / "epoch-00003.weights.h5"
    damage(newest)
    with caplog.at_level("WARNING"):
        assert resumed(tmp_path) == (2, 2.0)
    assert f"Refusing a backup: '{newest}' is" in caplog.text
    assert f"Resuming from the previous one instead, epoch 2 ('{tmp_path / 'epoch-00002.weights.h5'}')" in caplog.text
    assert caplog.text.count("Refusing a backup") == 1


def test_when_no_backup_is_whole_the_error_names_every_file(tmp_path):
    backed_up_run(tmp_path)
    _flip(tmp_path / "epoch-00003.weights.h5")
    _empty(tmp_path / "epoch-00002.weights.h5")
    with pytest.raises(BackupError) as error:
        resumed(tmp_path)
    assert str(error.value) == (
        f"No backup in '{tmp_path}' can be trusted: '{tmp_path / 'epoch-00003.weights.h5'}' is "
        "damaged (its sha256 differs from the one recorded in state.json: truncated or altered); "
        f"'{tmp_path / 'epoch-00002.weights.h5'}' is empty. Start the run afresh in another "
        "--output-dir."
    )


@pytest.mark.parametrize("text", ['{"backups": [{"epoch": 3', '{"backups": [{"epoch": 3}]}', "[]"])
def test_a_damaged_backup_index_is_named(tmp_path, text):
    backed_up_run(tmp_path)
    (tmp_path / "state.json").write_text(text)
    with pytest.raises(BackupError, match=re.escape(f"The backup index '{tmp_path / 'state.json'}' is damaged (")):
        resumed(tmp_path)


def test_a_backup_from_before_checksums_resumes_unverified(tmp_path, caplog):
    backed_up_run(tmp_path)
    entry = json.loads((tmp_path / "state.json").read_text())["backups"][0]
    del entry["sha256"]
    (tmp_path / "state.json").write_text(json.dumps(entry))
    with caplog.at_level("WARNING"):
        assert resumed(tmp_path) == (3, 3.0)
    assert "predates backup checksums: resuming from it unverified" in caplog.text


@pytest.mark.parametrize("loss", [float("nan"), float("inf")])
def test_a_non_finite_epoch_loss_stops_the_run(loss):
    callback = StopOnNonFiniteLoss()
    callback.on_epoch_end(0, {"loss": 0.3})
    with pytest.raises(NonFiniteLossError, match=f"^the training loss became {loss} in epoch 2$"):
        callback.on_epoch_end(1, {"loss": np.float32(loss)})


@pytest.mark.parametrize("use_ema", [True, False], ids=["averaging", "plain"])
def test_validation_runs_on_the_averages_and_gives_the_trained_weights_back_exactly(use_ema):
    model = small_model(1.0)
    optimizer = keras.optimizers.SGD(use_ema=use_ema)
    model.compile(optimizer=optimizer, loss="mse")
    optimizer.build(model.trainable_variables)
    # Values an add-and-subtract swap does not give back exactly in float32.
    trained = [np.full(variable.shape, 1e-3, "float32") for variable in model.trainable_variables]
    for variable, value in zip(model.trainable_variables, trained):
        variable.assign(value)
    for average in getattr(optimizer, "_model_variables_moving_average", []):
        average.assign(np.full(average.shape, 12345.678, "float32"))
    callback = ValidateOnAveragedWeights()
    callback.set_model(model)
    callback.on_test_begin()
    during = 12345.678 if use_ema else 1e-3
    for variable in model.trainable_variables:
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(variable), np.full(variable.shape, during, "float32")
        )
    callback.on_test_end()
    for variable, value in zip(model.trainable_variables, trained):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), value)
    # A second validation averages again, from the same untouched averages.
    callback.on_test_begin()
    callback.on_test_end()
    for variable, value in zip(model.trainable_variables, trained):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), value)
