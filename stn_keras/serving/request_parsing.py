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
import re
import secrets

import numpy as np

from stn_keras.export.names import SERVING_DEFAULT_SIGNATURE
from stn_keras.serving.serving_error import ServingError

REQUEST_FIELDS = ("inputs", "instances", "signature_name")
# Where a batch of instances or inputs given as a JSON array starts.
_BATCH_ARRAY = re.compile(r'"(instances|inputs)"\s*:\s*\[')
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
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
    document = _parse_document(body)
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
    # Booleans become 1.0 and 0.0 in a numeric numpy array; looking for
    # them costs a walk through the values, needed only when the body holds
    # the words at all.
    may_hold_booleans = b"true" in body or b"false" in body
    inputs = {
        info.name: _to_array(values[info.name], info, signature.name, may_hold_booleans)
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


def _parse_document(body):
    """The request's JSON document, a numeric batch read into numpy on the way.

    ``json.loads`` makes a Python object of every number: 1 MB of JSON
    numbers becomes about 12 MB of floats and lists. So the array of
    ``instances`` or ``inputs``, when it holds only numbers, is read one
    instance at a time into one numpy array, and the rest of the document
    parsed with a placeholder in its place. Any other body, or anything
    unexpected on the way, is parsed whole by ``json.loads``, whose errors
    the answer then reports.
    """
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
    except UnicodeDecodeError:
        return _parse_json(body)
    found = _BATCH_ARRAY.search(text)
    batch = None if found is None else _numeric_batch(text, found.end() - 1)
    if batch is not None:
        array, end = batch
        placeholder = secrets.token_hex(16)
        try:
            document = json.loads(f'{text[:found.end() - 1]}"{placeholder}"{text[end:]}')
        except (json.JSONDecodeError, RecursionError):
            document = None
        # The placeholder stands where the document has its batch, and only
        # there (a key spelt "instances" inside a string would not match).
        key = found.group(1)
        if isinstance(document, dict) and document.get(key) == placeholder:
            document[key] = array
            return document
    return _parse_json(body)


def _numeric_batch(text, start):
    """``(array, end)`` of the JSON array of numeric instances at ``start``.

    Returns ``None`` for an empty array, one holding anything but numbers
    (or lists of them) of one shape and kind, or invalid JSON.
    """
    rows = None
    count = 0
    position = _WHITESPACE.match(text, start + 1).end()
    while position < len(text) and text[position] != "]":
        try:
            value, end = _DECODER.raw_decode(text, position)
            row = np.asarray(value)
        except (json.JSONDecodeError, ValueError, RecursionError):
            return None
        if row.dtype.kind not in "iuf" or (rows is not None and row.shape != rows.shape[1:]):
            return None
        if rows is None:
            # Room for as many rows as the text could hold; grown if short.
            capacity = max(1, (len(text) - start) // max(end - position, 1) + 1)
            rows = np.empty((capacity, *row.shape), row.dtype)
        elif count == len(rows):
            rows = np.concatenate([rows, np.empty_like(rows)])
        if row.dtype.kind == "f" and rows.dtype.kind != "f":
            rows = rows.astype(np.float64)
        rows[count] = row
        count += 1
        position = _WHITESPACE.match(text, end).end()
        if position < len(text) and text[position] == ",":
            position = _WHITESPACE.match(text, position + 1).end()
            if position < len(text) and text[position] == "]":
                return None  # A trailing comma: invalid JSON.
        elif position < len(text) and text[position] != "]":
            return None
    if rows is None or position >= len(text):
        return None
    # Booleans would have become numbers; the whole parse refuses them.
    if text.find("true", start, position) >= 0 or text.find("false", start, position) >= 0:
        return None
    # Shrunk in place: the unused capacity is given back without a copy.
    rows.resize((count, *rows.shape[1:]), refcheck=False)
    return rows, position + 1


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
    names = _input_names(signature)
    if isinstance(instances, np.ndarray):  # Read by `_numeric_batch`.
        if len(names) != 1:
            raise _not_an_instance_object(0, names, signature)
        return {names[0]: instances}
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
            raise _not_an_instance_object(index, names, signature)
    return columns


def _not_an_instance_object(index, names, signature):
    return ServingError(
        400,
        f"Instance {index} must be an object with a value for each input "
        f"{names} of signature {signature.name!r}.",
    )


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


def _to_array(value, info, signature_name, may_hold_booleans):
    where = f"Input {info.name!r} of signature {signature_name!r}"
    if info.is_string:
        array = _string_array(value, where)
    else:
        array = _numeric_array(value, info, where, may_hold_booleans)
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


def _numeric_array(value, info, where, may_hold_booleans):
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        raise ServingError(
            400,
            f"{where}: the nested lists are ragged; every instance must have "
            "the same shape.",
        )
    if array.dtype.kind == "O":
        array = _big_integers_as_numbers(array, info, where)
    accepted = ACCEPTED_KINDS.get(info.dtype.kind, "")
    if array.size and array.dtype.kind not in accepted:
        raise ServingError(
            400,
            f"{where} expects {info.dtype_name} values; received "
            f"{KIND_DESCRIPTIONS.get(array.dtype.kind, array.dtype.name)}.",
        )
    if may_hold_booleans and array.dtype.kind in "iuf" and _holds_booleans(value):
        raise ServingError(
            400,
            f"{where} expects {info.dtype_name} values; received booleans "
            "among the numbers.",
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


def _big_integers_as_numbers(array, info, where):
    """An object array of numbers (JSON integers beyond 64 bits) as numbers.

    numpy keeps integers beyond 64 bits as Python objects. A JSON number
    means the same whatever its spelling, so ``10**30`` is read as ``1e30``
    for a float input (refused beyond the float range, as ``1e39`` is) and
    is out of range for an integer input. Other objects are left for the
    caller to refuse.
    """
    leaves = array.ravel().tolist()
    if not all(type(leaf) in (int, float) for leaf in leaves):
        return array
    if info.dtype.kind == "f":
        return np.array([_as_float(leaf) for leaf in leaves]).reshape(array.shape)
    raise ServingError(
        400, f"{where} holds values outside the range of {info.dtype_name}."
    )


def _as_float(number):
    try:
        return float(number)
    except OverflowError:  # Beyond the float64 range: refused as non-finite.
        return float("inf") if number > 0 else float("-inf")


def _holds_booleans(value):
    if isinstance(value, list):
        return any(_holds_booleans(item) for item in value)
    return isinstance(value, bool)


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
