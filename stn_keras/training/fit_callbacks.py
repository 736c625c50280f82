"""The callbacks of a run's ``model.fit``, in the order that keeps it resumable."""

import logging

import keras

from stn_keras import models
from stn_keras import runtime
from stn_keras.callbacks import BestModelCheckpoint
from stn_keras.callbacks import ResumableEarlyStopping
from stn_keras.callbacks import StopOnNonFiniteLoss
from stn_keras.callbacks import TransformerImages
from stn_keras.callbacks import ValidateOnAveragedWeights
from stn_keras.callbacks import tensorboard_available
from stn_keras.data import as_float_images
from stn_keras.run_dir import best_epoch

logger = logging.getLogger(__name__)


def make_callbacks(plan, model, extra=None):
    """The callbacks of ``plan``'s run; the non-finite loss check first, the backup last.

    An epoch whose loss is not finite stops the run before anything records
    it. The backup commits last, so an epoch is either fully recorded
    (history row, best model, backup) or redone on resume.

    Args:
        plan: the run's `stn_keras.training.RunPlan`.
        model: the model being fitted.
        extra: further Keras callbacks, run after the built-in ones.
    """
    settings, run_dir = plan.settings, plan.run_dir
    callbacks = [
        StopOnNonFiniteLoss(),
        *_moving_average_callbacks(settings),
        BestModelCheckpoint(
            run_dir.model_path,
            monitor=plan.monitor,
            mode="max",
            initial_value_threshold=best_epoch(plan.history_rows, plan.monitor)[0],
        ),
        keras.callbacks.CSVLogger(run_dir.history_path, append=settings.resume),
        *_tensorboard_callbacks(plan, model),
    ]
    if settings.early_stopping_patience:
        callbacks.append(
            ResumableEarlyStopping(
                plan.history_rows,
                monitor=plan.monitor,
                mode="max",
                patience=settings.early_stopping_patience,
            )
        )
    return [*callbacks, *(extra or []), plan.backup]


def _moving_average_callbacks(settings):
    if settings.ema_momentum is None:
        return []
    # Validation (so the monitored accuracy) runs on the averaged weights;
    # the trained ones are back before on_epoch_end, so the backup keeps
    # them and BestModelCheckpoint puts the averages in for its save.
    return [ValidateOnAveragedWeights()]


def _tensorboard_callbacks(plan, model):
    if not tensorboard_available():
        logger.warning(
            "No TensorBoard logs: Keras' TensorBoard writer needs TensorFlow "
            "and the tensorboard package (pip install tensorflow \"stn_keras[tensorboard]\"). "
            "Training goes on without them."
        )
        return []
    runtime.import_tensorflow()
    logs_path = plan.run_dir.logs_path
    callbacks = [keras.callbacks.TensorBoard(logs_path)]
    images = plan.dataset.x_val[: plan.settings.tensorboard_images]
    if len(images) and models.spatial_transformer_layers(model):
        callbacks.append(TransformerImages(logs_path / "transformer", as_float_images(images)))
    return callbacks
