"""`ServedModel`: one SavedModel loaded for serving, with its signatures."""

import dataclasses
import json
import logging
import os
import re

import numpy as np

from stn_keras.export.names import EXPORT_METADATA
from stn_keras.serving.serving_error import ServingError

logger = logging.getLogger(__name__)

# Signatures TensorFlow writes for its own use; they cannot be called.
INTERNAL_SIGNATURE_PREFIX = "__"
SAVED_MODEL_FILE = "saved_model.pb"


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """Name, dtype and shape (``None`` for unknown sizes) of a signature tensor."""

    name: str
    dtype: np.dtype
    dtype_name: str
    shape: tuple

    @property
    def is_string(self):
        return self.dtype_name == "DT_STRING"

    def shape_text(self):
        """The shape as TensorFlow Serving prints it: -1 for an unknown size."""
        return "(" + ", ".join(
            "-1" if size is None else str(size) for size in self.shape
        ) + ")"


@dataclasses.dataclass(frozen=True)
class Signature:
    """A callable signature: its name, inputs and outputs, sorted by name."""

    name: str
    inputs: tuple
    outputs: tuple

    @property
    def batchable(self):
        """Whether requests can be concatenated and split on axis 0."""
        return all(
            len(tensor.shape) >= 1 and tensor.shape[0] is None
            for tensor in self.inputs + self.outputs
        )


def resolve_version(model_dir):
    """Finds the SavedModel in ``model_dir`` and its version number.

    ``model_dir`` is either a SavedModel (version 1) or, as TensorFlow
    Serving expects, a folder of numbered version folders, of which the
    highest is served.

    Args:
        model_dir: path to a SavedModel or to a folder of versions.

    Returns:
        ``(version, saved_model_dir)``.
    """
    model_dir = os.fspath(model_dir)
    if os.path.isfile(os.path.join(model_dir, SAVED_MODEL_FILE)):
        name = os.path.basename(os.path.normpath(model_dir))
        return (int(name) if name.isdigit() else 1), model_dir
    versions = []
    if os.path.isdir(model_dir):
        versions = [
            int(entry)
            for entry in os.listdir(model_dir)
            if entry.isdigit()
            and os.path.isfile(os.path.join(model_dir, entry, SAVED_MODEL_FILE))
        ]
    if not versions:
        raise ValueError(
            f"No SavedModel found in {model_dir!r}: expected a directory "
            f"holding {SAVED_MODEL_FILE}, or numbered version directories "
            f"(1/, 2/, ...) holding one, as written by export_saved_model."
        )
    version = max(versions)
    return version, os.path.join(model_dir, str(version))


class ServedModel:
    """A SavedModel loaded with ``tf.saved_model.load``, ready to be called.

    Args:
        name: the model's name in request URLs.
        model_dir: a SavedModel directory or a folder of numbered versions
            (the highest is loaded).
    """

    def __init__(self, name, model_dir):
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name or ""):
            raise ValueError(
                "A model name may hold letters, digits, '_', '.' and '-' "
                f"only (it is part of URLs). Received: name={name!r}"
            )
        self.name = name
        self.version, self.path = resolve_version(model_dir)
        self.signature_defs, self._loaded = _load(self.path)
        self.export_options = _export_options(self.path)
        self.signatures = {
            signature_name: Signature(
                signature_name,
                _tensor_infos(definition.inputs),
                _tensor_infos(definition.outputs),
            )
            for signature_name, definition in self.signature_defs.items()
            if not signature_name.startswith(INTERNAL_SIGNATURE_PREFIX)
            and signature_name in self._loaded.signatures
        }
        logger.info(
            "Loaded model %r version %d from %s with signatures %s",
            name,
            self.version,
            self.path,
            sorted(self.signatures),
        )

    @property
    def max_image_pixels(self):
        """The export's limit on the pixels of one image, or ``None`` if unknown."""
        return self.export_options.get("max_image_pixels")

    def signature(self, signature_name):
        """Returns the `Signature` named ``signature_name`` or raises a 400."""
        if signature_name not in self.signatures:
            raise ServingError(
                400,
                f"Serving signature name: {signature_name!r} not found in "
                f"model {self.name!r}; its signatures are "
                f"{sorted(self.signatures)}.",
            )
        return self.signatures[signature_name]

    def run(self, signature_name, inputs):
        """Calls a signature.

        Args:
            signature_name: the signature to call.
            inputs: dict of input name to numpy array.

        Returns:
            A dict of output name to numpy array.
        """
        import tensorflow as tf

        function = self._loaded.signatures[signature_name]
        outputs = function(
            **{name: tf.constant(value) for name, value in inputs.items()}
        )
        return {name: value.numpy() for name, value in outputs.items()}

    def status(self):
        """The model status of TensorFlow Serving's ``GetModelStatus``."""
        return {
            "model_version_status": [
                {
                    "version": str(self.version),
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ]
        }

    def metadata(self):
        """The model metadata of TensorFlow Serving's ``GetModelMetadata``."""
        from google.protobuf import json_format

        signature_defs = {
            name: json_format.MessageToDict(
                definition,
                preserving_proto_field_name=True,
                always_print_fields_with_no_presence=True,
            )
            for name, definition in self.signature_defs.items()
        }
        return {
            "model_spec": {
                "name": self.name,
                "signature_name": "",
                "version": str(self.version),
            },
            "metadata": {
                "signature_def": {"signature_def": signature_defs},
                # Not in TensorFlow Serving's answer: the options the model
                # was exported with (pixel limit, class names...).
                "export_options": self.export_options,
            },
        }

    def check_version(self, version):
        """Raises a 404 unless ``version`` (a URL segment) is the loaded one."""
        if version is not None and version != str(self.version):
            raise ServingError(
                404,
                f"Servable not found for request: Specific({self.name}, "
                f"{version}); the loaded version is {self.version}.",
            )


def _load(path):
    """Reads the signature definitions and loads the SavedModel at ``path``.

    Raises:
        ValueError: one line naming the path and what is wrong with it.
    """
    import tensorflow as tf
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    graph_file = os.path.join(path, SAVED_MODEL_FILE)
    try:
        with open(graph_file, "rb") as file:
            saved_model.ParseFromString(file.read())
    except (OSError, DecodeError) as error:
        raise ValueError(
            f"Cannot read the SavedModel graph '{graph_file}': the file is "
            f"truncated or corrupt ({_first_line(error)}). Export the model again."
        ) from None
    if not saved_model.meta_graphs:
        raise ValueError(
            f"The SavedModel graph '{graph_file}' holds no graph: the file is "
            "truncated or corrupt. Export the model again."
        )
    try:
        loaded = tf.saved_model.load(path)
    except Exception as error:
        raise ValueError(
            f"Cannot load the SavedModel in '{path}': {type(error).__name__}: "
            f"{_first_line(error)} (missing, truncated or corrupt files). "
            "Export the model again."
        ) from None
    return dict(saved_model.meta_graphs[0].signature_def), loaded


def _export_options(path):
    """The options written by `export_saved_model`, or ``{}`` for another exporter."""
    options_file = os.path.join(path, EXPORT_METADATA)
    if not os.path.isfile(options_file):
        return {}
    try:
        with open(options_file, encoding="utf-8") as file:
            options = json.load(file)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"Cannot read '{options_file}': {_first_line(error)}. Export the model again."
        ) from None
    if not isinstance(options, dict):
        raise ValueError(f"'{options_file}' must hold a JSON object. Export the model again.")
    return options


def _first_line(error):
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _tensor_infos(tensor_map):
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2

    infos = []
    for name in sorted(tensor_map):
        info = tensor_map[name]
        dtype = tf.dtypes.as_dtype(info.dtype)
        shape = tuple(
            None if dim.size < 0 else int(dim.size)
            for dim in info.tensor_shape.dim
        )
        infos.append(
            TensorInfo(
                name=name,
                dtype=(
                    np.dtype(object)
                    if dtype == tf.string
                    else np.dtype(dtype.as_numpy_dtype)
                ),
                dtype_name=types_pb2.DataType.Name(info.dtype),
                shape=shape,
            )
        )
    return tuple(infos)
