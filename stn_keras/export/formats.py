"""`export_model`: a trained run's model as a SavedModel, ONNX or LiteRT file.

ONNX and float LiteRT files come from Keras' own ``model.export(path,
format="onnx" | "litert")`` (tf2onnx and ``tf.lite.TFLiteConverter``
underneath). Quantized LiteRT files go through ``tf.lite.TFLiteConverter``:

- ``float16``: weights stored as float16, computed in float32.
- ``dynamic_int8``: weights stored as int8, activations quantized on the fly.
- ``int8``: weights and activations in int8, calibrated on images of the
  model's own training data, **except the spatial transformers and the
  per-image standardisation**, which stay in float32. Quantizing a
  transformer's sampling grid and interpolation weights moves every sample by
  whole pixels: fully quantized, the shipped ``gtsrb_st_cnn`` agreed with the
  float model on 47% of 300 validation signs, with its transformer kept in
  float on 100% (``STN_DATA_DIR=... pytest -s tests/test_export_formats.py -k
  real_signs``, 2026-12-02). A `PerImageStandardization` layer divides by
  each image's own standard deviation, so its int8 steps are too coarse for
  the dark, low-contrast signs it is there for: quantized, with the
  transformer in float, the same model agreed on 98.67% of its 3,990
  validation signs; in float, on 99.92% (200 calibration images). The
  selective quantization uses the denylist of TensorFlow's quantization
  debugger (``tf.lite.experimental.QuantizationDebugger``): every tensor the
  layers compute, the localisation network included, stays float.

Needs TensorFlow as the Keras backend, and the optional packages of the
``export`` extra (``pip install "stn_keras[export]"``) for ONNX and LiteRT.
"""

import functools
import importlib.util
import logging
import re
import tempfile
import warnings
from pathlib import Path

import keras
import numpy as np

from stn_keras.export.names import DEFAULT_MAX_IMAGE_PIXELS
from stn_keras.files import write_file_atomically
from stn_keras.ops.tensorflow_speedups import tensorflow_speedups
from stn_keras.validation import check_choice
from stn_keras.validation import check_int

logger = logging.getLogger(__name__)

FORMATS = ("saved_model", "onnx", "litert")
QUANTIZATIONS = ("float16", "dynamic_int8", "int8")
FILE_SUFFIXES = {"onnx": ".onnx", "litert": ".tflite"}
INSTALL_HINT = (
    'pip install "stn_keras[export]" (or pip install -r requirements-dev.txt '
    "in a clone)"
)
# The modules each format needs to be written, and to be run.
WRITE_PACKAGES = {"onnx": ("tf2onnx", "onnx"), "litert": ()}
RUN_PACKAGES = {"onnx": ("onnxruntime",), "litert": ("ai_edge_litert",)}
DEFAULT_CALIBRATION_IMAGES = 200


def require_packages(modules, purpose):
    """Raises ValueError naming the missing ``modules`` and how to install them.

    Args:
        modules: importable module names.
        purpose: what needs them, for the message (e.g. ``"ONNX export"``).
    """
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(
            f"{purpose} needs {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed: {INSTALL_HINT}."
        )


def export_model(
    model_dir,
    format="saved_model",
    output=None,
    quantize=None,
    data_dir=None,
    num_calibration_images=DEFAULT_CALIBRATION_IMAGES,
    max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS,
):
    """Writes a run's ``model.keras`` as a SavedModel, ONNX or LiteRT file.

    Args:
        model_dir: a training run's directory, or a folder of
            ``saved_models/`` (``model.keras`` and ``config.json``).
        format: one of `FORMATS`.
        output: the file or directory to write. Default:
            ``MODEL_DIR/saved_model``, ``MODEL_DIR/model.onnx``,
            ``MODEL_DIR/model.tflite`` or ``MODEL_DIR/model_QUANTIZE.tflite``.
        quantize: ``None`` or one of `QUANTIZATIONS` (LiteRT only).
        data_dir: data directory for the ``int8`` calibration images (else
            ``STN_DATA_DIR``, else the data layer's default).
        num_calibration_images: training images ``int8`` calibrates on.
        max_image_pixels: the SavedModel's ``predict_bytes`` pixel limit
            (see `export_saved_model`).

    Returns:
        ``(output_path, details)``: what was written, and a dict saying
        what it holds (``signatures`` for a SavedModel, ``bytes``, and
        ``calibration_images`` for ``int8``).

    Raises:
        ValueError: a bad argument, a run directory without its files, a
            backend other than TensorFlow, or a missing optional package.
    """
    from stn_keras.export.run_export import export_run
    from stn_keras.saving import load_model_file
    from stn_keras.export.run_export import run_files
    from stn_keras.export.run_export import saved_model_export_available
    from stn_keras.export.signatures import export_saved_model

    format = check_choice("format", format, FORMATS, what="export format")
    if quantize is not None:
        quantize = check_choice("quantize", quantize, QUANTIZATIONS, what="quantization")
        if format != "litert":
            raise ValueError(
                "`quantize` applies to the LiteRT format only. Received: "
                f"format={format!r}, quantize={quantize!r}"
            )
    available, reason = saved_model_export_available(f"{format} export")
    if not available:
        raise ValueError(reason)
    model_dir = Path(model_dir)
    if format == "saved_model" and output is None:
        export_dir, signatures = export_run(model_dir, max_image_pixels=max_image_pixels)
        return export_dir, {"signatures": signatures}
    model_path, class_names = run_files(model_dir)
    output = Path(output) if output is not None else default_output(model_dir, format, quantize)
    if format == "saved_model":
        signatures = export_saved_model(
            load_model_file(model_path), output, class_names=class_names,
            max_image_pixels=max_image_pixels,
        )
        return output, {"signatures": signatures}
    require_packages(WRITE_PACKAGES[format], f"{format} export")
    suffix = FILE_SUFFIXES[format]
    if output.suffix != suffix:
        raise ValueError(
            f"A {format} file must end with {suffix}. Received: output='{output}'"
        )
    model = load_model_file(model_path)
    output.parent.mkdir(parents=True, exist_ok=True)
    details = {}
    if format == "onnx":
        write = functools.partial(export_onnx, model)
    elif quantize == "int8":
        images = calibration_images(model_dir, data_dir, num_calibration_images)
        details["calibration_images"] = len(images)
        write = functools.partial(export_litert, model, quantize=quantize, calibration=images)
    else:
        write = functools.partial(export_litert, model, quantize=quantize)
    # Written beside its name and renamed: an interrupted export leaves no half file.
    write_file_atomically(output, write)
    details["bytes"] = output.stat().st_size
    return output, details


def default_output(directory, format, quantize=None):
    """``directory/model.onnx``, ``model.tflite`` or ``model_QUANTIZE.tflite``."""
    name = "model" if quantize is None else f"model_{quantize}"
    return Path(directory) / f"{name}{FILE_SUFFIXES[format]}"


# Plain TensorFlow ops: converters have no XLA calls to translate.
@tensorflow_speedups(False)
def export_onnx(model, path):
    """Writes ``model`` as an ONNX file with a dynamic batch size (Keras' exporter)."""
    require_packages(WRITE_PACKAGES["onnx"], "ONNX export")
    # Keras' ONNX exporter refuses a model that was never called, which a
    # model fresh from load_model is; one call on zeros builds its graph.
    model(np.zeros((1, *model.input_shape[1:]), "float32"), training=False)
    model.export(str(path), format="onnx", verbose=False)


# Plain TensorFlow ops: converters have no XLA calls to translate.
@tensorflow_speedups(False)
def export_litert(model, path, quantize=None, calibration=None, float_transformers=True):
    """Writes ``model`` as a LiteRT (``.tflite``) file with a dynamic batch size.

    Args:
        model: a Keras model on the TensorFlow backend.
        path: the ``.tflite`` file to write.
        quantize: ``None`` or one of `QUANTIZATIONS`.
        calibration: for ``int8``, float32 images ``(count, height, width,
            channels)`` as the model takes them.
        float_transformers: for ``int8``, keep the spatial transformers in
            float32. ``False`` quantizes them too, only to measure what that
            costs (see the module's docstring).
    """
    import tensorflow as tf

    if quantize == "int8":
        Path(path).write_bytes(_int8(model, calibration, float_transformers))
        return
    converter_options = {}
    if quantize is not None:
        converter_options["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter_options["target_spec"] = {"supported_types": [tf.float16]}
    model.export(str(path), format="litert", verbose=False, **converter_options)


def _int8(model, calibration, float_transformers):
    """int8 LiteRT bytes; with ``float_transformers``, the transformers compute in float32.

    `PerImageStandardization` layers always compute in float32.
    """
    import tensorflow as tf

    from stn_keras.layers import PerImageStandardization
    from stn_keras.models.introspection import spatial_transformer_layers

    if calibration is None or len(calibration) == 0:
        raise ValueError("int8 quantization needs calibration images; received none.")
    # The converted model's tensor names are read with LiteRT's interpreter.
    require_packages(RUN_PACKAGES["litert"], "int8 quantization")
    calibration = np.asarray(calibration, "float32")

    def representative_dataset():
        for index in range(len(calibration)):
            yield [calibration[index : index + 1]]

    with tempfile.TemporaryDirectory() as saved_model_dir:
        model.export(saved_model_dir, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        with warnings.catch_warnings():
            # The debugger runs TensorFlow's own (deprecated) interpreter.
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter, debug_dataset=representative_dataset
            )
            names = [layer.name for layer in model.layers if isinstance(layer, PerImageStandardization)]
            if float_transformers:
                names += [layer.name for layer in spatial_transformer_layers(model)]
            denylisted = layer_tensor_names(_tensor_names(debugger.quant_model), names)
            debugger.options = tf.lite.experimental.QuantizationDebugOptions(
                denylisted_nodes=denylisted
            )
            return debugger.get_nondebug_quantized_model()


def _tensor_names(model_content):
    from ai_edge_litert.interpreter import Interpreter

    return [detail["name"] for detail in Interpreter(model_content=model_content).get_tensor_details()]


def layer_tensor_names(tensor_names, layer_names):
    """The tensors, among a converted model's, that the named layers compute.

    The converter names a tensor after the TensorFlow ops that produced it,
    ``model/layer/op``, where tracing may add ``_1`` to each scope; fused
    ops join several such names with ``;``.

    Args:
        tensor_names: tensor names of a LiteRT model.
        layer_names: Keras layer names.

    Returns:
        The names (in their order) that lie in one of the layers' scopes.
    """
    if not layer_names:
        return []
    scopes = "|".join(re.escape(name) for name in layer_names)
    pattern = re.compile(rf"(^|/)({scopes})(_\d+)?/")
    return [name for name in tensor_names if pattern.search(name)]


def calibration_images(model_dir, data_dir=None, count=DEFAULT_CALIBRATION_IMAGES):
    """``count`` training images of the run's data set, float32, drawn with seed 0.

    The data set and its settings come from the run's ``config.json``.

    Raises:
        ValueError: the data set cannot be loaded (its message says why).
    """
    from stn_keras.data import as_float_images
    from stn_keras.run_dir import RunDirectory
    from stn_keras.settings import load_data

    count = check_int("num_calibration_images", count, 1)
    settings = RunDirectory(model_dir).read_config()
    if data_dir is not None:
        settings = {**settings, "data_dir": str(data_dir)}
    dataset = load_data(settings)
    images, _ = dataset.split("train")
    chosen = np.random.default_rng(0).choice(len(images), min(count, len(images)), replace=False)
    logger.info(
        "Calibrating int8 on %d images of the %s training split", len(chosen), dataset.name
    )
    return as_float_images(images[np.sort(chosen)])
