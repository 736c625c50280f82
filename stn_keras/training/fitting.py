"""`train`: build, compile and fit the model of a planned run."""

import dataclasses
import logging
import time

import keras

from stn_keras import models
from stn_keras import runtime
from stn_keras.losses import SmoothedSparseCategoricalCrossentropy
from stn_keras.run_dir import best_epoch
from stn_keras.settings import resolve_verbose
from stn_keras.training.fit_callbacks import make_callbacks
from stn_keras.training.inputs import validation_data
from stn_keras.training.interruption import TrainingInterrupted
from stn_keras.training.interruption import interrupted_by_signals
from stn_keras.training.optimizers import make_optimizer
from stn_keras.training.planning import plan_run
from stn_keras.training.recording import recorded_run

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainingResult:
    """What :func:`train` returns: the run directory and its headline numbers.

    ``best_accuracy`` is the validation accuracy of the kept model's epoch
    (the best one), or, for a data set without a validation split
    (``monitor=None``), the training accuracy of the last epoch, whose model
    is kept.
    """

    run_dir: object
    best_accuracy: float
    best_epoch: int
    epochs_run: int
    wall_time_s: float
    images_per_second: float
    num_parameters: int
    device: str
    monitor: str | None = "val_accuracy"

    def summary(self):
        kept = (
            f"best {self.monitor} {self.best_accuracy:.4f} at epoch {self.best_epoch}"
            if self.monitor is not None
            else f"no validation split: kept the last epoch ({self.best_epoch}), "
            f"training accuracy {self.best_accuracy:.4f}"
        )
        return (
            f"{kept}, {self.epochs_run} epochs, "
            f"{self.wall_time_s:.1f} s, {self.images_per_second:.0f} images/s, "
            f"{self.num_parameters} parameters, on {self.device}, run dir "
            f"{self.run_dir}"
        )


def build_configured_model(settings, image_shape, num_classes):
    """Builds the model that ``settings`` describe, for images of ``image_shape``."""
    return models.build_model(
        settings.model,
        image_shape,
        num_classes,
        transform=settings.transform,
        localization_convolution=settings.localization_convolution,
        localization_activation=settings.localization_activation,
        **settings.model_options,
    )


def training_loss(settings):
    """The loss that ``settings`` describe, for integer labels."""
    if settings.label_smoothing:
        return SmoothedSparseCategoricalCrossentropy(settings.label_smoothing)
    # Unsmoothed, the loss stays the string that runs before label smoothing
    # compiled with, so their saved models read the same.
    return "sparse_categorical_crossentropy"


def compile_and_fit(plan, callbacks=None):
    """Builds, compiles and fits the model of ``plan``; returns it and its history.

    The run's ``config.json`` is written as it starts and marked finished
    (or failed) as it ends (`stn_keras.training.recording.recorded_run`).
    """
    settings, dataset = plan.settings, plan.dataset
    with plan.distribution.scope():
        model = build_configured_model(settings, dataset.image_shape, dataset.num_classes)
        model.compile(
            optimizer=make_optimizer(settings, plan.train_data.steps_per_epoch, model),
            loss=training_loss(settings),
            # Weighted, so padding that evens out data-parallel validation
            # batches (weight 0) does not count.
            weighted_metrics=["accuracy"],
            jit_compile=settings.jit_compile,
        )
        with recorded_run(plan, model), interrupted_by_signals():
            history = model.fit(
                plan.train_data,
                epochs=settings.epochs,
                initial_epoch=plan.first_epoch,
                steps_per_epoch=plan.train_data.steps_per_epoch,
                validation_data=validation_data(dataset, plan.distribution.num_replicas),
                validation_batch_size=settings.batch_size,
                callbacks=make_callbacks(plan, model, callbacks),
                verbose=resolve_verbose(settings.verbose),
                # The sequence orders its own batches; Keras' shuffle would
                # reorder them with Python's global RNG, which a resumed run
                # cannot replay.
                shuffle=False,
            )
    return model, history


def train(settings, dataset=None, callbacks=None):
    """Trains the model of ``settings`` on the active backend; writes the run dir.

    Exporting is a step of its own: `stn_keras.export.export_best_model`
    (``train.py`` runs it unless given ``--no-export``).

    Args:
        settings: a `stn_keras.settings.RunSettings`, from
            `stn_keras.settings.resolve_settings` (a resumed run's are those
            it was started with).
        dataset: the loaded data set; ``None`` loads the one ``settings``
            describe.
        callbacks: extra Keras callbacks, run after the built-in ones.

    Returns:
        A :class:`TrainingResult`.

    Raises:
        ValueError: a run directory that cannot be written or already holds
            a run, or settings this backend or data set cannot run.
        TrainingInterrupted: on SIGINT/SIGTERM; the last finished epoch
            stays in ``backup/`` and ``resume=True`` continues from it.
        TrainingFailed: the loss became NaN or infinite; ``config.json``
            records the failure and ``backup/`` keeps the last finished
            epoch.
    """
    plan = plan_run(settings, dataset)
    logger.info("Training on %s, policy %s", plan.devices.describe(), plan.policy)
    print(f"Device: {plan.devices.describe()}", flush=True)
    runtime.set_random_seed(settings.seed)
    previous_policy = keras.config.dtype_policy()
    keras.mixed_precision.set_global_policy(plan.policy)
    start = time.perf_counter()
    try:
        model, history = compile_and_fit(plan, callbacks)
    except TrainingInterrupted:
        logger.warning(
            "Training interrupted; %d finished epoch(s) are backed up in '%s'. "
            "Continue with: python train.py --output-dir %s --resume",
            plan.backup.backed_up_epochs,
            plan.run_dir.backup_path,
            plan.run_dir.path,
        )
        raise
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    wall_time = time.perf_counter() - start
    rows = plan.history_rows + [
        {"epoch": epoch, **{key: values[index] for key, values in history.history.items()}}
        for index, epoch in enumerate(history.epoch)
    ]
    best, best_epoch_number = best_epoch(rows, plan.monitor)
    return TrainingResult(
        run_dir=plan.run_dir.path,
        best_accuracy=best,
        best_epoch=best_epoch_number,
        epochs_run=plan.first_epoch + len(history.epoch),
        wall_time_s=wall_time,
        images_per_second=len(plan.train_data.x) * len(history.epoch) / max(wall_time, 1e-9),
        num_parameters=model.count_params(),
        device=plan.devices.describe(),
        monitor=plan.monitor,
    )
