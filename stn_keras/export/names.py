"""Names shared by the SavedModel export, the server and the evaluation.

This module imports nothing, so the server and the evaluation can read it
on any backend.
"""

SERVING_DEFAULT_SIGNATURE = "serving_default"
BYTES_SIGNATURE = "predict_bytes"
TRANSFORMS_SIGNATURE = "spatial_transforms"
IMAGES_INPUT = "images"
BYTES_INPUT = "image_bytes"
# Beside the SavedModel; TensorFlow Serving ignores assets.extra. What the
# transforms signature cannot say (which transform, which grid convention),
# for drawing sampled regions.
TRANSFORMERS_METADATA = "assets.extra/spatial_transformers.json"
# The export options (pixel limit, class names, input range...), shown by the
# server's /metadata.
EXPORT_METADATA = "assets.extra/export_options.json"
# Decoded pixels (height x width x frames) one image may declare: 4096 x 4096.
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096
