"""Exporting a training run's ``model.keras`` as its ``saved_model/``.

A run trained on JAX or PyTorch, or on a machine without TensorFlow, still
writes ``model.keras``; `export_run` (``python -m stn_keras.export RUN_DIR``)
turns it into ``RUN_DIR/saved_model`` wherever TensorFlow is installed.
"""

import logging

import keras

from stn_keras.run_dir import CLASS_NAMES_KEY
from stn_keras.run_dir import RunDirectory
from stn_keras.runtime import tensorflow_available
from stn_keras.saving import load_model_file

logger = logging.getLogger(__name__)


def saved_model_export_available(what="SavedModel export"):
    """Whether this process can write a SavedModel, and why not.

    Args:
        what: what needs it, for the message (ONNX and LiteRT go through a
            SavedModel too).

    Returns:
        ``(True, "")``, or ``(False, reason)`` where ``reason`` says what to
        do: run Keras on the TensorFlow backend, or install TensorFlow.
    """
    if not tensorflow_available():
        return False, (
            f"{what} needs TensorFlow, which is not installed: "
            "`pip install tensorflow`, then run `python -m stn_keras.export "
            "RUN_DIR`."
        )
    backend = keras.backend.backend()
    if backend != "tensorflow":
        return False, (
            f"{what} needs the TensorFlow backend; Keras runs on "
            f"{backend!r}. Run `KERAS_BACKEND=tensorflow python -m "
            "stn_keras.export RUN_DIR` to export the run's model.keras."
        )
    return True, ""


def export_run(run_dir, **options):
    """Writes ``RUN_DIR/saved_model`` from ``RUN_DIR/model.keras``, atomically.

    The class names come from ``RUN_DIR/config.json`` (key
    ``"class_names"``). The ``.keras`` file may have been saved on any
    backend.

    Args:
        run_dir: a training run's directory.
        **options: further keyword arguments of `export_saved_model`
            (``input_range``, ``max_image_pixels``...).

    Returns:
        ``(saved_model_dir, signatures)``: the directory written and the
        names of its signatures.

    Raises:
        ValueError: a missing directory, model or config file, a config
            without class names, or a process that cannot export (see
            `saved_model_export_available`).
    """
    from stn_keras.export.signatures import export_saved_model

    available, reason = saved_model_export_available()
    if not available:
        raise ValueError(reason)
    run_dir = RunDirectory(run_dir)
    model_path, class_names = run_files(run_dir.path)
    model = load_model_file(model_path)
    export_dir = run_dir.saved_model_path
    signatures = export_saved_model(model, export_dir, class_names=class_names, **options)
    return export_dir, signatures


def export_best_model(run_dir):
    """Writes ``RUN_DIR/saved_model`` from the run's best ``model.keras`` when this process can.

    The step after training (``train.py`` runs it unless given
    ``--no-export``). Where this process cannot write a SavedModel (another
    backend, no TensorFlow), it logs how to export the run later instead.

    Args:
        run_dir: a finished training run's directory.

    Returns:
        Whether ``saved_model/`` was written.
    """
    available, reason = saved_model_export_available()
    if not available:
        logger.info("No saved_model/ written: %s (RUN_DIR: %s)", reason, run_dir)
        return False
    export_run(run_dir)
    return True

def run_files(run_dir):
    """A run directory's ``model.keras`` path and class names.

    A run directory is also the layout of the folders in ``saved_models/``.

    Args:
        run_dir: the directory (a path).

    Returns:
        ``(model_path, class_names)``.

    Raises:
        ValueError: naming what is missing or unreadable.
    """
    run_dir = RunDirectory(run_dir)
    if not run_dir.path.is_dir():
        raise ValueError(f"Run directory not found: '{run_dir.path}'.")
    model_path = run_dir.model_path
    if not model_path.is_file():
        raise ValueError(
            f"No {model_path.name} in '{run_dir.path}': pass the directory of a "
            "finished training run."
        )
    config_path = run_dir.config_path
    if not config_path.is_file():
        raise ValueError(
            f"No {config_path.name} in '{run_dir.path}': the class names of the "
            f"SavedModel are read from its {CLASS_NAMES_KEY!r} key."
        )
    return model_path, run_dir.read_class_names()
