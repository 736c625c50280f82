"""What a training run's directory holds, and its bookkeeping.

A run directory receives ``config.json`` (settings, library versions, the
data's identity, the device), ``history.csv`` (one row per finished epoch),
``model.keras`` (the best epoch by validation accuracy), ``saved_model/``,
TensorBoard logs in ``logs/``, ``evaluation/`` and, while training, a
crash-safe ``backup/`` that a resumed run continues from. The names of these
files live here; the callbacks that write them import them.
"""

import csv
import json
import os
import tempfile
from pathlib import Path

from stn_keras.files import write_text_atomically

# The backup's index: which weights files are whole, and the epoch of each.
BACKUP_STATE_FILE = "state.json"
# The key of config.json that holds the data set's class names, in order.
CLASS_NAMES_KEY = "class_names"


class RunDirectory:
    """The files of one run, and what they say about its state.

    Args:
        path: the run directory (need not exist yet).
    """

    def __init__(self, path):
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.history_path = self.path / "history.csv"
        self.model_path = self.path / "model.keras"
        self.saved_model_path = self.path / "saved_model"
        self.logs_path = self.path / "logs"
        self.backup_path = self.path / "backup"
        self.evaluation_path = self.path / "evaluation"

    def has_backup(self):
        """Whether an interrupted run left a committed epoch to resume from."""
        return (self.backup_path / BACKUP_STATE_FILE).is_file()

    def is_finished(self):
        """Whether a run completed here.

        ``config.json`` says so once training ends (``"finished": true``);
        a run that stopped before its first backup says false, and may be
        started again. Runs recorded before that key count as finished when
        they have a best model and no backup.
        """
        if self.has_backup():
            return False
        record = self._read_record()
        if record is not None and "finished" in record:
            return bool(record["finished"])
        return self.model_path.exists()

    def mark_finished(self):
        """Records in ``config.json`` that the run completed."""
        self.write_config({**self._read_record(), "finished": True})

    def mark_failed(self, reason):
        """Records in ``config.json`` that the run failed, and why."""
        self.write_config({**self._read_record(), "finished": False, "failure": reason})

    def failure(self):
        """Why the run failed (``config.json``'s ``failure``), or ``None``."""
        record = self._read_record()
        return None if record is None else record.get("failure")

    def _read_record(self):
        if not self.config_path.is_file():
            return None
        try:
            record = json.loads(self.config_path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(
                f"'{self.config_path}' is not valid JSON ({error}): it is damaged."
            ) from error
        if not isinstance(record, dict):
            raise ValueError(
                f"'{self.config_path}' is damaged: it holds a JSON "
                f"{type(record).__name__}, not the object a run writes."
            )
        return record

    def check_can_start(self, resume):
        """Raises ValueError when a run cannot start (or resume) here."""
        if resume:
            failure = self.failure()
            if failure is not None:
                raise ValueError(
                    f"The run in '{self.path}' failed ({failure}); resuming it "
                    "would fail again. Start it afresh in another --output-dir."
                )
            if not self.has_backup():
                reason = (
                    "the run finished"
                    if self.is_finished()
                    else "it never completed an epoch; start it again without --resume"
                )
                raise ValueError(
                    f"Nothing to resume in '{self.path}': it has no backup ({reason})."
                )
            return
        if self.has_backup() or self.is_finished():
            raise ValueError(
                f"Run directory '{self.path}' already holds a run. Pass --resume "
                "to continue an interrupted run, or choose another --output-dir."
            )

    def check_writable(self):
        """Creates the directory and proves a file can be written in it.

        Run before training, so that a read-only or full disk is reported at
        once, naming the path, instead of after the first epoch.

        Raises:
            ValueError: the directory cannot be created or written to.
        """
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.path) as probe:
                probe.write(b"\0" * 4096)
                probe.flush()
                os.fsync(probe.fileno())
        except OSError as error:
            raise ValueError(
                f"Cannot write to the run directory '{self.path}' "
                f"({error.strerror or error}). Choose another --output-dir, "
                "or free space / fix its permissions."
            ) from error

    def write_config(self, record):
        """Writes ``config.json`` (atomically)."""
        write_text_atomically(
            self.config_path, json.dumps(record, indent=2, default=str) + "\n"
        )

    def read_config(self):
        """The settings this run was started with (``config.json``'s ``config``).

        Raises:
            ValueError: there is no ``config.json`` (nothing was started here),
                or it is damaged.
        """
        return self._required_key("config", dict)

    def read_class_names(self):
        """The class names of the run's data set, in the order of its outputs.

        Raises:
            ValueError: there is no ``config.json`` or it has no class names.
        """
        return self._required_key(CLASS_NAMES_KEY, list)

    def _required_key(self, key, kind):
        record = self._read_record()
        if record is None:
            raise ValueError(
                f"'{self.config_path}' does not exist: no run was started in "
                f"'{self.path}'. Start the run without --resume."
            )
        if not isinstance(record.get(key), kind):
            raise ValueError(
                f"'{self.config_path}' has no {key!r} {kind.__name__}: it was "
                "not written by a training run."
            )
        return record[key]

    def read_history(self):
        """The rows of ``history.csv`` as dicts of floats (``epoch`` an int).

        A metric Keras had no value for (``NA``, e.g. ``val_accuracy`` of a
        run without a validation split) is ``None``.
        """
        if not self.history_path.is_file():
            return []
        return _parse_history(self.history_path.read_text().splitlines(keepends=True))

    def kept_history(self, num_epochs):
        """The rows of the first ``num_epochs`` epochs, checked; writes nothing.

        What a run resumed after ``num_epochs`` finished epochs keeps of
        ``history.csv``, as :meth:`read_history` gives them;
        :meth:`truncate_history` drops the rest.

        Raises:
            ValueError: ``history.csv`` does not hold one row for each of
                epochs ``0 .. num_epochs - 1`` in order (it belongs to
                another run, or was edited), naming the file.
        """
        return self._checked_history(num_epochs)[0][:num_epochs]

    def truncate_history(self, num_epochs):
        """Keeps the header and the rows of the first ``num_epochs`` epochs.

        A run killed after writing an epoch's row but before committing its
        backup redoes that epoch on resume; this drops the stale row first.
        Returns the rows kept, as :meth:`kept_history` does.

        Raises:
            ValueError: as :meth:`kept_history`.
        """
        rows, lines = self._checked_history(num_epochs)
        if len(rows) > num_epochs:
            write_text_atomically(self.history_path, "".join(lines[: num_epochs + 1]))
        return rows[:num_epochs]

    def _checked_history(self, num_epochs):
        """``(every row, every line)`` of ``history.csv``, checked against ``num_epochs``."""
        if not self.history_path.is_file():
            if num_epochs:
                raise self._history_mismatch(num_epochs, "it does not exist")
            return [], []
        lines = self.history_path.read_text().splitlines(keepends=True)
        try:
            rows = _parse_history(lines)
        except (ValueError, KeyError) as error:
            raise self._history_mismatch(num_epochs, f"it is unreadable ({error})") from error
        epochs = [row["epoch"] for row in rows]
        if epochs != list(range(len(rows))) or len(rows) < num_epochs:
            raise self._history_mismatch(num_epochs, f"its rows are of epochs {epochs}")
        return rows, lines

    def _history_mismatch(self, num_epochs, problem):
        return ValueError(
            f"'{self.history_path}' does not match the backup, which holds "
            f"{num_epochs} finished epoch(s): {problem}. "
            "The run cannot be resumed; start it afresh in another --output-dir."
        )


def _parse_history(lines):
    return [
        {key: _history_value(key, value) for key, value in row.items()}
        for row in csv.DictReader(lines)
    ]


def _history_value(key, text):
    if key is None or text is None:
        raise ValueError("a row has a different number of fields than the header")
    if key == "epoch":
        return int(text)
    return None if text in ("", "NA") else float(text)


def best_epoch(rows, monitor):
    """``(value, 1-based epoch)`` of the epoch whose model a run keeps.

    With ``monitor`` (a metric to maximise, ``"val_accuracy"``), the first
    epoch to reach its best value; ``(None, 0)`` when no row has a value of
    it. With ``monitor=None`` (a run without a validation split, which has
    nothing held out to choose on), the last epoch and its training
    ``accuracy``; ``(None, 0)`` without rows.
    """
    if monitor is None:
        return (rows[-1].get("accuracy"), rows[-1]["epoch"] + 1) if rows else (None, 0)
    best, epoch = None, 0
    for row in rows:
        value = row.get(monitor)
        if value is not None and (best is None or value > best):
            best, epoch = value, row["epoch"] + 1
    return best, epoch
