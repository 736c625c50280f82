"""Training callbacks: crash-safe backups and transformer images for TensorBoard."""

from stn_keras.callbacks.atomic_backup_and_restore import AtomicBackupAndRestore
from stn_keras.callbacks.transformer_images import TransformerImages
from stn_keras.callbacks.transformer_images import tensorboard_available
