"""`BestModelCheckpoint`: the best model so far, replaced atomically."""

import contextlib
from pathlib import Path

import keras

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
        monitor: the metric of the epoch logs to maximise (or minimise).
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


def _averaging_optimizer(model):
    """``model``'s optimizer if it averages the weights (``use_ema``), else ``None``."""
    # Mixed float16 wraps the optimizer in a LossScaleOptimizer.
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    return optimizer if getattr(optimizer, "use_ema", False) else None


@contextlib.contextmanager
def averaged_weights(model):
    """Within the context, ``model`` holds its optimizer's averages of its weights.

    What ``fit`` does to the model at its end (``finalize_variable_values``),
    undone on leaving: the trained weights come back, and the optimizer's
    averages are left as they were, so training goes on from the weights
    it reached. Without a moving average, nothing changes.
    """
    optimizer = _averaging_optimizer(model)
    if optimizer is None:
        yield
        return
    variables = model.trainable_variables
    # Copies: a TensorFlow or torch variable's value is assigned in place.
    trained = [keras.ops.convert_to_numpy(variable) for variable in variables]
    optimizer.finalize_variable_values(variables)
    try:
        yield
    finally:
        for variable, value in zip(variables, trained):
            variable.assign(value)
