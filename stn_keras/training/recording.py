"""The one step that writes a run's record: ``config.json``, and the history a resume keeps."""

import contextlib

from stn_keras import runtime
from stn_keras.callbacks import NonFiniteLossError
from stn_keras.run_dir import CLASS_NAMES_KEY


class TrainingFailed(RuntimeError):
    """Raised when training broke down (a non-finite loss): the run is
    recorded as failed in its ``config.json``."""


def run_record(plan, model):
    """What ``config.json`` holds: settings, versions, data, model, device."""
    dataset = plan.dataset
    return {
        "config": plan.settings.as_dict(),
        "versions": runtime.library_versions(),
        "data": dataset.source,
        "image_shape": list(dataset.image_shape),
        "num_classes": dataset.num_classes,
        CLASS_NAMES_KEY: list(dataset.class_names),
        "num_parameters": model.count_params(),
        "mixed_precision_policy": plan.policy,
        "device": plan.devices.as_record(),
        "strategy": plan.distribution.name,
        "num_replicas": plan.distribution.num_replicas,
        "finished": False,
    }


@contextlib.contextmanager
def recorded_run(plan, model):
    """The one step that writes the run directory's record, around ``model.fit``.

    On entering, a new run's ``config.json`` (`run_record`); a resumed run
    keeps the one it started with and drops the ``history.csv`` rows of
    epochs its backup does not hold, which it redoes. On leaving,
    ``"finished": true``; after a non-finite loss, ``"finished": false``
    and the ``failure``, raised as `TrainingFailed`. An interruption leaves
    the record as it is, so that the run can be resumed. Within it, the
    callbacks write each epoch's files (history row, best model, backup).
    """
    run_dir = plan.run_dir
    if plan.settings.resume:
        run_dir.truncate_history(plan.first_epoch)
    else:
        run_dir.write_config(run_record(plan, model))
    try:
        yield
    except NonFiniteLossError as error:
        reason = str(error)
        run_dir.mark_failed(reason)
        raise TrainingFailed(
            f"Training failed: {reason}. The run in '{run_dir.path}' is "
            f"recorded as failed in its {run_dir.config_path.name} and was "
            "not exported. Start it afresh in another --output-dir, for "
            "example with a lower --learning-rate."
        ) from error
    run_dir.mark_finished()
