"""Export a trained classifier as a serving-ready TensorFlow SavedModel.

The SavedModel written by `export_saved_model` carries three signatures:

- ``serving_default``: float32 images ``(None, height, width, channels)`` in
  ``input_range`` (``[0, 1]`` by default) to ``probabilities``
  ``(None, num_classes)``; what ``model.export`` writes, with a named output.
- ``predict_bytes``: encoded images (PNG, JPEG, BMP, GIF or binary PPM/PGM,
  any size) as a string tensor ``image_bytes`` ``(None,)``, decoded, converted
  to the model's channel count, resized and normalised inside the graph, to
  ``class_ids`` (int64), ``class_names`` (string) and ``probabilities``.
- ``spatial_transforms``: float32 images to ``<layer name>_theta`` and
  ``<layer name>_images`` for every `SpatialTransformer` of the model (absent
  when the model has none), for visualising where the model looks.

The class names are a constant inside the graph of ``predict_bytes``. TensorFlow
Serving and ``tf.saved_model.load`` read the result; see docs/SERVING.md.

This module needs TensorFlow (SavedModel is a TensorFlow format); it imports
it inside the functions so that ``import stn_keras`` works on every backend.
"""

import json
import logging
from pathlib import Path

import keras

from stn_keras.layers.spatial_transformer import SpatialTransformer

logger = logging.getLogger(__name__)

SERVING_DEFAULT_SIGNATURE = "serving_default"
BYTES_SIGNATURE = "predict_bytes"
TRANSFORMS_SIGNATURE = "spatial_transforms"
# What the transforms signature cannot say (which transform, which grid
# convention), for drawing sampled regions; TF Serving ignores assets.extra.
TRANSFORMERS_METADATA = "assets.extra/spatial_transformers.json"
IMAGES_INPUT = "images"
BYTES_INPUT = "image_bytes"
RESIZE_METHODS = ("bilinear", "nearest", "bicubic", "area", "lanczos3")
# Channel counts the bytes signature can convert decoded images to.
BYTES_SIGNATURE_CHANNELS = (1, 3)


def export_saved_model(
    model,
    export_dir,
    class_names=None,
    input_range=(0.0, 1.0),
    resize_method="bilinear",
    antialias=True,
    probabilities_output=0,
):
    """Writes ``model`` as a SavedModel with serving signatures.

    The decoding in ``predict_bytes`` reproduces the training input pipeline:
    the image is decoded to 8- or 16-bit integers and scaled to float32
    ``[0, 1]`` (value / 255 for 8 bits, value / maxval for PPM); a colour
    image becomes grey with ``tf.image.rgb_to_grayscale`` (ITU-R 601 luma
    weights 0.2989, 0.5870, 0.1140) for a one-channel model, a grey image is
    repeated to three channels for an RGB model, and an alpha channel is
    dropped; the result is resized to the model's input size with
    ``tf.image.resize(method=resize_method, antialias=antialias)`` and mapped
    linearly from ``[0, 1]`` to ``input_range``. GIF animations use their
    first frame. PPM/PGM is read by this graph (``tf.io.decode_image`` does
    not know it): binary ``P6``/``P5`` only, with ``#`` comments in the
    header and 8- or 16-bit samples.

    Args:
        model: a built Keras classifier with one float image input of known
            ``(height, width, channels)`` (channels last) returning class
            probabilities; a model with several outputs must say which one
            holds the probabilities with ``probabilities_output``.
        export_dir: directory to write the SavedModel to. For TensorFlow
            Serving it must be a numbered version folder, such as
            ``models/mnist/1``.
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

    Returns:
        The list of signature names written.
    """
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "export_saved_model needs the TensorFlow backend; set "
            "KERAS_BACKEND=tensorflow. Received: backend="
            f"{keras.backend.backend()!r}"
        )
    import tensorflow as tf

    image_shape = _image_shape(model)
    output_index = _output_index(model, probabilities_output)
    num_classes = int(_as_list(model.outputs)[output_index].shape[-1])
    class_names = _class_names(class_names, num_classes)
    low, high = _input_range(input_range)
    if resize_method not in RESIZE_METHODS:
        raise ValueError(
            f"Unknown resize_method. Expected one of {RESIZE_METHODS}. "
            f"Received: resize_method={resize_method!r}"
        )

    def probabilities(images):
        outputs = _as_list(model(images, training=False))
        return tf.cast(outputs[output_index], tf.float32)

    images_spec = tf.TensorSpec(
        (None, *image_shape), tf.float32, name=IMAGES_INPUT
    )
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        SERVING_DEFAULT_SIGNATURE,
        lambda images: {"probabilities": probabilities(images)},
        input_signature=[images_spec],
    )
    signatures = [SERVING_DEFAULT_SIGNATURE]

    height, width, channels = image_shape
    if channels in BYTES_SIGNATURE_CHANNELS:

        def predict_bytes(image_bytes):
            images = tf.map_fn(
                lambda encoded: decode_image(
                    encoded, (height, width), channels, resize_method, antialias
                ),
                image_bytes,
                fn_output_signature=tf.TensorSpec(image_shape, tf.float32),
            )
            result = probabilities(images * (high - low) + low)
            class_ids = tf.argmax(result, axis=-1, output_type=tf.int64)
            return {
                "class_ids": class_ids,
                "class_names": tf.gather(tf.constant(class_names), class_ids),
                "probabilities": result,
            }

        archive.add_endpoint(
            BYTES_SIGNATURE,
            predict_bytes,
            input_signature=[tf.TensorSpec((None,), tf.string, name=BYTES_INPUT)],
        )
        signatures.append(BYTES_SIGNATURE)
    else:
        logger.warning(
            "The model takes %d channels; the %r signature converts decoded "
            "images to %s channels only, so it is not exported.",
            channels,
            BYTES_SIGNATURE,
            BYTES_SIGNATURE_CHANNELS,
        )

    transformers = find_spatial_transformers(model)
    if transformers:
        archive.add_endpoint(
            TRANSFORMS_SIGNATURE,
            lambda images: transformer_outputs(model, transformers, images),
            input_signature=[images_spec],
        )
        signatures.append(TRANSFORMS_SIGNATURE)
    archive.write_out(str(export_dir), verbose=False)
    if transformers:
        _write_transformers_metadata(transformers, export_dir)
    logger.info("Exported SavedModel with %s to %s", signatures, export_dir)
    return signatures


def _write_transformers_metadata(transformers, export_dir):
    """Writes each transformer's settings next to the SavedModel."""
    metadata = [
        {
            "name": layer.name,
            "transform": layer.transform,
            "align_corners": layer.align_corners,
            "grid_shape": list(layer.grid_shape),
            "input_shape": list(keras.Operation.input.fget(layer).shape[1:]),
        }
        for _, layer in transformers
    ]
    path = Path(export_dir) / TRANSFORMERS_METADATA
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metadata, indent=2))


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
        if probabilities_output not in output_names:
            raise ValueError(
                "`probabilities_output` names no output of the model. "
                f"Expected one of {output_names}. "
                f"Received: probabilities_output={probabilities_output!r}"
            )
        return output_names.index(probabilities_output)
    if (
        isinstance(probabilities_output, int)
        and not isinstance(probabilities_output, bool)
        and 0 <= probabilities_output < len(output_names)
    ):
        return probabilities_output
    raise ValueError(
        "`probabilities_output` must be an output name or an index in "
        f"[0, {len(output_names)}). "
        f"Received: probabilities_output={probabilities_output!r}"
    )


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


def decode_image(encoded, size, channels, resize_method="bilinear", antialias=True):
    """Decodes one encoded image to float32 ``(height, width, channels)``.

    PNG, JPEG, BMP and GIF go through ``tf.io.decode_image``; binary PPM and
    PGM through `decode_netpbm`. Values are scaled to ``[0, 1]``, the
    channels converted as `export_saved_model` describes, and the image
    resized to ``size``. Works eagerly and inside a ``tf.function``.

    Args:
        encoded: scalar string tensor, the file's bytes.
        size: ``(height, width)`` of the output.
        channels: 1 or 3, channels of the output.
        resize_method: method of ``tf.image.resize``.
        antialias: the ``antialias`` argument of ``tf.image.resize``.

    Returns:
        A float32 tensor of shape ``(height, width, channels)``.
    """
    import tensorflow as tf

    is_netpbm = tf.strings.regex_full_match(
        tf.strings.substr(encoded, 0, 2), "P[56]"
    )
    image = tf.cond(
        is_netpbm,
        lambda: decode_netpbm(encoded),
        lambda: tf.io.decode_image(
            encoded, dtype=tf.float32, expand_animations=False
        ),
    )
    image = _convert_channels(image, channels)
    image = tf.image.resize(image, size, method=resize_method, antialias=antialias)
    return tf.ensure_shape(image, (*size, channels))


def _convert_channels(image, channels):
    import tensorflow as tf

    decoded_channels = tf.shape(image)[-1]
    # Grey+alpha and RGBA lose their alpha channel; the colour part is kept.
    colour = tf.cond(
        tf.logical_or(tf.equal(decoded_channels, 2), tf.equal(decoded_channels, 4)),
        lambda: image[..., :-1],
        lambda: image,
    )
    is_grey = tf.equal(tf.shape(colour)[-1], 1)
    if channels == 1:
        return tf.cond(
            is_grey, lambda: colour, lambda: tf.image.rgb_to_grayscale(colour)
        )
    return tf.cond(
        is_grey, lambda: tf.image.grayscale_to_rgb(colour), lambda: colour
    )


# Binary netpbm header: magic, width, height and maxval separated by
# whitespace or "#" comments running to the end of the line, then exactly one
# whitespace byte before the raster.
_NETPBM_SEPARATOR = r"(?:\s|#[^\r\n]*[\r\n])+"
_NETPBM_HEADER = (
    rf"^(P[56]){_NETPBM_SEPARATOR}(\d+){_NETPBM_SEPARATOR}(\d+)"
    rf"{_NETPBM_SEPARATOR}(\d+)\s"
)


def decode_netpbm(encoded):
    """Decodes a binary PPM (``P6``) or PGM (``P5``) image in graph ops.

    Args:
        encoded: scalar string tensor, the file's bytes.

    Returns:
        float32 ``(height, width, 3 or 1)``, the samples divided by the
        header's maxval.
    """
    import tensorflow as tf

    # RE2 rewrites the header to "P6 W H M\n" in front of the raster; the
    # header's length is the size difference with the stripped file.
    normalised = tf.strings.regex_replace(
        encoded, _NETPBM_HEADER, "\\1 \\2 \\3 \\4\n", replace_global=False
    )
    stripped = tf.strings.regex_replace(
        encoded, _NETPBM_HEADER, "", replace_global=False
    )
    tf.debugging.assert_less(
        tf.strings.length(stripped),
        tf.strings.length(encoded),
        message="Invalid PPM/PGM header: expected 'P6' or 'P5', width, "
        "height and maxval separated by whitespace or # comments",
    )
    header = tf.strings.split(
        tf.strings.split(normalised, "\n", maxsplit=1)[0], " "
    )
    width = tf.strings.to_number(header[1], tf.int32)
    height = tf.strings.to_number(header[2], tf.int32)
    maxval = tf.strings.to_number(header[3], tf.int32)
    tf.debugging.assert_greater(
        maxval, 0, message="Invalid PPM/PGM header: maxval must be in [1, 65535]"
    )
    tf.debugging.assert_less(
        maxval, 65536, message="Invalid PPM/PGM header: maxval must be in [1, 65535]"
    )
    channels = tf.where(tf.equal(header[0], "P6"), 3, 1)
    bytes_per_sample = tf.where(maxval > 255, 2, 1)
    raster_length = width * height * channels * bytes_per_sample
    tf.debugging.assert_greater_equal(
        tf.strings.length(stripped),
        raster_length,
        message="Truncated PPM/PGM: the raster is shorter than width x height "
        "x channels x bytes per sample",
    )
    raster = tf.strings.substr(stripped, 0, raster_length)
    samples = tf.cond(
        maxval > 255,
        lambda: tf.cast(
            tf.io.decode_raw(raster, tf.uint16, little_endian=False), tf.float32
        ),
        lambda: tf.cast(tf.io.decode_raw(raster, tf.uint8), tf.float32),
    )
    image = tf.reshape(samples, tf.stack([height, width, channels]))
    return image / tf.cast(maxval, tf.float32)


def find_spatial_transformers(model):
    """Lists the `SpatialTransformer` layers of a model, nested ones included.

    Transformers inside another transformer's localisation network are not
    listed: their input is not an intermediate tensor of ``model``.

    Args:
        model: a Keras functional or sequential model.

    Returns:
        A list of ``(path, layer)`` where ``path`` is the list of nested
        models leading to the layer, outermost first.
    """
    found = []
    for layer in model.layers:
        if isinstance(layer, SpatialTransformer):
            found.append(([model], layer))
        elif isinstance(layer, keras.Model):
            found.extend(
                ([model, *path], inner)
                for path, inner in find_spatial_transformers(layer)
            )
    return found


def transformer_outputs(model, transformers, images):
    """Runs each transformer of ``model`` on ``images``, returning theta and output.

    Args:
        model: the model the transformers were found in.
        transformers: `find_spatial_transformers(model)`.
        images: a float batch for ``model``.

    Returns:
        A dict ``{"<name>_theta": (batch, num_parameters), "<name>_images":
        (batch, out_height, out_width, channels)}`` over the transformers.
    """
    import tensorflow as tf

    outputs = {}
    for path, layer in transformers:
        layer_input = images
        # Walk down the nested models: each sub-model maps the enclosing
        # model's input to the input of the next level.
        for level, enclosing in enumerate(path):
            target = path[level + 1] if level + 1 < len(path) else layer
            # The tensor that fed the target's first call; for a nested
            # model, `Model.input` would be that model's own Input instead.
            target_input = keras.Operation.input.fget(target)
            layer_input = keras.Model(enclosing.inputs, target_input)(
                layer_input, training=False
            )
        # The layer computes theta only when asked to return it; asking while
        # this function is traced reuses the layer's own code and weights.
        return_theta = layer.return_theta
        layer.return_theta = True
        try:
            transformed, theta = layer(layer_input, training=False)
        finally:
            layer.return_theta = return_theta
        outputs[f"{layer.name}_theta"] = tf.cast(theta, tf.float32)
        outputs[f"{layer.name}_images"] = tf.cast(transformed, tf.float32)
    return outputs
