"""`ValidateOnAveragedWeights` and `averaged_weights`: the optimizer's weight
average (``use_ema``) put in the model for a while, then taken out exactly."""

import contextlib

import keras


def _averaging_optimizer(model):
    """``model``'s optimizer if it averages the weights (``use_ema``), else ``None``."""
    # Mixed float16 wraps the optimizer in a LossScaleOptimizer, which
    # reports use_ema=False whatever the optimizer inside does.
    # An uncompiled model (a checkpoint of one is allowed) has no optimizer.
    optimizer = getattr(model, "optimizer", None)
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    return optimizer if getattr(optimizer, "use_ema", False) else None


@contextlib.contextmanager
def averaged_weights(model):
    """Within the context, ``model`` holds its optimizer's averages of its weights.

    What ``fit`` does to the model at its end (``finalize_variable_values``),
    undone on leaving: the trained weights come back bit for bit, and the
    optimizer's averages are left as they were, so training goes on from the
    weights it reached. Without a moving average, nothing changes.
    """
    optimizer = _averaging_optimizer(model)
    if optimizer is None:
        yield
        return
    variables = model.trainable_variables
    # Copies: a TensorFlow or torch variable's value is assigned in place.
    trained = [keras.ops.convert_to_numpy(variable) for variable in variables]
    optimizer.finalize_variable_values(variables)
    # On JAX each variable now shares its array with its average, and a
    # step that donates its inputs (the jitted test step does) would delete
    # the average with it: each variable gets an array of its own.
    for variable in variables:
        variable.assign(keras.ops.convert_to_numpy(variable))
    try:
        yield
    finally:
        for variable, value in zip(variables, trained):
            variable.assign(value)


class ValidateOnAveragedWeights(keras.callbacks.Callback):
    """Runs each validation on the optimizer's weight average (``use_ema``).

    Like ``keras.callbacks.SwapEMAWeights()``, but the trained weights are
    copied out and assigned back rather than swapped by adding and
    subtracting in place, which on TensorFlow leaves them rounded after
    every validation. Between validations the model holds the trained
    weights, so the callbacks of ``on_epoch_end`` (the backup among them)
    see those; a model without a moving average is left alone.
    """

    def __init__(self):
        super().__init__()
        self._validation = contextlib.ExitStack()

    def on_test_begin(self, logs=None):
        self._validation.enter_context(averaged_weights(self.model))

    def on_test_end(self, logs=None):
        self._validation.close()
