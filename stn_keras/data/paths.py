"""Where data sets live, and fetching the files that are missing.

The data directory is resolved in this order: the ``data_dir`` argument (the
``--data-dir`` flag of the scripts), the ``STN_DATA_DIR`` environment variable,
then ``~/.keras/datasets``. Each data set has a folder there (``mnist/``,
``fashion_mnist/``, ``gtsrb/``).
"""

import contextlib
import logging
import os
import socket

import keras

from stn_keras.files import file_sha256
from stn_keras.files import write_file_atomically

logger = logging.getLogger(__name__)

DATA_DIR_ENVIRONMENT_VARIABLE = "STN_DATA_DIR"
CACHE_DIR_ENVIRONMENT_VARIABLE = "STN_CACHE_DIR"
# A download that has not started within this many seconds is given up, so
# that an offline machine fails at once instead of hanging.
DOWNLOAD_TIMEOUT_SECONDS = 10.0


class MissingDataError(FileNotFoundError):
    """Raised when data files are neither on disk nor downloadable."""


def resolve_data_dir(data_dir=None):
    """Returns the data directory: argument, then STN_DATA_DIR, then Keras'."""
    if data_dir is not None:
        return os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    from_environment = os.environ.get(DATA_DIR_ENVIRONMENT_VARIABLE)
    if from_environment:
        return os.path.abspath(os.path.expanduser(from_environment))
    return os.path.join(os.path.expanduser("~"), ".keras", "datasets")


def resolve_cache_dir():
    """Folder for decoded-array caches: STN_CACHE_DIR, else ~/.cache/stn_keras."""
    from_environment = os.environ.get(CACHE_DIR_ENVIRONMENT_VARIABLE)
    if from_environment:
        return os.path.abspath(os.path.expanduser(from_environment))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    return os.path.join(base, "stn_keras")


def describe_file(path):
    """JSON-serialisable identity of a file: path, size and sha256."""
    return {
        "path": os.fspath(path),
        "bytes": os.path.getsize(path),
        "sha256": file_sha256(path),
    }


@contextlib.contextmanager
def _socket_timeout(seconds):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def download_file(url, destination, md5):
    """Downloads ``url`` to ``destination`` if its md5 matches, atomically.

    ``keras.utils.get_file`` verifies the md5 (when given) and raises
    ``ValueError`` on a mismatch.

    The file is fetched beside ``destination`` and renamed into place only
    once complete and verified, so a failed or interrupted download leaves
    nothing behind.

    Raises:
        OSError or ValueError: the download failed or its checksum differs.
    """
    os.makedirs(os.path.dirname(destination), exist_ok=True)

    def fetch(partial):
        with _socket_timeout(DOWNLOAD_TIMEOUT_SECONDS):
            keras.utils.get_file(
                fname=os.path.basename(partial),
                origin=url,
                file_hash=md5,
                hash_algorithm="md5",
                cache_dir=os.path.dirname(partial),
                cache_subdir="",
                force_download=True,
            )

    write_file_atomically(destination, fetch)
    return destination


def find_or_download(dataset, file_names, urls=None, md5s=None, data_dir=None,
                     search_dirs=(), download=None):
    """Returns the paths of ``file_names`` of ``dataset``, fetching missing ones.

    Args:
        dataset: name of the data set and of its folder in the data directory.
        file_names: the file names needed.
        urls: ``{file_name: url}`` to download missing files from.
        md5s: ``{file_name: md5}`` that a download must match.
        data_dir: the data directory (see ``resolve_data_dir``).
        search_dirs: further folders (after ``<data_dir>/<dataset>``) where
            the complete set of files may already be, such as a system copy.
        download: whether missing files may be downloaded; ``None`` (the
            default) downloads only into the default data directory, never
            into a ``data_dir`` given explicitly (a typo there should fail,
            not fetch and fill a new folder).

    Returns:
        ``{file_name: path}``.

    Raises:
        MissingDataError: when an explicit ``data_dir`` does not exist, or a
            file is missing and cannot be downloaded; the message names the
            files, the folders searched and how to provide them.
    """
    if data_dir is not None and not os.path.isdir(os.path.expanduser(os.fspath(data_dir))):
        raise MissingDataError(
            f"Data directory '{os.fspath(data_dir)}' does not exist. Point "
            "--data-dir at the folder that holds the data sets (for example "
            f"the one with {dataset}/ in it), or leave it unset to use "
            f"{DATA_DIR_ENVIRONMENT_VARIABLE} or ~/.keras/datasets."
        )
    refused = (
        "downloads are off (download=False)"
        if download is False
        else "not downloaded into an explicit data directory without "
        "download=True (--download)"
    )
    if download is None:
        download = data_dir is None
    target = os.path.join(resolve_data_dir(data_dir), dataset)
    for folder in (target, *search_dirs):
        paths = {name: os.path.join(folder, name) for name in file_names}
        if all(os.path.isfile(path) for path in paths.values()):
            return paths
    paths = {name: os.path.join(target, name) for name in file_names}
    missing = [name for name, path in paths.items() if not os.path.isfile(path)]
    failures = []
    for name in missing:
        url = (urls or {}).get(name)
        if not download or url is None:
            reason = "no download known" if url is None else refused
            failures.append(f"{name}: {reason}")
            continue
        logger.info("Downloading %s from %s", name, url)
        try:
            download_file(url, paths[name], (md5s or {}).get(name))
        # keras.utils.get_file wraps network errors in a bare Exception.
        except Exception as error:
            failures.append(f"{name}: download from {url} failed ({error})")
    if failures:
        searched = ", ".join([target, *map(os.fspath, search_dirs)])
        raise MissingDataError(
            f"Data set {dataset!r} is incomplete. Looked for "
            f"{', '.join(file_names)} in: {searched}. "
            + "; ".join(failures)
            + f". Put the files in {target} (or point --data-dir or the "
            f"{DATA_DIR_ENVIRONMENT_VARIABLE} environment variable at a folder "
            f"holding {dataset}/), or run once with internet access."
        )
    return paths
