"""What `PretrainedClassifier` accepts as an image, turned into encoded bytes.

File paths are read, bytes kept as they are, PIL images and integer arrays
encoded losslessly as PNG: every image then goes through the one decoder of
``predict_bytes``. A float array already of the model's input shape is the
model's input itself and is passed on unchanged.
"""

import io
import re
from pathlib import Path

import numpy as np

# The decoder's own words in a TensorFlow error: after the last
# "InvalidArgumentError:", without the function-node prefix, the op suffix
# or tf.debugging.Assert's framing of its message.
_ERROR_LINE = re.compile(r"InvalidArgumentError: (.*)")
_FUNCTION_NODE = re.compile(r"\{\{function_node [^}]*\}\}\s*")
_OP_SUFFIX = re.compile(r"\s*\[Op:[^\]]*\].*$")
_ASSERT_DATA = re.compile(r"Summarized data: b'(.*)'$")

# Integer arrays PIL encodes as PNG without loss, by their channel count.
PNG_CHANNELS = (1, 3, 4)


def image_label(image, index):
    """How error messages name the ``index``-th image."""
    if isinstance(image, (str, Path)):
        return f"'{image}'"
    return f"image {index} ({type(image).__name__})"


def encoded_or_array(image, input_shape):
    """``image`` as encoded bytes, or as a float32 model input.

    Args:
        image: a file path, encoded bytes, a PIL image, a uint8 array
            ``(height, width)`` or ``(height, width, 1, 3 or 4)``, or a float
            array of shape ``input_shape``.
        input_shape: the model's ``(height, width, channels)``.

    Returns:
        ``bytes`` to decode, or a float32 array of ``input_shape``.

    Raises:
        ValueError: an unreadable file or an input of another kind, saying
            what is accepted.
    """
    if isinstance(image, (str, Path)):
        try:
            return Path(image).read_bytes()
        except OSError as error:
            raise ValueError(f"cannot read the file ({error.strerror or error})") from error
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if _is_pil_image(image):
        return _png_bytes(image)
    if isinstance(image, np.ndarray):
        return _array_input(image, tuple(input_shape))
    raise ValueError(
        "expected a file path, encoded image bytes, a PIL image or a numpy "
        f"array. Received: {type(image).__name__}"
    )


def _is_pil_image(image):
    try:
        from PIL import Image
    except ImportError:
        return False
    return isinstance(image, Image.Image)


def _png_bytes(image):
    if image.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _array_input(array, input_shape):
    if np.issubdtype(array.dtype, np.floating) and array.shape == input_shape:
        return array.astype("float32")
    channels = array.shape[-1] if array.ndim == 3 else 1
    if array.dtype == np.uint8 and array.ndim in (2, 3) and channels in PNG_CHANNELS:
        from PIL import Image

        return _png_bytes(Image.fromarray(array[..., 0] if array.ndim == 3 and channels == 1 else array))
    raise ValueError(
        "a numpy array must be uint8 pixels of shape (height, width) or "
        "(height, width, 1, 3 or 4) of any size, or float32 model input of shape "
        f"{input_shape}. Received: dtype={array.dtype}, shape={array.shape}"
    )


def decoder_error_message(message):
    """The one line that says why the decoder refused an image.

    Args:
        message: the ``message`` of the ``tf.errors.InvalidArgumentError``
            raised while decoding (eager ``tf.map_fn`` adds a traceback of
            the traced code before it).
    """
    lines = _ERROR_LINE.findall(message)
    line = lines[-1] if lines else message.strip().splitlines()[-1]
    line = _OP_SUFFIX.sub("", _FUNCTION_NODE.sub("", line)).strip()
    asserted = _ASSERT_DATA.search(line)
    return asserted.group(1) if asserted else line
