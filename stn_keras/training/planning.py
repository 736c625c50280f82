"""`plan_run`: everything that can refuse a run, before a model is built."""

import dataclasses

from stn_keras import runtime
from stn_keras.callbacks import AtomicBackupAndRestore
from stn_keras.run_dir import RunDirectory
from stn_keras.settings import RunSettings
from stn_keras.settings import load_data
from stn_keras.training.inputs import training_batches


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """Everything a run has settled before its model is built."""

    settings: RunSettings
    run_dir: RunDirectory
    dataset: object
    distribution: runtime.Distribution
    devices: runtime.DeviceInfo
    policy: str
    backup: AtomicBackupAndRestore
    first_epoch: int
    train_data: object
    history_rows: list
    # "val_accuracy", or None for a run without a validation split: it keeps
    # its last epoch's model (`stn_keras.run_dir.best_epoch`).
    monitor: str | None


def plan_run(settings, dataset=None):
    """Checks what a run needs, loads its data and checks its directory.

    Everything that can refuse the run (backend, data, a run directory that
    is taken, disagrees with its backup or cannot be written) does so here,
    before a model is built or anything written in the run directory
    (`stn_keras.training.recording.recorded_run` writes it).

    Args:
        settings: a `stn_keras.settings.RunSettings`, from
            `stn_keras.settings.resolve_settings`.
        dataset: the loaded data set; ``None`` loads the one ``settings``
            describe.

    Returns:
        A `RunPlan`.
    """
    if not isinstance(settings, RunSettings):
        raise TypeError(
            "`settings` must be a RunSettings: resolve them first with "
            "stn_keras.settings.resolve_settings(...). "
            f"Received: settings={settings!r}"
        )
    run_dir = RunDirectory(settings.output_dir)
    run_dir.check_can_start(settings.resume)
    distribution = runtime.make_distribution(settings.strategy)
    if settings.batch_size % distribution.num_replicas:
        raise ValueError(
            f"`batch_size` must be a multiple of the {distribution.num_replicas} "
            f"replicas of strategy {settings.strategy!r}. Received: "
            f"batch_size={settings.batch_size}"
        )
    if dataset is None:
        dataset = load_data(settings)
    if settings.early_stopping_patience and not len(dataset.x_val):
        raise ValueError(
            "Early stopping watches validation accuracy, and this data set has "
            "no validation split. Set val_size above 0 (--val-size) or turn "
            "early stopping off (--early-stopping-patience 0). Received: "
            f"early_stopping_patience={settings.early_stopping_patience}, "
            f"val_size={settings.val_size}"
        )
    devices = runtime.describe_devices()
    backup = AtomicBackupAndRestore(run_dir.backup_path)
    first_epoch = backup.initial_epoch() if settings.resume else 0
    if first_epoch > settings.epochs:
        raise ValueError(
            f"'{backup.state_path}' says {first_epoch} epochs are finished, but "
            f"the run has {settings.epochs} (its {run_dir.config_path.name}): the "
            "backup does not belong to this run. Start the run afresh in another "
            "--output-dir."
        )
    train_data = training_batches(settings, dataset, first_epoch, distribution.num_replicas)
    run_dir.check_writable()
    return RunPlan(
        settings=settings,
        run_dir=run_dir,
        dataset=dataset,
        distribution=distribution,
        devices=devices,
        policy=runtime.mixed_precision_policy(settings.mixed_precision, devices),
        backup=backup,
        first_epoch=first_epoch,
        train_data=train_data,
        history_rows=run_dir.kept_history(first_epoch) if settings.resume else [],
        monitor="val_accuracy" if len(dataset.x_val) else None,
    )
