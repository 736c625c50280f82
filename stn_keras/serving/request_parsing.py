"""TensorFlow Serving REST predict requests: parsing, validation, answers.

A predict request is a JSON object with ``instances`` (row format: a list of
instances, each the value of the only input or an object of named input
values) or ``inputs`` (columnar format: the value of the only input or an
object of named batched values), and optionally ``signature_name``. Binary
strings are ``{"b64": "..."}``. Everything that does not fit the signature is
refused with a `ServingError` saying what was wrong; unlike TensorFlow
Serving, non-finite numbers (``NaN``, ``Infinity``) are refused too, since no
image holds them.
"""

import base64
import binascii
import dataclasses
import json

import numpy as np

from stn_keras.export.names import SERVING_DEFAULT_SIGNATURE
from stn_keras.serving.serving_error import ServingError

REQUEST_FIELDS = ("inputs", "instances", "signature_name")
# TensorFlow Serving writes string outputs whose name ends so as base64.
BINARY_OUTPUT_SUFFIX = "_bytes"
# Kinds of numpy arrays (from JSON) accepted for each kind of input dtype.
ACCEPTED_KINDS = {"f": "iuf", "i": "iu", "u": "iu", "b": "b"}
KIND_DESCRIPTIONS = {
    "U": "strings",
    "b": "booleans",
    "f": "non-integer numbers",
    "O": "null, objects or a mix of types",
}


@dataclasses.dataclass
class PredictRequest:
    """A validated predict request.

    Attributes:
        signature_name: the signature to call.
        inputs: dict of input name to numpy array of the signature's dtype.
        batch_size: the common size of axis 0 of the inputs, or ``None``
            when they differ (columnar requests may do so).
        row_format: whether the request used ``instances`` (the answer then
            uses ``predictions``) rather than ``inputs`` (``outputs``).
    """

    signature_name: str
    inputs: dict
    batch_size: object
    row_format: bool


def parse_predict_request(body, model, max_batch_size):
    """Parses and validates the body of a ``:predict`` request.

    Args:
        body: the request body, bytes.
        model: the `ServedModel` addressed.
        max_batch_size: the largest number of instances accepted.

    Returns:
        A `PredictRequest`.

    Raises:
        ServingError: with status 400 naming what was wrong.
    """
    document = _parse_json(body)
    if not isinstance(document, dict):
        raise ServingError(
            400,
            "The request body must be a JSON object with 'instances' or "
            f"'inputs'. Received a JSON {_json_type(document)}.",
        )
    unknown = sorted(set(document) - set(REQUEST_FIELDS))
    if unknown:
        raise ServingError(
            400,
            f"Unknown field(s) {unknown} in the request body; a predict "
            "request has 'instances' (row format) or 'inputs' (columnar "
            "format) and optionally 'signature_name'.",
        )
    if "instances" in document and "inputs" in document:
        raise ServingError(
            400,
            "The request has both 'instances' and 'inputs'; send one: "
            "'instances' for the row format, 'inputs' for the columnar format.",
        )
    if "instances" not in document and "inputs" not in document:
        raise ServingError(400, "Missing 'inputs' or 'instances' key in the request body.")
    signature_name = document.get("signature_name", SERVING_DEFAULT_SIGNATURE)
    if not isinstance(signature_name, str):
        raise ServingError(
            400,
            "'signature_name' must be a string. Received a JSON "
            f"{_json_type(signature_name)}.",
        )
    signature = model.signature(signature_name)
    row_format = "instances" in document
    if row_format:
        values = _instance_columns(document["instances"], signature)
    else:
        values = _input_columns(document["inputs"], signature)
    inputs = {
        info.name: _to_array(values[info.name], info, signature.name)
        for info in signature.inputs
    }
    batch_sizes = {
        array.shape[0] if array.ndim else None for array in inputs.values()
    }
    batch_size = batch_sizes.pop() if len(batch_sizes) == 1 else None
    if batch_size is not None and batch_size > max_batch_size:
        raise ServingError(
            400,
            f"The batch of {batch_size} instances exceeds the maximum batch "
            f"size of {max_batch_size} of this server (--max-batch-size); "
            "split the request.",
        )
    return PredictRequest(signature_name, inputs, batch_size, row_format)


def format_predict_response(outputs, signature, row_format):
    """Shapes a signature's outputs as TensorFlow Serving's predict answer.

    Args:
        outputs: dict of output name to numpy array.
        signature: the `Signature` called.
        row_format: whether the request used ``instances``.

    Returns:
        ``{"predictions": ...}`` for the row format (a list of values, or of
        objects of named values when the signature has several outputs),
        ``{"outputs": ...}`` for the columnar format (the value, or an object
        of named values).
    """
    encoded = {
        info.name: _json_value(outputs[info.name], info)
        for info in signature.outputs
    }
    key = "predictions" if row_format else "outputs"
    if len(encoded) == 1:
        return {key: next(iter(encoded.values()))}
    if not row_format:
        return {key: encoded}
    batch_sizes = {np.shape(outputs[name])[:1] for name in encoded}
    if len(batch_sizes) != 1 or batch_sizes == {()}:
        raise ServingError(
            400,
            f"The outputs of signature {signature.name!r} do not share a "
            "batch size, so they cannot be split into instances; use the "
            "columnar format ('inputs').",
        )
    (batch_size,) = batch_sizes.pop()
    return {
        key: [
            {name: value[index] for name, value in encoded.items()}
            for index in range(batch_size)
        ]
    }


def _parse_json(body):
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise ServingError(400, "The request body is not UTF-8 encoded JSON.")
    except json.JSONDecodeError as error:
        raise ServingError(
            400,
            f"JSON Parse error: {error.msg} at line {error.lineno} column "
            f"{error.colno} (offset {error.pos}).",
        )
    except RecursionError:
        raise ServingError(400, "JSON Parse error: the request nests too deeply.")


def _json_type(value):
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number"


def _is_binary(value):
    return isinstance(value, dict) and set(value) == {"b64"}


def _input_names(signature):
    return [info.name for info in signature.inputs]


def _instance_columns(instances, signature):
    if not isinstance(instances, list):
        raise ServingError(
            400,
            "'instances' must be a list with one entry per instance. "
            f"Received a JSON {_json_type(instances)}.",
        )
    if not instances:
        raise ServingError(
            400, "Empty batch: 'instances' is an empty list; send at least one instance."
        )
    names = _input_names(signature)
    columns = {name: [] for name in names}
    for index, instance in enumerate(instances):
        if isinstance(instance, dict) and not _is_binary(instance):
            if set(instance) != set(names):
                raise ServingError(
                    400,
                    f"Instance {index} is an object with keys "
                    f"{sorted(instance)}; signature {signature.name!r} "
                    f"expects the input names {names}.",
                )
            for name in names:
                columns[name].append(instance[name])
        elif len(names) == 1:
            columns[names[0]].append(instance)
        else:
            raise ServingError(
                400,
                f"Instance {index} must be an object with a value for each "
                f"input {names} of signature {signature.name!r}.",
            )
    return columns


def _input_columns(inputs, signature):
    names = _input_names(signature)
    if isinstance(inputs, dict) and not _is_binary(inputs):
        if set(inputs) != set(names):
            raise ServingError(
                400,
                f"'inputs' is an object with keys {sorted(inputs)}; signature "
                f"{signature.name!r} expects the input names {names}.",
            )
        return inputs
    if len(names) != 1:
        raise ServingError(
            400,
            "'inputs' must be an object with a value for each input "
            f"{names} of signature {signature.name!r}.",
        )
    return {names[0]: inputs}


def _to_array(value, info, signature_name):
    where = f"Input {info.name!r} of signature {signature_name!r}"
    if info.is_string:
        array = _string_array(value, where)
    else:
        array = _numeric_array(value, info, where)
    expected = info.shape
    if expected and expected[0] is None and array.ndim >= 1 and array.shape[0] == 0:
        raise ServingError(400, f"Empty batch: {where} has no instances.")
    if len(array.shape) != len(expected) or any(
        size is not None and size != received
        for size, received in zip(expected, array.shape)
    ):
        raise ServingError(
            400,
            f"{where} expects a {info.dtype_name} tensor of shape "
            f"{info.shape_text()} (-1: any size); received shape "
            f"{tuple(array.shape)}.",
        )
    return array


def _numeric_array(value, info, where):
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        raise ServingError(
            400,
            f"{where}: the nested lists are ragged; every instance must have "
            "the same shape.",
        )
    accepted = ACCEPTED_KINDS.get(info.dtype.kind, "")
    if array.size and array.dtype.kind not in accepted:
        raise ServingError(
            400,
            f"{where} expects {info.dtype_name} values; received "
            f"{KIND_DESCRIPTIONS.get(array.dtype.kind, array.dtype.name)}.",
        )
    with np.errstate(over="ignore", invalid="ignore"):
        converted = array.astype(info.dtype)
    if info.dtype.kind == "f":
        finite = np.isfinite(converted)
        if not finite.all():
            position = tuple(int(i) for i in np.argwhere(~finite)[0])
            raise ServingError(
                400,
                f"{where} holds a non-finite number (NaN, Infinity or beyond "
                f"the {info.dtype_name} range) at index {position}.",
            )
    elif array.size and not np.array_equal(converted, array):
        raise ServingError(
            400, f"{where} holds values outside the range of {info.dtype_name}."
        )
    return converted


def _string_array(value, where):
    leaves = _string_leaves(value, where)
    shape = _nested_shape(leaves, where)
    if shape:
        return np.array(leaves, dtype=object)
    array = np.empty((), dtype=object)
    array[()] = leaves
    return array


def _string_leaves(value, where):
    if isinstance(value, list):
        return [_string_leaves(item, where) for item in value]
    if isinstance(value, str):
        return value.encode("utf-8")
    if _is_binary(value) and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError) as error:
            raise ServingError(
                400, f"{where}: invalid base64 in a {{\"b64\": ...}} value ({error})."
            )
    raise ServingError(
        400,
        f"{where} expects strings or {{\"b64\": \"...\"}} objects (DT_STRING); "
        f"received a JSON {_json_type(value)}.",
    )


def _nested_shape(leaves, where):
    if not isinstance(leaves, list):
        return ()
    shapes = {_nested_shape(item, where) for item in leaves}
    if len(shapes) > 1:
        raise ServingError(
            400,
            f"{where}: the nested lists are ragged; every instance must have "
            "the same shape.",
        )
    return (len(leaves), *(shapes.pop() if shapes else ()))


def _json_value(array, info):
    if not info.is_string:
        return np.asarray(array).tolist()
    binary = info.name.endswith(BINARY_OUTPUT_SUFFIX)

    def encode(item):
        if isinstance(item, list):
            return [encode(element) for element in item]
        if not binary:
            try:
                return item.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return {"b64": base64.b64encode(item).decode("ascii")}

    return encode(np.asarray(array, dtype=object).tolist())
