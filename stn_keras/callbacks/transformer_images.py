"""`TransformerImages`: the transformer's inputs and outputs in TensorBoard."""

import importlib.util

import keras
import numpy as np

from stn_keras.models import spatial_transformer_layers
from stn_keras.models import transformer_model
from stn_keras.runtime import tensorflow_available
from stn_keras.visualization import displayable_images


def tensorboard_available():
    """Whether TensorBoard logs can be written: TensorFlow and ``tensorboard``.

    Keras' TensorBoard callback and the image summaries here write through
    ``tf.summary`` whatever the Keras backend, so both packages are needed.
    """
    return tensorflow_available() and importlib.util.find_spec("tensorboard") is not None


class TransformerImages(keras.callbacks.Callback):
    """Writes a few images and what each transformer makes of them, per epoch.

    Images go to ``log_dir`` as TensorBoard image summaries named
    ``inputs`` and ``<transformer name>`` (feature-map transformers are shown
    as the mean over their channels). Needs TensorFlow and the ``tensorboard`` package.

    Args:
        log_dir: TensorBoard log directory (for example ``run/logs/images``).
        images: float32 images in ``[0, 1]``, ``(count, height, width,
            channels)``: a fixed batch, so epochs can be compared.
    """

    def __init__(self, log_dir, images):
        super().__init__()
        self.log_dir = str(log_dir)
        self.images = np.asarray(images, dtype="float32")
        self._writer = None

    def on_train_begin(self, logs=None):
        import tensorflow as tf

        self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            tf.summary.image(
                "inputs", displayable_images(self.images), step=0, max_outputs=16
            )

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        sub_model = transformer_model(self.model)
        if sub_model is None:
            return
        # A direct call, not predict: predict would shard the few images
        # over data-parallel replicas, which their count need not divide.
        outputs = [
            keras.ops.convert_to_numpy(output)
            for output in sub_model([self.images], training=False)
        ]
        names = [layer.name for layer in spatial_transformer_layers(self.model)]
        with self._writer.as_default():
            for name, transformed in zip(names, outputs[0::2]):
                tf.summary.image(
                    name,
                    displayable_images(np.asarray(transformed, "float32")),
                    step=epoch + 1,
                    max_outputs=16,
                )
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()

