"""`StopOnNonFiniteLoss`: a run whose loss is NaN or infinite stops, failed."""

import math

import keras


class NonFiniteLossError(RuntimeError):
    """Raised by `StopOnNonFiniteLoss`: the message says where the loss broke."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops ``fit`` with `NonFiniteLossError` when an epoch's loss is not finite.

    Unlike ``keras.callbacks.TerminateOnNaN``, which ends ``fit`` as if it
    had finished, this raises, so the epoch's end is never recorded: put it
    first among the callbacks, and no history row, best model or backup of
    the broken epoch is written. The epoch's loss is the mean over its
    batches, which one NaN or infinite batch makes non-finite; checking it
    once per epoch costs no per-batch device synchronisation.

    Args:
        monitor: the epoch log to check (``"loss"``).
    """

    def __init__(self, monitor="loss"):
        super().__init__()
        self.monitor = monitor

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and not math.isfinite(float(value)):
            raise NonFiniteLossError(
                f"the training {self.monitor} became {float(value)} in epoch "
                f"{epoch + 1}"
            )
