"""Losses that Keras does not provide: sparse crossentropy with label smoothing."""

import keras
from keras import ops

from stn_keras.validation import check_number


@keras.saving.register_keras_serializable(package="stn_keras")
class SmoothedSparseCategoricalCrossentropy(keras.losses.Loss):
    """Crossentropy of integer labels, smoothed towards the uniform distribution.

    Keras' ``SparseCategoricalCrossentropy`` has no ``label_smoothing``; this
    is ``keras.losses.CategoricalCrossentropy(label_smoothing=...)`` applied
    to the one-hot encoding of the integer labels: the true class gets
    ``1 - label_smoothing + label_smoothing / num_classes``, every other
    class ``label_smoothing / num_classes``. Predictions are probabilities.

    Args:
        label_smoothing: in ``[0, 1)``; 0 is the plain sparse crossentropy.
        reduction: as for any `keras.losses.Loss`.
        name: the loss's name.
        dtype: the dtype of the loss's computations.
    """

    def __init__(
        self,
        label_smoothing=0.1,
        reduction="sum_over_batch_size",
        name="smoothed_sparse_categorical_crossentropy",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.label_smoothing = check_number(
            "label_smoothing", label_smoothing, 0, 1, exclusive_maximum=True
        )

    def call(self, y_true, y_pred):
        # Labels of shape (batch, 1), as Keras' sparse losses also take them.
        if len(y_true.shape) == len(y_pred.shape):
            y_true = ops.squeeze(y_true, axis=-1)
        num_classes = y_pred.shape[-1]
        targets = ops.one_hot(ops.cast(y_true, "int32"), num_classes, dtype=y_pred.dtype)
        targets = targets * (1.0 - self.label_smoothing) + self.label_smoothing / num_classes
        return ops.categorical_crossentropy(targets, y_pred)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}
