"""Running an exported model: one predict function per format.

`load_predictor` opens a ``.keras`` file, a SavedModel directory, an
``.onnx`` file (ONNX Runtime) or a ``.tflite`` file (LiteRT) and returns a
function from float32 images ``(batch, height, width, channels)``, as the
model takes them, to float32 class probabilities ``(batch, num_classes)``.
The parity measurement (`stn_keras.export.parity`), the inference benchmark
and the tests compare the formats through it.
"""

from pathlib import Path

import numpy as np

from stn_keras.export.formats import RUN_PACKAGES
from stn_keras.export.formats import require_packages
from stn_keras.export.names import SERVING_DEFAULT_SIGNATURE


def load_predictor(path):
    """A predict function for the model at ``path``, chosen by its format.

    Raises:
        ValueError: an unknown format, a missing file, or a missing runtime
            package.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"Model not found: '{path}'.")
    if path.is_dir():
        return saved_model_predictor(path)
    loaders = {
        ".keras": keras_predictor,
        ".onnx": onnx_predictor,
        ".tflite": litert_predictor,
    }
    if path.suffix not in loaders:
        raise ValueError(
            f"Cannot tell the format of '{path}': expected a .keras, .onnx or "
            ".tflite file or a SavedModel directory."
        )
    return loaders[path.suffix](path)


def keras_predictor(path):
    """``model.predict`` of a ``.keras`` file."""
    import keras

    import stn_keras  # noqa: F401  (registers the layers for load_model)

    model = keras.saving.load_model(path, compile=False)
    return lambda images: np.asarray(model.predict(images, verbose=0), "float32")


def saved_model_predictor(path):
    """The ``serving_default`` signature of a SavedModel directory."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(path)).signatures[SERVING_DEFAULT_SIGNATURE]

    def predict(images):
        (probabilities,) = signature(tf.constant(images, tf.float32)).values()
        return probabilities.numpy()

    return predict


def onnx_predictor(path):
    """An ONNX Runtime session on the CPU."""
    require_packages(RUN_PACKAGES["onnx"], "Running an ONNX model")
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def predict(images):
        (probabilities,) = session.run(None, {input_name: np.asarray(images, "float32")})
        return probabilities

    return predict


def litert_predictor(path):
    """A LiteRT interpreter; resized when the batch size changes."""
    require_packages(RUN_PACKAGES["litert"], "Running a LiteRT model")
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    allocated_shape = []

    def predict(images):
        images = np.asarray(images, "float32")
        if allocated_shape != list(images.shape):
            interpreter.resize_tensor_input(input_index, images.shape)
            interpreter.allocate_tensors()
            allocated_shape[:] = images.shape
        interpreter.set_tensor(input_index, images)
        interpreter.invoke()
        return interpreter.get_tensor(output_index).copy()

    return predict
