"""Export a trained classifier as a serving-ready TensorFlow SavedModel.

The SavedModel written by `export_saved_model` carries three signatures:

- ``serving_default``: float32 images ``(None, height, width, channels)`` in
  ``input_range`` (``[0, 1]`` by default) to ``probabilities``
  ``(None, num_classes)``; what ``model.export`` writes, with a named output.
- ``predict_bytes``: encoded images (PNG, JPEG, BMP, GIF or binary PPM/PGM)
  as a string tensor ``image_bytes`` ``(None,)``; the size each header
  declares is checked against a pixel limit, then the image is decoded,
  converted to the model's channel count, resized and normalised inside the
  graph, to ``class_ids`` (int64), ``class_names`` (string) and
  ``probabilities``.
- ``spatial_transforms``: float32 images to ``<layer name>_theta`` and
  ``<layer name>_images`` for every `SpatialTransformer` of the model (absent
  when the model has none), for visualising where the model looks.

Beside them, ``assets.extra/`` holds the export options and the
transformers' settings (TensorFlow Serving ignores it). `export_run` and
``python -m stn_keras.export RUN_DIR`` export a training run's
``model.keras``, saved on any backend. See docs/SERVING.md.

Beside the SavedModel, `export_model` (``python -m stn_keras.export MODEL_DIR
--format onnx|litert``) writes ONNX and LiteRT files, optionally quantized
(``stn_keras/export/formats.py``), and ``python -m stn_keras.export.parity
MODEL_DIR`` measures how far each format is from the Keras model.

Exporting needs TensorFlow (SavedModel is a TensorFlow format); the modules
import it inside their functions so that ``import stn_keras.export`` works
on every backend. The names below are imported when first used, so that
``import stn_keras.export`` (and the server, which reads
``stn_keras.export.names``) loads no model, training or plotting code.
"""

import importlib

from stn_keras.export.names import BYTES_INPUT
from stn_keras.export.names import BYTES_SIGNATURE
from stn_keras.export.names import DEFAULT_MAX_IMAGE_PIXELS
from stn_keras.export.names import EXPORT_METADATA
from stn_keras.export.names import IMAGES_INPUT
from stn_keras.export.names import SERVING_DEFAULT_SIGNATURE
from stn_keras.export.names import TRANSFORMERS_METADATA
from stn_keras.export.names import TRANSFORMS_SIGNATURE

# Public name -> the module defining it, imported on first access.
_LAZY_NAMES = {
    "decode_image": "image_decoding",
    "decode_netpbm": "image_decoding",
    "export_best_model": "run_export",
    "export_run": "run_export",
    "saved_model_export_available": "run_export",
    "RESIZE_METHODS": "signatures",
    "export_saved_model": "signatures",
    "FORMATS": "formats",
    "QUANTIZATIONS": "formats",
    "export_model": "formats",
}


def __getattr__(name):
    if name not in _LAZY_NAMES:
        raise AttributeError(f"module 'stn_keras.export' has no attribute {name!r}")
    module = importlib.import_module(f"stn_keras.export.{_LAZY_NAMES[name]}")
    return getattr(module, name)


def __dir__():
    return sorted([*globals(), *_LAZY_NAMES])
