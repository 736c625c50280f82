"""`create_app`: a FastAPI application speaking TensorFlow Serving's REST API."""

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import logging

from stn_keras.serving.batcher import Batcher
from stn_keras.serving.request_parsing import format_predict_response
from stn_keras.serving.request_parsing import parse_predict_request
from stn_keras.serving.served_model import ServedModel
from stn_keras.serving.serving_error import ServingError

logger = logging.getLogger(__name__)

DEFAULT_MAX_BATCH_SIZE = 32
DEFAULT_BATCH_TIMEOUT_MS = 2.0
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_NUM_THREADS = 4
DEFAULT_NUM_BATCH_THREADS = 2
# An oversized body is read and discarded up to this many times the limit so
# that the client, still sending, receives the 413 answer; beyond it the
# connection is answered at once.
DRAIN_FACTOR = 4
# Lines TensorFlow wraps a graph error message in; they name graph nodes only.
TENSORFLOW_ERROR_FRAMING = (
    "Graph execution error",
    "Detected at node",
    "<stack traces",
    "[[",
)

PREDICT_REQUEST_SCHEMA = {
    "type": "object",
    "properties": {
        "signature_name": {
            "type": "string",
            "description": "Signature to call; serving_default when absent.",
        },
        "instances": {
            "type": "array",
            "description": "Row format: one value (or object of named "
            "values) per instance. Binary strings as {\"b64\": \"...\"}.",
        },
        "inputs": {
            "description": "Columnar format: the batched value of the only "
            "input, or an object of named batched values.",
        },
    },
}


def create_app(
    models,
    max_batch_size=DEFAULT_MAX_BATCH_SIZE,
    batch_timeout_ms=DEFAULT_BATCH_TIMEOUT_MS,
    max_body_bytes=DEFAULT_MAX_BODY_BYTES,
    enable_batching=True,
    num_threads=DEFAULT_NUM_THREADS,
    num_batch_threads=DEFAULT_NUM_BATCH_THREADS,
):
    """Builds the serving application and loads its models.

    Endpoints (TensorFlow Serving's REST API, ``/versions/{version}``
    optional in each): ``GET /v1/models/{name}`` (status),
    ``GET /v1/models/{name}/metadata`` (signatures) and
    ``POST /v1/models/{name}:predict``. Errors answer ``{"error": "..."}``
    with a 4xx status for the client's mistakes. The OpenAPI description is
    at ``/openapi.json`` and ``/docs``.

    Args:
        models: dict of model name to model directory (a SavedModel or a
            folder of numbered versions).
        max_batch_size: the most instances in one request and in one
            batched model call.
        batch_timeout_ms: how long a request waits for others to batch with.
        max_body_bytes: the largest request body accepted (413 beyond).
        enable_batching: merge concurrent requests into one model call.
        num_threads: threads running model calls.
        num_batch_threads: batches of one signature that may run at once.

    Returns:
        A ``fastapi.FastAPI`` application.
    """
    import fastapi
    import starlette.exceptions

    for name, value in (
        ("max_batch_size", max_batch_size),
        ("max_body_bytes", max_body_bytes),
        ("num_threads", num_threads),
        ("num_batch_threads", num_batch_threads),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"`{name}` must be an int >= 1. Received: {name}={value!r}")
    if not isinstance(batch_timeout_ms, (int, float)) or not 0 <= batch_timeout_ms:
        raise ValueError(
            "`batch_timeout_ms` must be a number >= 0. "
            f"Received: batch_timeout_ms={batch_timeout_ms!r}"
        )
    if not models:
        raise ValueError("`models` must name at least one model directory.")
    served = {name: ServedModel(name, path) for name, path in models.items()}
    executor = concurrent.futures.ThreadPoolExecutor(
        num_threads, thread_name_prefix="model"
    )
    batchers = {}

    def batcher(model, signature_name):
        key = (model.name, signature_name)
        if key not in batchers:
            batchers[key] = Batcher(
                functools.partial(model.run, signature_name),
                max_batch_size,
                batch_timeout_ms / 1000.0,
                executor,
                num_batch_threads,
            )
        return batchers[key]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        # Uvicorn runs this after the requests in flight have been answered.
        for each in batchers.values():
            await each.close()
        executor.shutdown(wait=True)

    app = fastapi.FastAPI(
        title="stn_keras model server",
        description="TensorFlow Serving's REST API for SavedModels exported "
        "by stn_keras.export.export_saved_model.",
        lifespan=lifespan,
    )

    def model_for(name, version=None):
        if name not in served:
            raise ServingError(
                404,
                f"Servable not found for request: Latest({name}); this server "
                f"serves {sorted(served)}.",
            )
        served[name].check_version(version)
        return served[name]

    @app.exception_handler(ServingError)
    async def serving_error(request, error):
        return fastapi.responses.JSONResponse(
            {"error": error.message}, status_code=error.status_code
        )

    @app.exception_handler(starlette.exceptions.HTTPException)
    async def http_error(request, error):
        return fastapi.responses.JSONResponse(
            {"error": f"{error.detail}: {request.method} {request.url.path}"},
            status_code=error.status_code,
        )

    @app.get("/v1/models/{name}", summary="Model status")
    async def status(name: str):
        return model_for(name).status()

    @app.get("/v1/models/{name}/versions/{version}", summary="Model version status")
    async def version_status(name: str, version: str):
        return model_for(name, version).status()

    @app.get("/v1/models/{name}/metadata", summary="Model metadata")
    async def metadata(name: str):
        return model_for(name).metadata()

    @app.get(
        "/v1/models/{name}/versions/{version}/metadata",
        summary="Model version metadata",
    )
    async def version_metadata(name: str, version: str):
        return model_for(name, version).metadata()

    async def predict(request, name, version):
        model = model_for(name, version)
        body = await _read_body(request, max_body_bytes)
        parsed = parse_predict_request(body, model, max_batch_size)
        signature = model.signature(parsed.signature_name)
        try:
            if enable_batching and signature.batchable and parsed.batch_size:
                outputs = await batcher(model, parsed.signature_name).submit(
                    parsed.inputs, parsed.batch_size
                )
            else:
                outputs = await asyncio.get_running_loop().run_in_executor(
                    executor, model.run, parsed.signature_name, parsed.inputs
                )
        except Exception as error:
            raise _model_error(error)
        answer = format_predict_response(outputs, signature, parsed.row_format)
        return fastapi.Response(json.dumps(answer), media_type="application/json")

    predict_body = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": PREDICT_REQUEST_SCHEMA}},
        }
    }

    @app.post(
        "/v1/models/{name}:predict", summary="Predict", openapi_extra=predict_body
    )
    async def predict_latest(request: fastapi.Request, name: str):
        return await predict(request, name, None)

    @app.post(
        "/v1/models/{name}/versions/{version}:predict",
        summary="Predict with a given version",
        openapi_extra=predict_body,
    )
    async def predict_version(request: fastapi.Request, name: str, version: str):
        return await predict(request, name, version)

    @app.post("/v1/models/{path:path}", include_in_schema=False)
    async def unsupported(path: str):
        raise ServingError(
            404,
            f"Unsupported request path /v1/models/{path}; this server answers "
            "POST /v1/models/NAME[/versions/VERSION]:predict.",
        )

    return app


async def _read_body(request, max_body_bytes):
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > DRAIN_FACTOR * max_body_bytes:
        raise ServingError(
            413,
            f"The request body of {declared} bytes exceeds the limit of "
            f"{max_body_bytes} bytes (--max-body-bytes).",
        )
    chunks = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received <= max_body_bytes:
            chunks.append(chunk)
        elif received > DRAIN_FACTOR * max_body_bytes:
            break
    if received > max_body_bytes:
        raise ServingError(
            413,
            f"The request body of {received} bytes or more exceeds the limit "
            f"of {max_body_bytes} bytes (--max-body-bytes).",
        )
    return b"".join(chunks)


def _model_error(error):
    """Maps an exception of a model call to a `ServingError`."""
    import tensorflow as tf

    if isinstance(error, ServingError):
        return error
    if isinstance(error, tf.errors.InvalidArgumentError):
        # Keep TensorFlow's message, without its graph-execution framing.
        lines = [
            line.strip()
            for line in str(error.message).splitlines()
            if line.strip()
            and not line.strip().startswith(TENSORFLOW_ERROR_FRAMING)
        ]
        return ServingError(400, "Invalid input: " + " ".join(lines))
    logger.exception("Model call failed", exc_info=error)
    return ServingError(500, f"The model call failed: {type(error).__name__}: {error}")
