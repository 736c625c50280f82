"""Loading ``.keras`` model files, with errors that say what is wrong with one.

Keras answers a truncated or empty ``.keras`` file with "File not found",
although the file is there; :func:`load_model_file` checks the archive first
and says that it is damaged.
"""

import os
import zipfile
import zlib

import keras


def _damage(path):
    """What is wrong with the ``.keras`` archive at ``path``, or ``None``."""
    if os.path.getsize(path) == 0:
        return "it is empty (0 bytes)"
    if not zipfile.is_zipfile(path):
        return (
            f"it is not a complete .keras (zip) archive ({os.path.getsize(path)} "
            "bytes: truncated, or another kind of file)"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            bad_member = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        return f"its zip archive cannot be read ({error})"
    if bad_member is not None:
        return f"its member {bad_member!r} fails its CRC-32 check (flipped bytes)"
    return None


def load_model_file(path):
    """``keras.saving.load_model(path)``, with a clear error for a bad file.

    Args:
        path: a ``.keras`` file (or a legacy ``.h5`` one).

    Returns:
        The loaded Keras model.

    Raises:
        ValueError: the file does not exist, is damaged (empty, truncated,
            with flipped bytes) or cannot be loaded, naming it and saying
            which.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"Model file not found. Received: model path='{path}'")
    damage = _damage(path) if path.endswith(".keras") else None
    if damage is not None:
        raise ValueError(
            f"Cannot load model file '{path}': the file is damaged: {damage}. "
            "Save or export the model again, or use an undamaged copy."
        )
    try:
        return keras.saving.load_model(path)
    except Exception as error:
        raise ValueError(
            f"Cannot load model file '{path}' ({type(error).__name__}: {error})."
        ) from error
