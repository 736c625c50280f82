"""Training behind ``train.py``: build, fit and export, on any Keras backend.

:func:`train` takes settings (see :mod:`stn_keras.config`), loads the data,
builds and compiles the configured model on the active backend's devices
and fits it, writing the run directory described in
:mod:`stn_keras.run_dir`. The input is a ``keras.utils.PyDataset`` whose
batches depend only on ``(seed, epoch)``, so a resumed run, on any backend,
sees exactly the batches the uninterrupted run would have.
"""

import dataclasses
import logging
import signal
import threading
import time

import keras
import numpy as np

from stn_keras import config as run_config
from stn_keras import models
from stn_keras import runtime
from stn_keras.callbacks import AtomicBackupAndRestore
from stn_keras.callbacks import BestModelCheckpoint
from stn_keras.callbacks import NonFiniteLossError
from stn_keras.callbacks import ResumableEarlyStopping
from stn_keras.callbacks import StopOnNonFiniteLoss
from stn_keras.callbacks import TransformerImages
from stn_keras.callbacks import tensorboard_available
from stn_keras.data import as_float_images
from stn_keras.data import make_pipeline
from stn_keras.run_dir import CLASS_NAMES_KEY
from stn_keras.run_dir import RunDirectory
from stn_keras.run_dir import best_epoch

logger = logging.getLogger(__name__)


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by the SIGINT/SIGTERM handler to stop ``model.fit`` at once."""


class TrainingFailed(RuntimeError):
    """Raised when training broke down (a non-finite loss): the run is
    recorded as failed in its ``config.json`` and not exported."""


def _raise_interrupted(signal_number, frame):
    raise TrainingInterrupted(signal.Signals(signal_number).name)


@dataclasses.dataclass(frozen=True)
class TrainingResult:
    """What :func:`train` returns: the run directory and its headline numbers.

    ``best_accuracy`` is the best value of ``monitor``: validation accuracy,
    or training accuracy for a data set without a validation split.
    """

    run_dir: object
    best_accuracy: float
    best_epoch: int
    epochs_run: int
    wall_time_s: float
    images_per_second: float
    num_parameters: int
    device: str
    saved_model_exported: bool
    monitor: str = "val_accuracy"

    def summary(self):
        return (
            f"best {self.monitor} {self.best_accuracy:.4f} at epoch "
            f"{self.best_epoch}, {self.epochs_run} epochs, "
            f"{self.wall_time_s:.1f} s, {self.images_per_second:.0f} images/s, "
            f"{self.num_parameters} parameters, on {self.device}, run dir "
            f"{self.run_dir}"
        )


def resolve_run_config(settings=None, config_path=None):
    """The validated configuration of a run, resumed runs included.

    With ``resume``, the settings are those the run in ``output_dir`` was
    started with; other explicit settings are ignored (said in a warning),
    except ``verbose``.
    """
    config = run_config.resolve_config(settings, config_path)
    if not config["resume"]:
        return config
    saved = RunDirectory(config["output_dir"]).read_config()
    resumed = run_config.complete_saved_config(
        {
            **saved,
            "output_dir": config["output_dir"],
            "resume": True,
            "verbose": config["verbose"],
        }
    )
    ignored = sorted(name for name in settings or {} if config[name] != resumed[name])
    if config_path is not None:
        ignored.append(f"--config {config_path}")
    if ignored:
        logger.warning(
            "Resuming with the run's saved settings; ignoring %s.", ignored
        )
    return resumed


def training_batches(config, dataset, first_epoch, num_replicas=1):
    """The training input of epochs ``first_epoch .. epochs - 1``.

    One ``BatchSequence`` holding those epochs end to end. With
    ``online_distortion``, fresh distortions of
    ``dataset.x_train_undistorted`` are drawn for every batch of every epoch;
    otherwise the fixed ``dataset.x_train`` is reshuffled every epoch. A
    batch depends only on ``(seed, epoch, batch index)``. With several
    replicas, each epoch's last batch is cut to split evenly over them.
    """
    online = config["online_distortion"]
    if online and dataset.distortion is None:
        raise ValueError(
            "`online_distortion` needs a distorted data set to draw fresh "
            f"distortions of; data set '{dataset.name}' has none. Set "
            "`distortion` (e.g. rts)."
        )
    return make_pipeline(
        dataset.x_train_undistorted if online else dataset.x_train,
        dataset.y_train_undistorted if online else dataset.y_train,
        config["batch_size"],
        shuffle=True,
        seed=config["seed"],
        distortion=dataset.distortion if online else None,
        num_classes=dataset.num_classes,
        distortion_parameters=dataset.distortion_parameters,
        augmentation=config["augmentation_options"] if config["augment"] else None,
        first_epoch=first_epoch,
        batch_multiple=num_replicas,
        num_epochs=max(config["epochs"] - first_epoch, 1),
    )


def make_optimizer(config, steps_per_epoch, model=None):
    """The configured optimizer with its learning-rate schedule.

    With ``weight_decay``, ``model`` is required: its variables of rank 0 or
    1 (biases, the transformer's identity bias) are excluded from the decay,
    as pulling them to zero would move the transformer away from the
    identity, and so are the transformers frozen by a
    ``localization_learning_rate_multiplier`` of 0.
    """
    optimizer = _optimizer(config, steps_per_epoch)
    if config["weight_decay"]:
        if model is None:
            raise ValueError(
                "`make_optimizer` needs the model when `weight_decay` is set, "
                "to spare its biases and frozen transformers. Received: "
                f"weight_decay={config['weight_decay']}, model=None"
            )
        optimizer.exclude_from_weight_decay(var_list=_undecayed_variables(model))
    return optimizer


def _undecayed_variables(model):
    frozen = [
        variable
        for layer in models.spatial_transformer_layers(model)
        if layer.localization_learning_rate_multiplier == 0
        for variable in layer.trainable_variables
    ]
    return frozen + [variable for variable in model.trainable_variables if len(variable.shape) <= 1]


def _optimizer(config, steps_per_epoch):
    learning_rate = config["learning_rate"]
    if config["lr_schedule"] == "step":
        learning_rate = keras.optimizers.schedules.ExponentialDecay(
            learning_rate,
            decay_steps=config["lr_decay_steps"],
            decay_rate=config["lr_decay_factor"],
            staircase=True,
        )
    elif config["lr_schedule"] == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(
            learning_rate, decay_steps=config["epochs"] * steps_per_epoch
        )
    # Keras' weight_decay is decoupled from the gradient (AdamW's), on every
    # optimizer; None turns it off.
    weight_decay = config["weight_decay"] or None
    if config["optimizer"] == "sgd":
        return keras.optimizers.SGD(
            learning_rate, momentum=config["momentum"], weight_decay=weight_decay
        )
    if config["optimizer"] == "rmsprop":
        return keras.optimizers.RMSprop(
            learning_rate, momentum=config["momentum"], weight_decay=weight_decay
        )
    return keras.optimizers.Adam(learning_rate, weight_decay=weight_decay)


def build_configured_model(config, image_shape, num_classes):
    """Builds the configured model for images of ``image_shape``."""
    return models.build_model(
        config["model"],
        image_shape,
        num_classes,
        transform=config["transform"],
        localization_convolution=config["localization_convolution"],
        localization_activation=config["localization_activation"],
        **config["model_options"],
    )


def run_record(config, dataset, model, policy, devices, distribution):
    """What ``config.json`` holds: settings, versions, data, model, device."""
    return {
        "config": config,
        "versions": runtime.library_versions(),
        "data": dataset.source,
        "image_shape": list(dataset.image_shape),
        "num_classes": dataset.num_classes,
        CLASS_NAMES_KEY: list(dataset.class_names),
        "num_parameters": model.count_params(),
        "mixed_precision_policy": policy,
        "device": devices.as_record(),
        "strategy": distribution.name,
        "num_replicas": distribution.num_replicas,
        "finished": False,
    }


def _tensorboard_callbacks(config, run_dir, model, dataset):
    if not tensorboard_available():
        logger.warning(
            "No TensorBoard logs: Keras' TensorBoard writer needs TensorFlow "
            "and the tensorboard package (pip install tensorflow \"stn_keras[tensorboard]\"). "
            "Training goes on without them."
        )
        return []
    runtime.import_tensorflow()
    callbacks = [keras.callbacks.TensorBoard(run_dir.logs_path)]
    images = dataset.x_val[: config["tensorboard_images"]]
    if len(images) and models.spatial_transformer_layers(model):
        callbacks.append(
            TransformerImages(run_dir.logs_path / "transformer", as_float_images(images))
        )
    return callbacks


def make_callbacks(config, run_dir, model, dataset, monitor, history_rows, backup, extra):
    """The run's callbacks; the non-finite loss check first, ``backup`` last.

    An epoch whose loss is not finite stops the run before anything records
    it. The backup commits last, so an epoch is either fully recorded
    (history row, best model, backup) or redone on resume.
    """
    callbacks = [
        StopOnNonFiniteLoss(),
        BestModelCheckpoint(
            run_dir.model_path,
            monitor=monitor,
            mode="max",
            initial_value_threshold=best_epoch(history_rows, monitor)[0],
        ),
        keras.callbacks.CSVLogger(run_dir.history_path, append=config["resume"]),
        *_tensorboard_callbacks(config, run_dir, model, dataset),
    ]
    if config["early_stopping_patience"]:
        callbacks.append(
            ResumableEarlyStopping(
                history_rows,
                monitor=monitor,
                mode="max",
                patience=config["early_stopping_patience"],
            )
        )
    return [*callbacks, *(extra or []), backup]


def _validation_data(dataset, num_replicas):
    if not len(dataset.x_val):
        return None
    images = as_float_images(dataset.x_val)
    labels = np.asarray(dataset.y_val, "int64")
    if num_replicas == 1:
        return images, labels
    # Batches must split evenly over the replicas: pad with copies of the
    # last image that weigh nothing. Keras averages the loss over every
    # entry, padding included, so the real images weigh (N + padding) / N:
    # val_loss is then the mean over the N real images, and the weighted
    # accuracy is unchanged by the uniform scale.
    count = len(images)
    padding = -count % num_replicas
    weights = np.concatenate(
        [np.full(count, (count + padding) / count), np.zeros(padding)]
    ).astype("float32")
    return (
        np.concatenate([images, np.repeat(images[-1:], padding, axis=0)]),
        np.concatenate([labels, np.repeat(labels[-1:], padding)]),
        weights,
    )


def _fit(model, config, train_data, validation_data, first_epoch, callbacks):
    # Signal handlers can only be installed from the main thread.
    previous_handlers = (
        {
            number: signal.signal(number, _raise_interrupted)
            for number in (signal.SIGINT, signal.SIGTERM)
        }
        if threading.current_thread() is threading.main_thread()
        else {}
    )
    try:
        return model.fit(
            train_data,
            epochs=config["epochs"],
            initial_epoch=first_epoch,
            steps_per_epoch=train_data.steps_per_epoch,
            validation_data=validation_data,
            validation_batch_size=config["batch_size"],
            callbacks=callbacks,
            verbose=run_config.resolve_verbose(config["verbose"]),
            # The sequence orders its own batches; Keras' shuffle would
            # reorder them with Python's global RNG, which a resumed run
            # cannot replay.
            shuffle=False,
        )
    finally:
        for number, handler in previous_handlers.items():
            signal.signal(number, handler)


def export_best_model(run_dir):
    """Writes ``saved_model/`` from ``model.keras`` when this process can.

    Returns whether it was written; otherwise logs how to export later.
    """
    from stn_keras.export import export_run
    from stn_keras.export import saved_model_export_available

    available, reason = saved_model_export_available()
    if not available:
        logger.info("No saved_model/ written: %s (RUN_DIR: %s)", reason, run_dir.path)
        return False
    export_run(run_dir.path)
    return True


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """Everything a run has settled before its model is built."""

    config: dict
    run_dir: RunDirectory
    dataset: object
    distribution: runtime.Distribution
    devices: runtime.DeviceInfo
    policy: str
    backup: AtomicBackupAndRestore
    first_epoch: int
    train_data: object
    history_rows: list
    monitor: str


def plan_run(config, dataset=None):
    """Checks what a run needs, loads its data and prepares its directory.

    Everything that can refuse the run (settings, backend, data, a run
    directory that is taken or cannot be written) does so here, before a
    model is built or a file written.
    """
    run_dir = RunDirectory(config["output_dir"])
    run_dir.check_can_start(config["resume"])
    distribution = runtime.make_distribution(config["strategy"])
    if config["batch_size"] % distribution.num_replicas:
        raise ValueError(
            f"`batch_size` must be a multiple of the {distribution.num_replicas} "
            f"replicas of strategy {config['strategy']!r}. Received: "
            f"batch_size={config['batch_size']}"
        )
    if dataset is None:
        dataset = run_config.load_data(config)
    devices = runtime.describe_devices()
    backup = AtomicBackupAndRestore(run_dir.backup_path)
    first_epoch = backup.initial_epoch() if config["resume"] else 0
    if first_epoch > config["epochs"]:
        raise ValueError(
            f"'{backup.state_path}' says {first_epoch} epochs are finished, but "
            f"the run has {config['epochs']} (its {run_dir.config_path.name}): the "
            "backup does not belong to this run. Start the run afresh in another "
            "--output-dir."
        )
    train_data = training_batches(config, dataset, first_epoch, distribution.num_replicas)
    run_dir.check_writable()
    return RunPlan(
        config=config,
        run_dir=run_dir,
        dataset=dataset,
        distribution=distribution,
        devices=devices,
        policy=runtime.mixed_precision_policy(config["mixed_precision"], devices),
        backup=backup,
        first_epoch=first_epoch,
        train_data=train_data,
        history_rows=run_dir.truncate_history(first_epoch) if config["resume"] else [],
        monitor="val_accuracy" if len(dataset.x_val) else "accuracy",
    )


def compile_and_fit(plan, callbacks=None):
    """Builds, compiles and fits the model of ``plan``; returns it and its history."""
    config, dataset = plan.config, plan.dataset
    with plan.distribution.scope():
        model = build_configured_model(config, dataset.image_shape, dataset.num_classes)
        model.compile(
            optimizer=make_optimizer(config, plan.train_data.steps_per_epoch, model),
            loss="sparse_categorical_crossentropy",
            # Weighted, so padding that evens out data-parallel validation
            # batches (weight 0) does not count.
            weighted_metrics=["accuracy"],
            jit_compile=config["jit_compile"],
        )
        if not config["resume"]:
            plan.run_dir.write_config(
                run_record(config, dataset, model, plan.policy, plan.devices, plan.distribution)
            )
        callbacks = make_callbacks(
            config,
            plan.run_dir,
            model,
            dataset,
            plan.monitor,
            plan.history_rows,
            plan.backup,
            callbacks,
        )
        history = _fit(
            model,
            config,
            plan.train_data,
            _validation_data(dataset, plan.distribution.num_replicas),
            plan.first_epoch,
            callbacks,
        )
    return model, history


def train(settings=None, dataset=None, callbacks=None, config_path=None):
    """Trains the configured model on the active backend; writes the run dir.

    Args:
        settings: settings (see :data:`stn_keras.config.OPTIONS`); missing
            ones take their defaults. A resumed run uses its saved ones.
        dataset: the loaded data set; ``None`` loads it with
            :func:`stn_keras.config.load_data`.
        callbacks: extra Keras callbacks, run after the built-in ones.
        config_path: optional YAML/JSON file of settings, below
            ``settings``.

    Returns:
        A :class:`TrainingResult`.

    Raises:
        ValueError: invalid settings, or a run directory that cannot be
            written or already holds a run.
        TrainingInterrupted: on SIGINT/SIGTERM; the last finished epoch
            stays in ``backup/`` and ``resume=True`` continues from it.
        TrainingFailed: the loss became NaN or infinite; ``config.json``
            records the failure, nothing is exported, and ``backup/`` keeps
            the last finished epoch.
    """
    plan = plan_run(resolve_run_config(settings, config_path), dataset)
    logger.info("Training on %s, policy %s", plan.devices.describe(), plan.policy)
    print(f"Device: {plan.devices.describe()}", flush=True)
    runtime.set_random_seed(plan.config["seed"])
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
    except NonFiniteLossError as error:
        reason = str(error)
        plan.run_dir.mark_failed(reason)
        raise TrainingFailed(
            f"Training failed: {reason}. The run in '{plan.run_dir.path}' is "
            f"recorded as failed in its {plan.run_dir.config_path.name} and was "
            "not exported. Start it afresh in another --output-dir, for "
            "example with a lower --learning-rate."
        ) from error
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    wall_time = time.perf_counter() - start
    plan.run_dir.mark_finished()
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
        saved_model_exported=export_best_model(plan.run_dir),
        monitor=plan.monitor,
    )
