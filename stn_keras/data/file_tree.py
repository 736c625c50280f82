"""A read-only tree of files: a zip archive or a folder, behind one API."""

import hashlib
import os
import zipfile
import zlib

from stn_keras.data import paths

# What zipfile raises for a truncated archive or a damaged member.
_ZIP_DAMAGE = (zipfile.BadZipFile, zlib.error, EOFError)


class DamagedArchiveError(ValueError):
    """Raised when a zip archive is truncated or its bytes are damaged.

    ``path`` is the archive; the message names it and what is wrong.
    """

    def __init__(self, path, problem):
        super().__init__(f"Archive '{path}' is damaged: {problem}")
        self.path = path


class FileTree:
    """Files of a zip archive or of a folder, named by ``/``-separated paths.

    Args:
        location: a ``.zip`` file or a folder.

    Raises:
        DamagedArchiveError: (here or from :meth:`read`) the zip is
            truncated or a member fails its CRC-32 check.
    """

    def __init__(self, location):
        self.location = os.fspath(location)
        self.is_zip = os.path.isfile(self.location)
        if self.is_zip:
            try:
                self._archive = zipfile.ZipFile(self.location)
            except _ZIP_DAMAGE as error:
                raise DamagedArchiveError(
                    self.location,
                    f"it is not a complete zip archive, truncated or overwritten ({error})",
                ) from error
            self._names = [
                info.filename
                for info in self._archive.infolist()
                if not info.is_dir()
            ]
        else:
            self._archive = None
            self._names = [
                os.path.relpath(os.path.join(folder, file), self.location).replace(
                    os.sep, "/"
                )
                for folder, _, files in os.walk(self.location)
                for file in files
            ]

    def names(self):
        """All file paths in the tree."""
        return list(self._names)

    def read(self, name):
        """The bytes of file ``name``."""
        if self._archive is not None:
            try:
                return self._archive.read(name)
            except _ZIP_DAMAGE as error:
                raise DamagedArchiveError(
                    self.location, f"its member {name!r} cannot be read ({error})"
                ) from error
        with open(os.path.join(self.location, name), "rb") as file:
            return file.read()

    def describe(self, selected_names=None):
        """JSON-serialisable identity of the tree, with a checksum.

        A zip is identified by its sha256; a folder by the sizes and
        modification times of ``selected_names`` (all files by default),
        which is cheap and changes whenever a file does.
        """
        if self._archive is not None:
            return paths.describe_file(self.location)
        digest = hashlib.sha256()
        for name in sorted(selected_names or self._names):
            status = os.stat(os.path.join(self.location, name))
            digest.update(f"{name}\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
        return {"path": self.location, "listing_sha256": digest.hexdigest()}

    def close(self):
        if self._archive is not None:
            self._archive.close()
