"""`AtomicBackupAndRestore`: epoch backups that survive a kill at any moment."""

import json
import os
import shutil

import keras
import numpy as np

STATE_FILE = "state.json"


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
    backup atomically: the weights (model and optimizer state) are written
    to a temporary file and renamed into place, then a small ``state.json``
    naming them, the number of finished epochs and the states of the
    model's random seed generators (which ``save_weights`` leaves out, and
    which dropout needs to repeat itself) is renamed into place.
    Keras' callback writes the weights and the epoch counter as two separate
    files in place, so a kill between (or during) the two writes would resume
    from a mismatched or truncated backup. Here, whenever the process dies,
    ``state.json`` names a complete backup of the last finished epoch.

    Args:
        backup_dir: directory for the backup (created when needed).
        delete_on_success: remove the backup when ``fit`` ends normally.
    """

    def __init__(self, backup_dir, delete_on_success=True):
        super().__init__()
        self.backup_dir = str(backup_dir)
        self.delete_on_success = delete_on_success
        self.extra_state = {}

    def read_state(self):
        """The last committed state (``{"epoch": int, ...}``) or ``None``."""
        path = os.path.join(self.backup_dir, STATE_FILE)
        if not os.path.exists(path):
            return None
        with open(path) as file:
            return json.load(file)

    def initial_epoch(self):
        """The number of epochs finished by the backed-up run (0 if none)."""
        state = self.read_state()
        return 0 if state is None else int(state["epoch"])

    def on_train_begin(self, logs=None):
        state = self.read_state()
        if state is None:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(os.path.join(self.backup_dir, state["weights"]))
        saved = state.get("seed_states", [])
        variables = seed_states(self.model)
        if len(saved) != len(variables):
            raise ValueError(
                f"The backup in '{self.backup_dir}' holds {len(saved)} random "
                f"seed state(s), the model has {len(variables)}: it was made by "
                "another model. Resume with the run's own settings."
            )
        for variable, value in zip(variables, saved):
            variable.assign(np.asarray(value, dtype=variable.dtype))

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.backup_dir, exist_ok=True)
        weights = f"epoch-{epoch + 1:05d}.weights.h5"
        partial = os.path.join(self.backup_dir, f"partial-{weights}")
        self.model.save_weights(partial, overwrite=True)
        os.replace(partial, os.path.join(self.backup_dir, weights))
        state = {
            "epoch": epoch + 1,
            "weights": weights,
            "seed_states": [variable.numpy().tolist() for variable in seed_states(self.model)],
            **self.extra_state,
        }
        partial_state = os.path.join(self.backup_dir, f"partial-{STATE_FILE}")
        with open(partial_state, "w") as file:
            json.dump(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial_state, os.path.join(self.backup_dir, STATE_FILE))
        for name in os.listdir(self.backup_dir):
            if name.endswith(".weights.h5") and name != weights:
                os.remove(os.path.join(self.backup_dir, name))

    def on_train_end(self, logs=None):
        if self.delete_on_success and os.path.isdir(self.backup_dir):
            # The state file goes first: a signal during the deletion then
            # leaves no state naming weights that are already gone.
            state = os.path.join(self.backup_dir, STATE_FILE)
            if os.path.exists(state):
                os.remove(state)
            shutil.rmtree(self.backup_dir)
