"""`load`: a `PretrainedClassifier` from a name of ``saved_models/`` or a path."""

import json
from pathlib import Path

from stn_keras.export.names import EXPORT_METADATA
from stn_keras.pretrained.pretrained_classifier import PretrainedClassifier


def saved_models_directory():
    """The repository's ``saved_models/``, beside the ``stn_keras`` package.

    It exists in a clone and in an editable install; a wheel does not ship
    it (then pass a folder's path to `load`).
    """
    return Path(__file__).resolve().parents[2] / "saved_models"


def available_models():
    """The names `load` accepts: the folders of `saved_models_directory` with a model."""
    directory = saved_models_directory()
    if not directory.is_dir():
        return []
    return sorted(path.name for path in directory.iterdir() if (path / "model.keras").is_file())


def load(name_or_path, batch_size=256):
    """Loads a pretrained classifier.

    Args:
        name_or_path: a folder name of ``saved_models/`` (see
            `available_models`), or the path of a folder with the same layout
            (``model.keras`` and ``config.json``), of a ``.keras`` file or of
            a SavedModel directory (written by ``python -m stn_keras.export``).
        batch_size: images per model call.

    Returns:
        A `PretrainedClassifier`.

    Raises:
        ValueError: an unknown name (the message lists the available ones),
            or a path that is not a loadable model (saying why).
    """
    from stn_keras.evaluation import load_trained_model
    from stn_keras.export.run_export import run_files
    from stn_keras.export.signatures import decoding_options

    path = _resolve(name_or_path)
    if (path / "saved_model.pb").is_file():
        trained = load_trained_model(path, batch_size)
        options = _export_options(path)
        return PretrainedClassifier(
            trained, options["class_names"], {key: options[key] for key in decoding_options()}, path
        )
    if path.is_dir():
        model_path, class_names = run_files(path)
    else:
        model_path, class_names = path, _class_names_beside(path)
    trained = load_trained_model(model_path, batch_size)
    if class_names is None:
        class_names = [str(index) for index in range(trained.num_classes)]
    return PretrainedClassifier(trained, class_names, decoding_options(), path)


def _resolve(name_or_path):
    path = Path(name_or_path)
    if path.exists():
        return path
    named = saved_models_directory() / str(name_or_path)
    if len(path.parts) == 1 and (named / "model.keras").is_file():
        return named
    available = available_models()
    raise ValueError(
        f"Unknown model {str(name_or_path)!r}: no such file or folder, and not a "
        f"folder name of {saved_models_directory()} (available: "
        f"{', '.join(available) if available else 'none'})."
    )


def _class_names_beside(model_path):
    """The class names of the run folder holding a ``.keras`` file, if it is one."""
    from stn_keras.export.run_export import run_files

    try:
        return run_files(Path(model_path).parent)[1]
    except ValueError:
        return None


def _export_options(saved_model_dir):
    path = Path(saved_model_dir) / EXPORT_METADATA
    if not path.is_file():
        raise ValueError(
            f"'{saved_model_dir}' has no {EXPORT_METADATA}: re-export it with "
            "`python -m stn_keras.export RUN_DIR`, which records the class "
            "names and the image decoding there."
        )
    return json.loads(path.read_text())
