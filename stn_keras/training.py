"""Training workflow behind ``train.py``: configuration, ``model.fit``, run directory.

A run is described by one flat configuration dictionary. It is resolved as
:data:`DEFAULTS` < a ``--config`` YAML/JSON file < command-line flags,
validated, and written with library versions and the data's identity to
``config.json`` in the run directory, which also receives ``history.csv``,
``model.keras`` (the best epoch by validation accuracy), ``saved_model/``,
TensorBoard logs in ``logs/`` and, while training, a crash-safe ``backup/``
that ``resume=True`` continues from.
"""

import dataclasses
import json
import logging
import math
import os
import platform
import signal
import threading
import time
from pathlib import Path

import keras
import numpy as np

import stn_keras
from stn_keras import models
from stn_keras.callbacks import AtomicBackupAndRestore
from stn_keras.callbacks import TransformerImages
from stn_keras.callbacks import tensorboard_available
from stn_keras.export import export_saved_model

logger = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam", "rmsprop")
LR_SCHEDULES = ("constant", "step", "cosine")
STRATEGIES = ("default", "mirrored")

# Every setting of a run, with its default and what it means (train.py's
# --help is built from these).
OPTIONS = {
    "dataset": ("digits", "data set name (stn_keras.data.DATASETS)"),
    "distortion": (
        None,
        "distortion of the images (stn_keras.data.DISTORTIONS); unset or "
        "'none': undistorted",
    ),
    "online_distortion": (
        False,
        "distort the training images afresh every epoch (as the paper "
        "trained) instead of training on one fixed distortion; needs a "
        "distortion",
    ),
    "model": ("st_cnn", "model name (see docs/TRAINING.md)"),
    "transform": (None, "transformer's transform; unset means affine"),
    "loc_conv": (None, "localisation net convolutions; unset means conv"),
    "loc_activation": (None, "localisation net activation; unset means relu"),
    "model_options": ({}, "extra keyword arguments of the model builder"),
    "data_options": ({}, "extra keyword arguments of load_dataset"),
    "epochs": (10, "number of epochs"),
    "batch_size": (64, "images per training step (global, over all devices)"),
    "optimizer": ("sgd", "optimizer"),
    "learning_rate": (0.01, "base learning rate"),
    "momentum": (0.0, "momentum of sgd and rmsprop"),
    "lr_schedule": (
        "constant",
        "constant, step (the paper's: divide by lr_decay_factor every "
        "lr_decay_steps iterations) or cosine (to 0 over the run)",
    ),
    "lr_decay_steps": (50000, "iterations between step decays"),
    "lr_decay_factor": (0.1, "multiplier of each step decay"),
    "early_stopping_patience": (
        0,
        "stop after this many epochs without better validation accuracy "
        "(0: never)",
    ),
    "seed": (0, "seed of the data split, initialisation and shuffling"),
    "data_dir": (
        None,
        "data directory; unset: STN_DATA_DIR or the data layer's default",
    ),
    "output_dir": ("runs/run", "run directory"),
    "val_size": (
        None,
        "validation images held out of training, a count or a fraction; "
        "unset: the data layer's default",
    ),
    "image_size": (
        None, "resize images to this size; unset: the data set's own size"
    ),
    "mixed_precision": (False, "compute in float16 (GPU) or bfloat16 (CPU)"),
    "jit_compile": (False, "compile the train step with XLA"),
    "strategy": (
        "default",
        "default (one device) or mirrored (all local GPUs, or all logical "
        "CPUs when there is none)",
    ),
    "tensorboard_images": (8, "validation images shown in TensorBoard"),
    "resume": (False, "continue the interrupted run in output_dir"),
    "verbose": (1, "Keras progress output: 0 silent, 1 bar, 2 one line/epoch"),
}
DEFAULTS = {name: default for name, (default, _) in OPTIONS.items()}


def count_or_fraction(text):
    """Command-line ``--val-size``: ``"500"`` -> 500 images, ``"0.1"`` -> 10%."""
    text = str(text).strip()
    if text.isdigit():
        return int(text)
    try:
        return float(text)
    except ValueError:
        raise ValueError(
            "expected an image count (e.g. 5000) or a fraction (e.g. 0.1). "
            f"Received: {text!r}"
        ) from None


def read_config_file(path):
    """Reads a YAML (``.yaml``/``.yml``) or JSON configuration into a dict.

    Keys may use hyphens or underscores (``batch-size`` or ``batch_size``).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Config file not found. Received: path='{path}'")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text)
        elif path.suffix == ".json":
            values = json.loads(text)
        else:
            raise ValueError(
                "Config file must end in .yaml, .yml or .json. "
                f"Received: path='{path}'"
            )
    except (json.JSONDecodeError, ImportError) as error:
        raise ValueError(f"Cannot parse config file '{path}': {error}") from error
    except Exception as error:
        if error.__class__.__module__.startswith("yaml"):
            raise ValueError(
                f"Cannot parse config file '{path}': {error}"
            ) from error
        raise
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ValueError(
            f"Config file '{path}' must hold a mapping of settings. "
            f"Received: {type(values).__name__}"
        )
    return {str(key).replace("-", "_"): value for key, value in values.items()}


def resolve_config(overrides=None, config_path=None):
    """Merges :data:`DEFAULTS` < the config file < ``overrides``, validated.

    Args:
        overrides: settings given explicitly (the command line's flags).
        config_path: optional YAML or JSON file of settings.

    Returns:
        The full configuration dictionary.
    """
    config = dict(DEFAULTS)
    sources = []
    if config_path is not None:
        sources.append((f"config file '{config_path}'", read_config_file(config_path)))
    sources.append(("arguments", dict(overrides or {})))
    for source, values in sources:
        unknown = sorted(set(values) - set(DEFAULTS))
        if unknown:
            raise ValueError(
                f"Unknown setting(s) {unknown} in {source}. Expected some "
                f"of {sorted(DEFAULTS)}."
            )
        config.update(values)
    if config["distortion"] == "none":
        config["distortion"] = None
    validate_config(config)
    return config


def _check(condition, name, expected, value):
    if not condition:
        raise ValueError(f"`{name}` must be {expected}. Received: {name}={value!r}")


def validate_config(config):
    """Raises ValueError naming the first invalid setting of ``config``."""
    for name in ("epochs", "batch_size", "lr_decay_steps"):
        value = config[name]
        _check(
            isinstance(value, int) and not isinstance(value, bool) and value >= 1,
            name,
            "an int >= 1",
            value,
        )
    for name in ("early_stopping_patience", "seed", "tensorboard_images"):
        value = config[name]
        _check(
            isinstance(value, int) and not isinstance(value, bool) and value >= 0,
            name,
            "an int >= 0",
            value,
        )
    for name in ("learning_rate", "lr_decay_factor"):
        value = config[name]
        _check(
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            and value > 0,
            name,
            "a finite number > 0",
            value,
        )
    momentum = config["momentum"]
    _check(
        isinstance(momentum, (int, float)) and 0 <= momentum < 1,
        "momentum",
        "a number in [0, 1)",
        momentum,
    )
    for name, choices in (
        ("optimizer", OPTIMIZERS),
        ("lr_schedule", LR_SCHEDULES),
        ("strategy", STRATEGIES),
        ("model", tuple(models.MODELS)),
    ):
        _check(config[name] in choices, name, f"one of {choices}", config[name])
    for name in ("online_distortion", "mixed_precision", "jit_compile", "resume"):
        _check(isinstance(config[name], bool), name, "true or false", config[name])
    for name in ("model_options", "data_options"):
        _check(isinstance(config[name], dict), name, "a mapping", config[name])
    if config["online_distortion"]:
        _check_online_distortion(config["distortion"], config["strategy"])
    models.check_transformer_options(
        config["model"],
        config["transform"],
        config["loc_conv"],
        config["loc_activation"],
    )


def library_versions():
    """Versions of the libraries a run depends on, for ``config.json``."""
    versions = {
        "python": platform.python_version(),
        "stn_keras": stn_keras.__version__,
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "numpy": np.__version__,
    }
    try:
        import tensorflow as tf

        versions["tensorflow"] = tf.__version__
    except ImportError:
        pass
    return versions


def describe_devices():
    """A short description of the accelerators TensorFlow sees, or the CPU."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return "GPU: " + ", ".join(device.name for device in gpus)
    return f"CPU ({os.cpu_count()} cores; no GPU visible)"


def load_data(config):
    """Loads the configured data set through ``stn_keras.data.load_dataset``."""
    from stn_keras.data import load_dataset

    return load_dataset(
        config["dataset"],
        distortion=config["distortion"],
        data_dir=config["data_dir"],
        seed=config["seed"],
        val_size=config["val_size"],
        image_size=config["image_size"],
        **config["data_options"],
    )


def as_float_images(images):
    """uint8 images -> float32 in ``[0, 1]``; float images pass unchanged."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype("float32") / 255.0
    return images.astype("float32")


def epoch_batches(images, labels, batch_size, seed, first_epoch, epochs):
    """Training batches for epochs ``first_epoch .. epochs - 1``, in order.

    The order of epoch ``e`` is a stateless shuffle seeded by
    ``(seed, e)``, so a resumed run sees exactly the batches the
    uninterrupted run would have. The last batch of an epoch may be partial.

    Returns:
        ``(tf.data.Dataset of (float32 images, int64 labels), steps_per_epoch)``.
    """
    import tensorflow as tf

    count = len(images)
    steps_per_epoch = math.ceil(count / batch_size)
    images = tf.constant(images)
    labels = tf.constant(np.asarray(labels, dtype="int64"))

    def epoch_indices(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(count, dtype=tf.int64),
            seed=tf.stack([tf.constant(seed, tf.int64), epoch]),
        )
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    def gather(indices):
        batch = tf.gather(images, indices)
        if batch.dtype == tf.uint8:
            batch = tf.cast(batch, tf.float32) / 255.0
        return tf.cast(batch, tf.float32), tf.gather(labels, indices)

    dataset = (
        tf.data.Dataset.range(first_epoch, epochs)
        .flat_map(epoch_indices)
        .map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    return dataset, steps_per_epoch


def _check_online_distortion(distortion, strategy):
    if distortion is None:
        raise ValueError(
            "`online_distortion` needs a distortion to draw afresh every "
            "epoch: set `distortion` (e.g. rts) or turn online_distortion "
            "off. Received: online_distortion=True, distortion=None"
        )
    if strategy == "mirrored":
        # The online pipeline is a keras PyDataset, which this project has
        # not verified under tf.distribute; refuse rather than guess.
        raise ValueError(
            "`online_distortion` is not supported with the mirrored "
            "strategy. Use strategy=default or turn online_distortion off. "
            "Received: online_distortion=True, strategy='mirrored'"
        )


def training_batches(config, dataset, first_epoch):
    """The training input of epochs ``first_epoch .. epochs - 1``.

    With ``online_distortion``, a ``BatchSequence`` drawing fresh
    distortions of ``dataset.x_train_undistorted`` every epoch; otherwise
    :func:`epoch_batches` of the fixed ``dataset.x_train``. Both depend only
    on ``(seed, epoch)``, so a resumed run sees the uninterrupted run's
    batches.

    Returns:
        ``(training data for model.fit, steps_per_epoch)``.
    """
    if not config["online_distortion"]:
        return epoch_batches(
            dataset.x_train,
            dataset.y_train,
            config["batch_size"],
            config["seed"],
            first_epoch,
            config["epochs"],
        )
    from stn_keras.data import make_pipeline

    _check_online_distortion(dataset.distortion, config["strategy"])
    pipeline = make_pipeline(
        dataset.x_train_undistorted,
        dataset.y_train_undistorted,
        config["batch_size"],
        shuffle=True,
        seed=config["seed"],
        distortion=dataset.distortion,
        num_classes=dataset.num_classes,
        distortion_parameters=dataset.distortion_parameters,
        first_epoch=first_epoch,
    )
    return pipeline, len(pipeline)


def make_optimizer(config, steps_per_epoch):
    """The configured optimizer with its learning-rate schedule."""
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
    if config["optimizer"] == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=config["momentum"])
    if config["optimizer"] == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate, momentum=config["momentum"])
    return keras.optimizers.Adam(learning_rate)


def make_strategy(name):
    """``tf.distribute`` strategy by name: the default one or MirroredStrategy."""
    import tensorflow as tf

    if name != "mirrored":
        return tf.distribute.get_strategy()
    if tf.config.list_logical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    # Without GPUs MirroredStrategy would use CPU:0 alone; use every logical
    # CPU device instead (see tf.config.set_logical_device_configuration).
    cpus = [device.name for device in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=cpus)


def build_configured_model(config, image_shape, num_classes):
    """Builds the configured model for images of ``image_shape``."""
    return models.build_model(
        config["model"],
        image_shape,
        num_classes,
        transform=config["transform"],
        loc_conv=config["loc_conv"],
        loc_activation=config["loc_activation"],
        **config["model_options"],
    )


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by the SIGINT/SIGTERM handler to stop ``model.fit`` at once."""


def _raise_interrupted(signal_number, frame):
    raise TrainingInterrupted(signal.Signals(signal_number).name)


@dataclasses.dataclass(frozen=True)
class TrainingResult:
    """What :func:`train` returns: the run directory and its headline numbers."""

    run_dir: Path
    best_val_accuracy: float
    best_epoch: int
    epochs_run: int
    wall_time_s: float
    images_per_second: float
    num_parameters: int

    def summary(self):
        return (
            f"best val_accuracy {self.best_val_accuracy:.4f} at epoch "
            f"{self.best_epoch}, {self.epochs_run} epochs, "
            f"{self.wall_time_s:.1f} s, {self.images_per_second:.0f} images/s, "
            f"{self.num_parameters} parameters, run dir {self.run_dir}"
        )


def saved_run_config(run_dir):
    """The configuration a run in ``run_dir`` was started with."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise ValueError(
            f"Nothing to resume: '{path}' does not exist. Start the run "
            "without --resume."
        )
    # Settings added since the run started take their defaults, which
    # reproduce what the run did.
    return {**DEFAULTS, **json.loads(path.read_text())["config"]}


def _prepare_run_dir(run_dir, resume):
    backup_dir = run_dir / "backup"
    has_backup = (backup_dir / "state.json").is_file()
    finished = (run_dir / "model.keras").exists() and not has_backup
    if resume:
        if not has_backup:
            reason = (
                "the run finished"
                if finished
                else "it never completed an epoch; start it again without --resume"
            )
            raise ValueError(
                f"Nothing to resume in '{run_dir}': it has no backup ({reason})."
            )
        return
    if has_backup or finished:
        raise ValueError(
            f"Run directory '{run_dir}' already holds a run. Pass --resume to "
            "continue an interrupted run, or choose another --output-dir."
        )


def _truncate_history(history_path, num_epochs):
    """Keeps the header and the rows of the first ``num_epochs`` epochs.

    A run killed after writing an epoch's row but before committing its
    backup redoes that epoch on resume; this drops the stale row first.
    """
    if not history_path.is_file():
        return
    lines = history_path.read_text().splitlines(keepends=True)
    header, rows = lines[:1], lines[1:]
    kept = [row for row in rows if int(row.split(",", 1)[0]) < num_epochs]
    if len(kept) != len(rows):
        history_path.write_text("".join(header + kept))


def _best_from_history(history_path, monitor):
    """Best monitored value and its epoch (1-based) in ``history.csv``."""
    import csv

    best, best_epoch = None, 0
    if history_path.is_file():
        with open(history_path) as file:
            for row in csv.DictReader(file):
                value = float(row[monitor])
                if best is None or value > best:
                    best, best_epoch = value, int(row["epoch"]) + 1
    return best, best_epoch


def _write_run_config(run_dir, config, dataset, model, policy, device, strategy):
    """Writes ``config.json``: settings, versions, data identity, model size."""
    (run_dir / "config.json").write_text(
        json.dumps(
            {
                "config": config,
                "versions": library_versions(),
                "data": dataset.source,
                "image_shape": list(dataset.image_shape),
                "num_classes": dataset.num_classes,
                "class_names": list(dataset.class_names),
                "num_parameters": model.count_params(),
                "mixed_precision_policy": policy,
                "device": device,
                "num_replicas": strategy.num_replicas_in_sync,
            },
            indent=2,
            default=str,
        )
    )


def _make_callbacks(config, run_dir, model, dataset, monitor, backup, extra):
    """The run's callbacks; ``backup`` last, after ``extra``."""
    history_path = run_dir / "history.csv"
    best_so_far, _ = _best_from_history(history_path, monitor)
    callbacks = [
        keras.callbacks.ModelCheckpoint(
            run_dir / "model.keras",
            monitor=monitor,
            mode="max",
            save_best_only=True,
            initial_value_threshold=best_so_far,
        ),
        keras.callbacks.CSVLogger(history_path, append=config["resume"]),
    ]
    if tensorboard_available():
        callbacks.append(keras.callbacks.TensorBoard(run_dir / "logs"))
        if (
            len(dataset.x_val)
            and config["tensorboard_images"]
            and models.spatial_transformers(model)
        ):
            callbacks.append(
                TransformerImages(
                    run_dir / "logs" / "transformer",
                    as_float_images(dataset.x_val[: config["tensorboard_images"]]),
                )
            )
    else:
        logger.warning(
            "The tensorboard package is not installed: no TensorBoard logs "
            "(pip install tensorboard)."
        )
    if config["early_stopping_patience"]:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor,
                mode="max",
                patience=config["early_stopping_patience"],
            )
        )
    # The backup commits last, so an epoch is either fully recorded (history
    # row, best model, backup) or redone on resume.
    callbacks.extend(extra or [])
    callbacks.append(backup)
    return callbacks


def train(config, dataset=None, callbacks=None):
    """Trains the configured model; writes the run directory.

    Args:
        config: a configuration from :func:`resolve_config`.
        dataset: the loaded data set; ``None`` loads it with
            :func:`load_data`.
        callbacks: extra Keras callbacks, run after the built-in ones.

    Returns:
        A :class:`TrainingResult`.

    Raises:
        TrainingInterrupted: on SIGINT/SIGTERM; the last finished epoch
            stays in ``backup/`` and ``resume=True`` continues from it.
    """
    validate_config(config)
    run_dir = Path(config["output_dir"])
    _prepare_run_dir(run_dir, config["resume"])
    if dataset is None:
        dataset = load_data(config)
    keras.utils.set_random_seed(config["seed"])
    if config["mixed_precision"]:
        import tensorflow as tf

        policy = (
            "mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16"
        )
    else:
        policy = "float32"
    keras.mixed_precision.set_global_policy(policy)
    device = describe_devices()
    logger.info("Training on %s", device)
    print(f"Device: {device}", flush=True)

    validation = len(dataset.x_val) > 0
    monitor = "val_accuracy" if validation else "accuracy"
    backup = AtomicBackupAndRestore(run_dir / "backup")
    first_epoch = backup.initial_epoch() if config["resume"] else 0
    train_data, steps_per_epoch = training_batches(config, dataset, first_epoch)
    strategy = make_strategy(config["strategy"])
    with strategy.scope():
        model = build_configured_model(
            config, dataset.image_shape, dataset.num_classes
        )
        model.compile(
            optimizer=make_optimizer(config, steps_per_epoch),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=config["jit_compile"],
        )
    if not config["resume"]:
        # A run killed before its first epoch left nothing worth keeping.
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_run_config(run_dir, config, dataset, model, policy, device, strategy)
    history_path = run_dir / "history.csv"
    if config["resume"]:
        _truncate_history(history_path, first_epoch)
    callbacks = _make_callbacks(
        config, run_dir, model, dataset, monitor, backup, callbacks
    )
    validation_data = (
        (as_float_images(dataset.x_val), np.asarray(dataset.y_val, "int64"))
        if validation
        else None
    )
    # Signal handlers can only be installed from the main thread.
    previous_handlers = (
        {
            number: signal.signal(number, _raise_interrupted)
            for number in (signal.SIGINT, signal.SIGTERM)
        }
        if threading.current_thread() is threading.main_thread()
        else {}
    )
    start = time.perf_counter()
    try:
        history = model.fit(
            train_data,
            epochs=config["epochs"],
            initial_epoch=first_epoch,
            # epoch_batches is one stream of all epochs and needs the epoch
            # length. A PyDataset is left to size its own epochs: Keras then
            # opens each epoch's iterator only after the previous
            # on_epoch_end, never one that could prefetch with a stale epoch.
            steps_per_epoch=(
                None
                if isinstance(train_data, keras.utils.PyDataset)
                else steps_per_epoch
            ),
            validation_data=validation_data,
            validation_batch_size=config["batch_size"],
            callbacks=callbacks,
            verbose=config["verbose"],
            shuffle=False,
        )
    except TrainingInterrupted:
        logger.warning(
            "Training interrupted; %d finished epoch(s) are backed up in '%s'. "
            "Continue with: python train.py --output-dir %s --resume",
            backup.initial_epoch(),
            run_dir / "backup",
            run_dir,
        )
        raise
    finally:
        for number, handler in previous_handlers.items():
            signal.signal(number, handler)
        keras.mixed_precision.set_global_policy("float32")
    wall_time = time.perf_counter() - start
    epochs_run = len(history.epoch)
    best_model = keras.saving.load_model(run_dir / "model.keras")
    export_saved_model(
        best_model, run_dir / "saved_model", class_names=dataset.class_names
    )
    best, best_epoch = _best_from_history(history_path, monitor)
    result = TrainingResult(
        run_dir=run_dir,
        best_val_accuracy=best,
        best_epoch=best_epoch,
        epochs_run=first_epoch + epochs_run,
        wall_time_s=wall_time,
        images_per_second=len(dataset.x_train) * epochs_run / max(wall_time, 1e-9),
        num_parameters=model.count_params(),
    )
    return result
