"""What the training run beside a model says: its data settings and the
directory its evaluation goes to."""

from pathlib import Path

from stn_keras.run_dir import RunDirectory
from stn_keras.settings import data_settings


def _run_dir(model_path):
    """The run directory of a run's ``model.keras`` or ``saved_model/``."""
    return RunDirectory(Path(model_path).resolve().parent)


def data_config_for(model_path, overrides=None):
    """Data settings for evaluating ``model_path``.

    Defaults < the settings in the ``config.json`` of the run the model
    comes from (when there is one beside it) < ``overrides``, each checked
    as a training run's setting is. A distortion of ``"none"`` means no
    distortion.
    """
    run_dir = _run_dir(model_path)
    saved = run_dir.read_config() if run_dir.config_path.is_file() else {}
    return data_settings({**saved, **(overrides or {})})


def default_output_dir(model_path):
    """``evaluation/`` in the model's run directory."""
    return _run_dir(model_path).evaluation_path
