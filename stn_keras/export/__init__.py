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

Exporting needs TensorFlow (SavedModel is a TensorFlow format); the modules
import it inside their functions so that ``import stn_keras.export`` works
on every backend.
"""

from stn_keras.export.image_decoding import decode_image
from stn_keras.export.image_decoding import decode_netpbm
from stn_keras.export.names import BYTES_INPUT
from stn_keras.export.names import BYTES_SIGNATURE
from stn_keras.export.names import DEFAULT_MAX_IMAGE_PIXELS
from stn_keras.export.names import EXPORT_METADATA
from stn_keras.export.names import IMAGES_INPUT
from stn_keras.export.names import SERVING_DEFAULT_SIGNATURE
from stn_keras.export.names import TRANSFORMERS_METADATA
from stn_keras.export.names import TRANSFORMS_SIGNATURE
from stn_keras.export.run_export import export_run
from stn_keras.export.run_export import saved_model_export_available
from stn_keras.export.signatures import RESIZE_METHODS
from stn_keras.export.signatures import export_saved_model
