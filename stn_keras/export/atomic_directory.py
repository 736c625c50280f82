"""`write_directory_atomically`: a directory that appears whole or not at all."""

import os
import shutil
import tempfile
import uuid
from pathlib import Path


def write_directory_atomically(directory, write):
    """Runs ``write(staging_dir)`` beside ``directory``, then renames it into place.

    A process killed while writing leaves ``directory`` as it was (absent, or
    the previous version) and a hidden ``.NAME.partial-*`` folder beside it
    that nothing loads and that may be deleted. A previous ``directory`` is
    moved aside, the new one renamed in, then the old one deleted: a kill
    between the two renames leaves no ``directory`` and the old one at
    ``.NAME.old-*``, never a mix of both.

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
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old-{uuid.uuid4().hex}")
            os.replace(directory, old)
            os.replace(staging, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result
