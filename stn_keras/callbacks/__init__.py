"""Training callbacks: crash-safe backups and best models, transformer images."""

from stn_keras.callbacks.atomic_backup_and_restore import AtomicBackupAndRestore
from stn_keras.callbacks.best_model_checkpoint import BestModelCheckpoint
from stn_keras.callbacks.resumable_early_stopping import ResumableEarlyStopping
from stn_keras.callbacks.transformer_images import TransformerImages
from stn_keras.callbacks.transformer_images import tensorboard_available
