"""`AtomicBackupAndRestore`: epoch backups that survive a kill at any moment."""

import json
import logging
import os
import shutil

import keras
import numpy as np

from stn_keras.files import file_sha256
from stn_keras.files import write_file_atomically
from stn_keras.files import write_text_atomically
from stn_keras.run_dir import BACKUP_STATE_FILE

logger = logging.getLogger(__name__)

# Backups kept: the newest, and one to fall back on when it is damaged.
KEPT_BACKUPS = 2
_START_AFRESH = "Start the run afresh in another --output-dir."


class BackupError(ValueError):
    """Raised when a backup cannot be trusted: the message names the files."""


def seed_states(model):
    """The states of ``model``'s random seed generators (dropout's, ...).

    ``save_weights`` leaves them out, yet they decide which units the next
    training step drops: a resumed run needs them to repeat the
    uninterrupted one.
    """
    return [
        variable
        for variable in model.variables
        if variable.name == "seed_generator_state"
    ]


class AtomicBackupAndRestore(keras.callbacks.Callback):
    """Backs up the training state at each epoch end; restores it on resume.

    Does what ``keras.callbacks.BackupAndRestore`` does, but commits each
    backup atomically and verifies it before trusting it. The weights (model
    and optimizer state) are written to a temporary file and renamed into
    place, then a small ``state.json`` is renamed into place: it lists the
    last ``KEPT_BACKUPS`` backups, newest first, each with its number of
    finished epochs, its weights file, that file's sha256 and the states of
    the model's random seed generators (which ``save_weights`` leaves out,
    and which dropout needs to repeat itself). Keras' callback writes the
    weights and the epoch counter as two separate files in place, so a kill
    between (or during) the two writes would resume from a mismatched or
    truncated backup. Here, whenever the process dies, ``state.json`` names
    complete backups; on resume, a weights file whose sha256 differs (flipped
    bytes, truncated, empty, missing) is refused, saying so, and the previous
    backup is used instead.

    Args:
        backup_dir: directory for the backup (created when needed).
        delete_on_success: remove the backup when ``fit`` ends normally.
    """

    def __init__(self, backup_dir, delete_on_success=True):
        super().__init__()
        self.backup_dir = str(backup_dir)
        self.delete_on_success = delete_on_success
        self.state_path = os.path.join(self.backup_dir, BACKUP_STATE_FILE)
        # The backups to resume from and keep, newest first; None until read.
        self._backups = None

    def read_state(self):
        """The committed ``state.json`` (``{"backups": [...]}``) or ``None``.

        Raises:
            BackupError: ``state.json`` is not one this callback wrote.
        """
        if not os.path.exists(self.state_path):
            return None
        try:
            with open(self.state_path) as file:
                state = json.load(file)
            if "weights" in state and "backups" not in state:
                # One backup, written before backups had checksums.
                state = {"backups": [{**state, "sha256": None}]}
            for entry in state["backups"]:
                int(entry["epoch"]), str(entry["weights"]), str(entry["sha256"])
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise BackupError(
                f"The backup index '{self.state_path}' is damaged ({type(error).__name__}: "
                f"{error}), so no backup of the run can be trusted. {_START_AFRESH}"
            ) from error
        return state

    def _damage(self, entry):
        """What is wrong with the weights file of ``entry``, or ``None``."""
        path = os.path.join(self.backup_dir, entry["weights"])
        if not os.path.isfile(path):
            return f"'{path}' is missing"
        if os.path.getsize(path) == 0:
            return f"'{path}' is empty"
        if entry["sha256"] is None:
            logger.warning("'%s' predates backup checksums: resuming from it unverified.", path)
            return None
        if file_sha256(path) != entry["sha256"]:
            return (
                f"'{path}' is damaged (its sha256 differs from the one "
                f"recorded in {BACKUP_STATE_FILE}: truncated or altered)"
            )
        return None

    def verified_backups(self):
        """The backups to resume from, newest first, from the newest whole one.

        Each damaged backup newer than it is refused with a warning naming
        its file. Empty when there is no backup.

        Raises:
            BackupError: ``state.json`` is damaged, or every backup is.
        """
        state = self.read_state()
        if state is None:
            return []
        problems = []
        for index, entry in enumerate(state["backups"]):
            problem = self._damage(entry)
            if problem is None:
                for refused in problems:
                    logger.warning(
                        "Refusing a backup: %s. Resuming from the previous one "
                        "instead, epoch %d ('%s').",
                        refused,
                        entry["epoch"],
                        os.path.join(self.backup_dir, entry["weights"]),
                    )
                return state["backups"][index:]
            problems.append(problem)
        raise BackupError(
            f"No backup in '{self.backup_dir}' can be trusted: "
            + "; ".join(problems)
            + f". {_START_AFRESH}"
        )

    def initial_epoch(self):
        """The number of epochs finished by the backed-up run (0 if none).

        Verifies the backups (see :meth:`verified_backups`); ``fit`` then
        restores the one this counts.
        """
        self._backups = self.verified_backups()
        return self._backups[0]["epoch"] if self._backups else 0

    @property
    def backed_up_epochs(self):
        """The epochs finished and backed up so far (0 before any)."""
        return self._backups[0]["epoch"] if self._backups else 0

    def on_train_begin(self, logs=None):
        if self._backups is None:
            self.initial_epoch()
        if not self._backups:
            return
        entry = self._backups[0]
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(os.path.join(self.backup_dir, entry["weights"]))
        saved = entry.get("seed_states", [])
        variables = seed_states(self.model)
        if len(saved) != len(variables):
            raise BackupError(
                f"The backup in '{self.backup_dir}' holds {len(saved)} random "
                f"seed state(s), the model has {len(variables)}: it was made by "
                "another model. Resume with the run's own settings."
            )
        for variable, value in zip(variables, saved):
            variable.assign(np.asarray(value, dtype=variable.dtype))

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.backup_dir, exist_ok=True)
        weights = f"epoch-{epoch + 1:05d}.weights.h5"

        def save(partial):
            self.model.save_weights(partial, overwrite=True)
            return file_sha256(partial)

        sha256 = write_file_atomically(os.path.join(self.backup_dir, weights), save)
        entry = {
            "epoch": epoch + 1,
            "weights": weights,
            "sha256": sha256,
            "seed_states": [variable.numpy().tolist() for variable in seed_states(self.model)],
        }
        older = [kept for kept in self._backups or [] if kept["weights"] != weights]
        self._backups = [entry, *older][:KEPT_BACKUPS]
        write_text_atomically(self.state_path, json.dumps({"backups": self._backups}))
        listed = {kept["weights"] for kept in self._backups}
        for name in os.listdir(self.backup_dir):
            if name.endswith(".weights.h5") and name not in listed:
                os.remove(os.path.join(self.backup_dir, name))

    def on_train_end(self, logs=None):
        if self.delete_on_success and os.path.isdir(self.backup_dir):
            # The state file goes first: a signal during the deletion then
            # leaves no state naming weights that are already gone.
            if os.path.exists(self.state_path):
                os.remove(self.state_path)
            shutil.rmtree(self.backup_dir)
