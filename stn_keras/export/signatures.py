"""`export_saved_model`: a trained classifier as a serving-ready SavedModel."""

import functools
import json
import logging
from pathlib import Path

import keras

from stn_keras.files import write_directory_atomically
from stn_keras.ops.tensorflow_speedups import tensorflow_speedups
from stn_keras.export.image_decoding import decode_image
from stn_keras.export.names import BYTES_INPUT
from stn_keras.export.names import BYTES_SIGNATURE
from stn_keras.export.names import DEFAULT_MAX_IMAGE_PIXELS
from stn_keras.export.names import EXPORT_METADATA
from stn_keras.export.names import IMAGES_INPUT
from stn_keras.export.names import SERVING_DEFAULT_SIGNATURE
from stn_keras.export.names import TRANSFORMERS_METADATA
from stn_keras.export.names import TRANSFORMS_SIGNATURE
from stn_keras.validation import check_bool
from stn_keras.validation import check_choice
from stn_keras.validation import check_int

logger = logging.getLogger(__name__)

RESIZE_METHODS = ("bilinear", "nearest", "bicubic", "area", "lanczos3")
# Channel counts the bytes signature can convert decoded images to.
BYTES_SIGNATURE_CHANNELS = (1, 3)


# Plain TensorFlow ops: servers and converters need not support XLA.
@tensorflow_speedups(False)
def export_saved_model(
    model,
    export_dir,
    class_names=None,
    input_range=(0.0, 1.0),
    resize_method="bilinear",
    antialias=True,
    probabilities_output=0,
    max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS,
):
    """Writes ``model`` as a SavedModel with serving signatures, atomically.

    The decoding in ``predict_bytes`` reproduces the training input pipeline:
    the header of each image is checked before anything is decoded (format
    and variant, at least one pixel, at most ``max_image_pixels``; see
    `stn_keras.export.image_headers`); the image is then decoded by its
    format's decoder to 8- or 16-bit integers (never to float: see
    `stn_keras.export.image_decoding`) and scaled to float32 ``[0, 1]``
    (value / 255 for 8 bits, value / 65535 for 16-bit PNG, value / maxval
    for PPM/PGM); a colour image becomes grey with
    ``tf.image.rgb_to_grayscale`` (ITU-R 601 luma weights 0.2989, 0.5870,
    0.1140) for a one-channel model, a grey image is repeated to three
    channels for an RGB model, and an alpha channel is dropped; the result
    is resized to the model's input size with
    ``tf.image.resize(method=resize_method, antialias=antialias)`` and mapped
    linearly from ``[0, 1]`` to ``input_range``. Accepted: PNG, JPEG (not
    CMYK), GIF (first frame), BMP (uncompressed 8-bit palette, 24- and
    32-bit, top-down too), still WebP and binary PPM/PGM (``P6``/``P5``, read
    by graph ops, ``#`` comments in the header, 8- or 16-bit samples). The
    images of one request are decoded one after the other, so that memory
    holds one decoded image at a time.

    The SavedModel is written beside ``export_dir`` and renamed into place
    (see `write_directory_atomically`): an interrupted export never leaves a
    directory that loads half.

    Args:
        model: a built Keras classifier with one float image input of known
            ``(height, width, channels)`` (channels last) returning class
            probabilities; a model with several outputs must say which one
            holds the probabilities with ``probabilities_output``.
        export_dir: directory to write the SavedModel to (replaced if it
            exists). For TensorFlow Serving it must be a numbered version
            folder, such as ``models/mnist/1``.
        class_names: one name per class, or ``None`` for ``"0"``, ``"1"``...
        input_range: ``(low, high)`` range of the model's training inputs;
            decoded images in ``[0, 1]`` are mapped linearly onto it.
        resize_method: method of ``tf.image.resize`` used in
            ``predict_bytes``; one of ``RESIZE_METHODS``.
        antialias: the ``antialias`` argument of ``tf.image.resize``. With
            the default bilinear method, ``True`` matches PIL's bilinear
            resize, which the data layer uses for GTSRB: a triangle filter
            over the footprint when shrinking, plain bilinear interpolation
            when enlarging.
        probabilities_output: index or name of the model output holding the
            class probabilities, for models with several outputs.
        max_image_pixels: the most decoded pixels (height x width x GIF
            frames) an image sent to ``predict_bytes`` may declare; larger
            ones are refused with an INVALID_ARGUMENT error naming the limit
            and the declared size. 4096 x 4096 by default.

    Returns:
        The list of signature names written.
    """
    from stn_keras.models.introspection import spatial_transformer_layers

    _check_backend()
    image_shape = _image_shape(model)
    output_index = _output_index(model, probabilities_output)
    num_classes = int(_as_list(model.outputs)[output_index].shape[-1])
    options = {
        "image_shape": list(image_shape),
        "class_names": _class_names(class_names, num_classes),
        **decoding_options(input_range, resize_method, antialias, max_image_pixels),
    }
    transformers = spatial_transformer_layers(model)
    archive, options["signatures"] = make_export_archive(
        model, output_index, options, transformers
    )
    write_directory_atomically(
        export_dir,
        functools.partial(
            write_saved_model, archive=archive, options=options, transformers=transformers
        ),
    )
    logger.info("Exported SavedModel with %s to %s", options["signatures"], export_dir)
    return options["signatures"]


def make_export_archive(model, output_index, options, transformers):
    """The ``keras.export.ExportArchive`` of ``model``'s serving signatures.

    The signatures are traced when the archive is written; under
    `export_saved_model` that is with the sampler as plain TensorFlow ops
    (``tensorflow_speedups(False)``).

    Args:
        model: the classifier, as `export_saved_model` takes it.
        output_index: the index of its output holding the probabilities.
        options: the export options (``image_shape``, ``class_names`` and
            those of `decoding_options`).
        transformers: the model's spatial transformer layers; with any, the
            ``spatial_transforms`` signature returns their outputs.

    Returns:
        ``(archive, signature_names)``: ``serving_default`` always,
        ``predict_bytes`` when the model's channels allow it,
        ``spatial_transforms`` when it has transformers.
    """
    import tensorflow as tf

    from stn_keras.models.introspection import transformer_model

    archive = keras.export.ExportArchive()
    archive.track(model)
    images_spec = tf.TensorSpec((None, *options["image_shape"]), tf.float32, name=IMAGES_INPUT)
    archive.add_endpoint(
        SERVING_DEFAULT_SIGNATURE,
        functools.partial(serving_default, model, output_index),
        input_signature=[images_spec],
    )
    signatures = [SERVING_DEFAULT_SIGNATURE]
    if _bytes_signature_fits(options["image_shape"][-1]):
        archive.add_endpoint(
            BYTES_SIGNATURE,
            functools.partial(predict_bytes, model, output_index, options),
            input_signature=[tf.TensorSpec((None,), tf.string, name=BYTES_INPUT)],
        )
        signatures.append(BYTES_SIGNATURE)
    if transformers:
        archive.add_endpoint(
            TRANSFORMS_SIGNATURE,
            functools.partial(
                spatial_transforms, transformer_model(model), transformers
            ),
            input_signature=[images_spec],
        )
        signatures.append(TRANSFORMS_SIGNATURE)
    return archive, signatures


def class_probabilities(model, output_index, images):
    """``model``'s probabilities output for ``images``, as float32."""
    import tensorflow as tf

    outputs = _as_list(model(images, training=False))
    return tf.cast(outputs[output_index], tf.float32)


def serving_default(model, output_index, images):
    """The ``serving_default`` signature: float images -> probabilities."""
    return {"probabilities": class_probabilities(model, output_index, images)}


def predict_bytes(model, output_index, options, image_bytes):
    """The ``predict_bytes`` signature: encoded images -> classes.

    Args:
        model: the classifier.
        output_index: the index of its output holding the probabilities.
        options: the export options (``image_shape``, ``class_names`` and
            those of `decoding_options`).
        image_bytes: string tensor ``(batch,)``, the files' bytes.

    Returns:
        A dict of ``class_ids`` (int64), ``class_names`` and
        ``probabilities`` (float32), one row per image.
    """
    import tensorflow as tf

    probabilities = class_probabilities(
        model,
        output_index,
        decode_model_inputs(image_bytes, options["image_shape"], options),
    )
    class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
    return {
        "class_ids": class_ids,
        "class_names": tf.gather(tf.constant(options["class_names"]), class_ids),
        "probabilities": probabilities,
    }


def spatial_transforms(transforms, transformers, images):
    """The ``spatial_transforms`` signature: each transformer's output.

    Args:
        transforms: the model returning each transformer's sampled images
            and theta, in turn (`transformer_model`).
        transformers: the spatial transformer layers, in that order.
        images: float images, the classifier's input.

    Returns:
        A dict of ``{name}_images`` and ``{name}_theta`` (float32) per
        transformer.
    """
    import tensorflow as tf

    outputs = transforms(images, training=False)
    named = {}
    for index, layer in enumerate(transformers):
        named[f"{layer.name}_images"] = tf.cast(outputs[2 * index], tf.float32)
        named[f"{layer.name}_theta"] = tf.cast(outputs[2 * index + 1], tf.float32)
    return named


def write_saved_model(directory, archive, options, transformers):
    """Writes the SavedModel of ``archive`` and its metadata to ``directory``.

    The export options go to ``EXPORT_METADATA`` and, with transformers,
    what drawing their sampled regions needs to ``TRANSFORMERS_METADATA``.
    """
    archive.write_out(str(directory), verbose=False)
    _write_json(directory / EXPORT_METADATA, options)
    if transformers:
        _write_json(
            directory / TRANSFORMERS_METADATA,
            [_transformer_metadata(layer) for layer in transformers],
        )


def decoding_options(
    input_range=(0.0, 1.0),
    resize_method="bilinear",
    antialias=True,
    max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS,
):
    """The checked options of `decode_model_inputs`, as the export records them.

    The arguments are those of `export_saved_model`; the defaults are the
    export's, so a ``.keras`` model fed through `decode_model_inputs` with
    them sees what its exported ``predict_bytes`` would.

    Returns:
        A dict with ``input_range`` (a list), ``resize_method``,
        ``antialias`` and ``max_image_pixels``: the keys of the SavedModel's
        ``assets.extra/export_options.json`` that decoding reads.
    """
    return {
        "input_range": list(_input_range(input_range)),
        "resize_method": check_choice("resize_method", resize_method, RESIZE_METHODS),
        "antialias": check_bool("antialias", antialias),
        "max_image_pixels": check_int("max_image_pixels", max_image_pixels, 1),
    }


def decode_model_inputs(image_bytes, image_shape, options):
    """Encoded images -> the model's float32 input batch, as ``predict_bytes`` does.

    The one preprocessing of encoded images: the ``predict_bytes`` signature
    runs it in its graph, and `stn_keras.pretrained` eagerly on the same
    bytes. Each image is decoded and resized by `decode_image`, one after
    the other (memory holds one decoded image at a time), then mapped from
    ``[0, 1]`` onto ``options["input_range"]``.

    Args:
        image_bytes: string tensor ``(batch,)``, the files' bytes.
        image_shape: the model's ``(height, width, channels)``.
        options: the dict of `decoding_options`.

    Returns:
        float32 ``(batch, height, width, channels)``.

    Raises:
        tf.errors.InvalidArgumentError: an image the decoder refuses.
    """
    import tensorflow as tf

    height, width, channels = image_shape
    low, high = options["input_range"]

    def decode(encoded):
        return decode_image(
            encoded,
            (height, width),
            channels,
            options["resize_method"],
            options["antialias"],
            options["max_image_pixels"],
        )

    images = tf.map_fn(
        decode,
        image_bytes,
        fn_output_signature=tf.TensorSpec((height, width, channels), tf.float32),
        parallel_iterations=1,
    )
    return images * (high - low) + low


def _check_backend():
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "export_saved_model needs the TensorFlow backend; set "
            "KERAS_BACKEND=tensorflow, or save model.keras and run "
            "`python -m stn_keras.export RUN_DIR` with TensorFlow. Received: "
            f"backend={keras.backend.backend()!r}"
        )


def _bytes_signature_fits(channels):
    """Whether ``predict_bytes`` can convert decoded images to ``channels``."""
    if channels in BYTES_SIGNATURE_CHANNELS:
        return True
    logger.warning(
        "The model takes %d channels; the %r signature converts decoded "
        "images to %s channels only, so it is not exported.",
        channels,
        BYTES_SIGNATURE,
        BYTES_SIGNATURE_CHANNELS,
    )
    return False


def _transformer_metadata(layer):
    """What drawing a transformer's sampled region needs beside theta."""
    return {
        "name": layer.name,
        "transform": layer.transform,
        "align_corners": layer.align_corners,
        "grid_shape": list(layer.control_shape),
        "input_shape": list(layer.input.shape[1:]),
    }


def _write_json(path, value):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2))


def _as_list(outputs):
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _image_shape(model):
    inputs = _as_list(getattr(model, "inputs", None) if model.built else None)
    if len(inputs) != 1 or inputs[0] is None:
        raise ValueError(
            "export_saved_model expects a built model with exactly one image "
            f"input. Received: inputs={inputs}"
        )
    shape = tuple(inputs[0].shape)
    if len(shape) != 4 or None in shape[1:]:
        raise ValueError(
            "export_saved_model expects one input of shape (batch, height, "
            "width, channels) with known height, width and channels. "
            f"Received: input shape={shape}"
        )
    return tuple(int(size) for size in shape[1:])


def _output_index(model, probabilities_output):
    output_names = list(model.output_names)
    if isinstance(probabilities_output, str):
        name = check_choice(
            "probabilities_output", probabilities_output, output_names, what="output name"
        )
        return output_names.index(name)
    return check_int("probabilities_output", probabilities_output, 0, len(output_names) - 1)


def _class_names(class_names, num_classes):
    if class_names is None:
        return [str(index) for index in range(num_classes)]
    class_names = list(class_names)
    if len(class_names) != num_classes or not all(
        isinstance(name, str) for name in class_names
    ):
        raise ValueError(
            f"`class_names` must be {num_classes} strings, one per class of "
            f"the model's output. Received: class_names={class_names!r}"
        )
    return class_names


def _input_range(input_range):
    try:
        low, high = (float(value) for value in input_range)
    except (TypeError, ValueError):
        low = high = None
    if low is None or not low < high:
        raise ValueError(
            "`input_range` must be two numbers (low, high) with low < high. "
            f"Received: input_range={input_range!r}"
        )
    return low, high
