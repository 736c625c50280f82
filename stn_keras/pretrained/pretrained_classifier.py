"""`PretrainedClassifier`: a trained model with its class names and image decoding."""

import numpy as np

from stn_keras.pretrained.image_inputs import decoder_error_message
from stn_keras.pretrained.image_inputs import encoded_or_array
from stn_keras.pretrained.image_inputs import image_label


class PretrainedClassifier:
    """A loaded classifier that takes images of any size and format.

    Made by `stn_keras.pretrained.load`. Encoded images (paths, bytes, PIL
    images, uint8 arrays) are decoded, converted to the model's channels,
    resized and mapped to its input range by the code of the SavedModel's
    ``predict_bytes`` signature, so both give the same probabilities for
    the same bytes.

    Args:
        trained: a ``stn_keras.evaluation.TrainedModel``.
        class_names: one name per class.
        decoding: the options of ``stn_keras.export.signatures.decoding_options``.
        source: the path the model was loaded from.

    Attributes:
        model: the Keras model (``None`` when loaded from a SavedModel).
        class_names: one name per class.
        input_shape: the model's ``(height, width, channels)``.
        source: the path the model was loaded from.
    """

    def __init__(self, trained, class_names, decoding, source):
        if len(class_names) != trained.num_classes:
            raise ValueError(
                f"`class_names` must have one name per class of the model "
                f"({trained.num_classes}). Received: {len(class_names)} names "
                f"for the model at '{source}'"
            )
        self._trained = trained
        self._decoding = dict(decoding)
        self.model = trained.model
        self.class_names = [str(name) for name in class_names]
        self.input_shape = tuple(int(size) for size in trained.input_shape)
        self.source = source

    def preprocess(self, images):
        """The model's float32 input batch for ``images``.

        Args:
            images: a list of file paths, encoded bytes (PNG, JPEG, BMP, GIF,
                binary PPM/PGM), PIL images, uint8 arrays of any size, or
                float32 arrays already of `input_shape`.

        Returns:
            float32 ``(len(images), height, width, channels)``.

        Raises:
            ValueError: naming the first image that cannot be read or
                decoded, and why.
        """
        import tensorflow as tf

        from stn_keras.export.signatures import decode_model_inputs

        batch = []
        for index, image in enumerate(images):
            label = image_label(image, index)
            try:
                value = encoded_or_array(image, self.input_shape)
                if isinstance(value, bytes):
                    value = decode_model_inputs(
                        tf.constant([value]), self.input_shape, self._decoding
                    ).numpy()[0]
            except ValueError as error:
                raise ValueError(f"Cannot use {label}: {error}") from error
            except tf.errors.InvalidArgumentError as error:
                raise ValueError(
                    f"Cannot decode {label}: {decoder_error_message(error.message)}"
                ) from error
            batch.append(value)
        if not batch:
            return np.zeros((0, *self.input_shape), "float32")
        return np.stack(batch)

    def predict_probabilities(self, images):
        """Class probabilities ``(len(images), num_classes)`` (see `preprocess`)."""
        return np.asarray(self._trained.predict(self.preprocess(images)), "float32")

    def predict(self, images, top_k=5):
        """The most probable classes of each image.

        Args:
            images: as for `preprocess`.
            top_k: how many classes to list per image.

        Returns:
            One dict per image: ``class_id`` (int), ``class_name``,
            ``probability`` (of that class) and ``top_k``, a list of up to
            ``top_k`` ``{"class_id", "class_name", "probability"}`` in
            decreasing probability.
        """
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"`top_k` must be an int >= 1. Received: top_k={top_k!r}")
        results = []
        for probabilities in self.predict_probabilities(images):
            order = np.argsort(-probabilities, kind="stable")[:top_k]
            ranked = [
                {
                    "class_id": int(index),
                    "class_name": self.class_names[index],
                    "probability": float(probabilities[index]),
                }
                for index in order
            ]
            results.append({**ranked[0], "top_k": ranked})
        return results

    def predict_each(self, images, top_k=5):
        """`predict` image by image: a bad image does not stop the others.

        Returns:
            One ``(result, error)`` per image: the dict of `predict` and
            ``None``, or ``None`` and the message saying why the image was
            not answered.
        """
        answers = []
        for index, image in enumerate(images):
            try:
                # A one-image list keeps the image's own name in the message.
                (result,) = self.predict([image], top_k)
            except ValueError as error:
                answers.append((None, str(error).replace("image 0 ", f"image {index} ", 1)))
            else:
                answers.append((result, None))
        return answers

    def transform(self, images):
        """What each spatial transformer on the model's input does to ``images``.

        Returns:
            A list with one ``stn_keras.evaluation.TransformerView`` per
            transformer (its ``images`` output and ``theta``), empty for a
            model without one.

        Raises:
            ValueError: a SavedModel exported without transformer metadata.
        """
        if self._trained.transformer_views is None:
            raise ValueError(
                f"The SavedModel '{self.source}' has no transformer metadata: "
                "re-export it with `python -m stn_keras.export RUN_DIR`."
            )
        return self._trained.transformer_views(self.preprocess(images))

    def save_transform_figure(self, images, path):
        """Writes each input with its sampled region outlined beside the transformer's output.

        One row per image: the model's input (as decoded and resized), the
        same with the region each transformer samples outlined, each
        transformer's output, and the predicted class.

        Returns:
            ``path``.

        Raises:
            ValueError: the model has no spatial transformer on its input.
        """
        from stn_keras.evaluation import draw_transformer_views

        batch = self.preprocess(images)
        views = self.transform(batch)
        if not views:
            raise ValueError(f"The model at '{self.source}' has no spatial transformer on its input.")
        predictions = np.asarray(self._trained.predict(batch)).argmax(axis=-1)
        draw_transformer_views(views, batch, None, predictions, self.class_names, path)
        return path
