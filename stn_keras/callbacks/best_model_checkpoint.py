"""`BestModelCheckpoint`: the best model so far, replaced atomically."""

from pathlib import Path

import keras

from stn_keras.callbacks.validate_on_averaged_weights import averaged_weights
from stn_keras.files import write_file_atomically
from stn_keras.validation import check_choice


class BestModelCheckpoint(keras.callbacks.Callback):
    """Saves the whole model when a monitored metric improves, atomically.

    Does what ``keras.callbacks.ModelCheckpoint(save_best_only=True)`` does
    for a ``.keras`` file, but writes it beside the target and renames it
    into place, so a kill during the save leaves the previous best model
    whole instead of a truncated zip. When the optimizer keeps a moving
    average of the weights (``use_ema``), the model is saved with the
    averages (see :func:`averaged_weights`).

    Args:
        path: the ``.keras`` file to keep the best model in.
        monitor: the metric of the epoch logs to maximise (or minimise), or
            ``None`` to keep the last epoch's model (for a run without a
            validation split: choosing among epochs on training metrics
            would choose on the data the model was fitted to).
        mode: ``"max"`` or ``"min"``.
        initial_value_threshold: the value to beat (a resumed run's best),
            or ``None``.
    """

    def __init__(self, path, monitor="val_accuracy", mode="max", initial_value_threshold=None):
        super().__init__()
        self.mode = check_choice("mode", mode, ("max", "min"))
        self.path = Path(path)
        self.monitor = monitor
        self.best = initial_value_threshold

    def _improves(self, value):
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor is not None:
            value = (logs or {}).get(self.monitor)
            if value is None:
                raise ValueError(
                    f"Cannot keep the best model: the epoch logs have no "
                    f"{self.monitor!r}. Received logs with: {sorted(logs or {})}"
                )
            if not self._improves(float(value)):
                return
            self.best = float(value)
        with averaged_weights(self.model):
            write_file_atomically(self.path, self.model.save)
