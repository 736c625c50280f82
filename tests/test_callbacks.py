"""Training callbacks: the atomically replaced best model."""

import keras
import numpy as np
import pytest

from stn_keras.callbacks import BestModelCheckpoint
from stn_keras.callbacks import ResumableEarlyStopping


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
