"""Files and directories that appear whole or not at all.

Everything a run, an evaluation or an export writes for others to load goes
through here: written beside its final name, given the permissions a plain
``open`` would give (temporary files are private), then renamed into place.
A process killed at any moment leaves the previous version or nothing,
never half of one.
"""

import contextlib
import hashlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def give_default_permissions(path):
    """``chmod`` to what ``open``/``mkdir`` would have made under the umask.

    ``tempfile`` creates files 0600 and directories 0700, which would make a
    run's model unreadable to a server running as another user.
    """
    path = Path(path)
    mask = _umask()
    if path.is_dir():
        for root, directories, files in os.walk(path):
            os.chmod(root, 0o777 & ~mask)
            for name in files:
                os.chmod(os.path.join(root, name), 0o666 & ~mask)
    else:
        os.chmod(path, 0o666 & ~mask)
    return path


def file_sha256(path, chunk_bytes=1 << 20):
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _flush_to_disk(path):
    with open(path, "rb+") as file:
        os.fsync(file.fileno())


def write_file_atomically(path, write):
    """Runs ``write(partial_path)`` beside ``path``, then renames it into place.

    The partial file keeps all of ``path``'s suffixes (``.weights.h5``,
    ``.npz``), which some writers insist on, and is flushed to disk before
    the rename. Returns what ``write`` returned. The partial file is removed
    if ``write`` fails or is interrupted.
    """
    path = Path(path)
    suffix = "".join(path.suffixes)
    descriptor, partial = tempfile.mkstemp(
        prefix=f".{path.name[: len(path.name) - len(suffix)]}.partial-",
        suffix=suffix,
        dir=path.parent,
    )
    os.close(descriptor)
    try:
        result = write(partial)
        _flush_to_disk(partial)
        give_default_permissions(partial)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return result


def write_text_atomically(path, text):
    """Writes ``text`` to ``path`` (flushed to disk) through a rename."""

    write_file_atomically(path, lambda partial: Path(partial).write_text(text))
    return Path(path)


def write_directory_atomically(directory, write):
    """Runs ``write(staging_dir)`` beside ``directory``, then renames it into place.

    A process killed while writing leaves ``directory`` as it was (absent, or
    the previous version) and a hidden ``.NAME.partial-*`` folder beside it
    that nothing loads and that may be deleted. A previous ``directory`` is
    moved aside, the new one renamed in, then the old one deleted; if the
    second rename fails, the old one is put back. Only a kill between the
    two renames leaves no ``directory``, with the old one whole at
    ``.NAME.old-*``.

    Args:
        directory: the directory to create or replace.
        write: function writing the content into the (empty) directory it
            is given.

    Returns:
        What ``write`` returned.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{directory.name}.partial-", dir=directory.parent)
    )
    try:
        result = write(staging)
        give_default_permissions(staging)
        _swap_in(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def _swap_in(staging, directory):
    if not directory.exists():
        os.replace(staging, directory)
        return
    old = directory.with_name(f".{directory.name}.old-{uuid.uuid4().hex}")
    os.replace(directory, old)
    try:
        os.replace(staging, directory)
    except BaseException:
        with contextlib.suppress(OSError):
            os.replace(old, directory)
        raise
    shutil.rmtree(old, ignore_errors=True)
