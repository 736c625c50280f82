"""`create_app`: a FastAPI application speaking TensorFlow Serving's REST API."""

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import logging
import re

from stn_keras.export.names import SERVING_DEFAULT_SIGNATURE
from stn_keras.extras import import_extra
from stn_keras.serving.batcher import Batcher
from stn_keras.serving.image_limits import check_image_sizes
from stn_keras.serving.request_parsing import format_predict_response
from stn_keras.serving.request_parsing import parse_predict_request
from stn_keras.serving.served_model import ServedModel
from stn_keras.serving.serving_error import ServingError
from stn_keras.validation import check_bool
from stn_keras.validation import check_int
from stn_keras.validation import check_number

logger = logging.getLogger(__name__)

DEFAULT_MAX_BATCH_SIZE = 32
DEFAULT_BATCH_TIMEOUT_MS = 2.0
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
# Decoded pixels the encoded images of one request may declare together.
DEFAULT_MAX_REQUEST_PIXELS = 4096 * 4096
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
# The message of a failed tf.debugging.Assert: "assertion failed: [text]".
ASSERTION_MESSAGE = re.compile(r"assertion failed: \[(.*)\]")
# URL paths under /v1/models/ the server knows: GET resources and predict.
RESOURCE_PATH = re.compile(r"[^/:]+(/versions/[^/:]+)?(/metadata)?")
PREDICT_PATH = re.compile(r"[^/:]+(/versions/[^/:]+)?:predict")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

PREDICT_REQUEST_SCHEMA = {
    "type": "object",
    "properties": {
        "signature_name": {
            "type": "string",
            "description": f"Signature to call; {SERVING_DEFAULT_SIGNATURE} when absent.",
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
PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": PREDICT_REQUEST_SCHEMA}},
    }
}


def create_app(
    models,
    max_batch_size=DEFAULT_MAX_BATCH_SIZE,
    batch_timeout_ms=DEFAULT_BATCH_TIMEOUT_MS,
    max_body_bytes=DEFAULT_MAX_BODY_BYTES,
    enable_batching=True,
    num_threads=DEFAULT_NUM_THREADS,
    num_batch_threads=DEFAULT_NUM_BATCH_THREADS,
    max_request_pixels=DEFAULT_MAX_REQUEST_PIXELS,
):
    """Builds the serving application and loads its models.

    Endpoints (TensorFlow Serving's REST API, ``/versions/{version}``
    optional in each): ``GET /v1/models/{name}`` (status),
    ``GET /v1/models/{name}/metadata`` (signatures and export options) and
    ``POST /v1/models/{name}:predict``. Errors answer ``{"error": "..."}``
    with a 4xx status for the client's mistakes. The OpenAPI description is
    at ``/openapi.json`` (no ``/docs`` page: it would load its scripts from
    a CDN).

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
        max_request_pixels: the most decoded pixels (height x width x
            frames, from the headers) the encoded images of one request may
            declare together; each image is also held to its model's
            ``max_image_pixels``.

    Returns:
        A ``fastapi.FastAPI`` application.

    Raises:
        ValueError: a bad setting, or a model directory that does not hold
            a loadable SavedModel.
        ModuleNotFoundError: FastAPI is not installed (the ``serving`` extra).
    """
    fastapi = import_extra("fastapi", "serving", "The HTTP server")

    settings = {
        "max_batch_size": check_int("max_batch_size", max_batch_size, 1),
        "batch_timeout_s": check_number("batch_timeout_ms", batch_timeout_ms, 0) / 1000.0,
        "max_body_bytes": check_int("max_body_bytes", max_body_bytes, 1),
        "enable_batching": check_bool("enable_batching", enable_batching),
        "num_batch_threads": check_int("num_batch_threads", num_batch_threads, 1),
        "max_request_pixels": check_int("max_request_pixels", max_request_pixels, 1),
    }
    check_int("num_threads", num_threads, 1)
    if not models:
        raise ValueError("`models` must name at least one model directory.")
    served = {name: ServedModel(name, path) for name, path in models.items()}
    executor = concurrent.futures.ThreadPoolExecutor(
        num_threads, thread_name_prefix="model"
    )
    server = _Server(served, executor, **settings)
    app = fastapi.FastAPI(
        title="stn_keras model server",
        description="TensorFlow Serving's REST API for SavedModels exported "
        "by stn_keras.export.export_saved_model.",
        lifespan=server.lifespan,
        docs_url=None,
        redoc_url=None,
    )
    _add_error_handlers(app)
    _add_model_routes(app, server)
    _add_predict_routes(app, server)
    return app


class _Server:
    """The served models, their batchers and the request handling."""

    def __init__(self, served, executor, max_batch_size, batch_timeout_s,
                 max_body_bytes, enable_batching, num_batch_threads,
                 max_request_pixels):
        self.served = served
        self.executor = executor
        self.max_batch_size = max_batch_size
        self.batch_timeout_s = batch_timeout_s
        self.max_body_bytes = max_body_bytes
        self.enable_batching = enable_batching
        self.num_batch_threads = num_batch_threads
        self.max_request_pixels = max_request_pixels
        self.batchers = {}

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        yield
        # Uvicorn runs this after the requests in flight have been answered.
        for batcher in self.batchers.values():
            await batcher.close()
        self.executor.shutdown(wait=True)

    def model(self, name, version=None):
        """The `ServedModel` named in the URL, or a 404."""
        if name not in self.served:
            raise ServingError(
                404,
                f"Servable not found for request: Latest({name}); this server "
                f"serves {sorted(self.served)}.",
            )
        self.served[name].check_version(version)
        return self.served[name]

    def batcher(self, model, signature_name):
        key = (model.name, signature_name)
        if key not in self.batchers:
            self.batchers[key] = Batcher(
                functools.partial(model.run, signature_name),
                self.max_batch_size,
                self.batch_timeout_s,
                self.executor,
                self.num_batch_threads,
            )
        return self.batchers[key]

    async def predict(self, request, name, version):
        """Answers a predict request: parse, check, run (batched), format."""
        import fastapi

        model = self.model(name, version)
        body = await _read_body(request, self.max_body_bytes)
        parsed = parse_predict_request(body, model, self.max_batch_size)
        signature = model.signature(parsed.signature_name)
        check_image_sizes(
            parsed.inputs, signature, model.max_image_pixels, self.max_request_pixels
        )
        try:
            if self.enable_batching and signature.batchable and parsed.batch_size:
                outputs = await self.batcher(model, parsed.signature_name).submit(
                    parsed.inputs, parsed.batch_size
                )
            else:
                outputs = await asyncio.get_running_loop().run_in_executor(
                    self.executor, model.run, parsed.signature_name, parsed.inputs
                )
        except Exception as error:
            raise _model_error(error)
        answer = format_predict_response(outputs, signature, parsed.row_format)
        return fastapi.Response(json.dumps(answer), media_type="application/json")


def _add_error_handlers(app):
    import fastapi
    import starlette.exceptions

    @app.exception_handler(ServingError)
    async def serving_error(request, error):
        return fastapi.responses.JSONResponse(
            {"error": error.message}, status_code=error.status_code, headers=error.headers
        )

    @app.exception_handler(starlette.exceptions.HTTPException)
    async def http_error(request, error):
        # Starlette's 405 carries the Allow header HTTP requires with it.
        return fastapi.responses.JSONResponse(
            {"error": f"{error.detail}: {request.method} {request.url.path}"},
            status_code=error.status_code,
            headers=error.headers,
        )


def _add_model_routes(app, server):
    """Status and metadata, with and without a version."""

    @app.get("/v1/models/{name}", summary="Model status")
    async def status(name: str):
        if ":" in name:
            raise unroutable("GET", name)
        return server.model(name).status()

    @app.get("/v1/models/{name}/versions/{version}", summary="Model version status")
    async def version_status(name: str, version: str):
        if ":" in version:
            raise unroutable("GET", f"{name}/versions/{version}")
        return server.model(name, version).status()

    @app.get("/v1/models/{name}/metadata", summary="Model metadata")
    async def metadata(name: str):
        return server.model(name).metadata()

    @app.get(
        "/v1/models/{name}/versions/{version}/metadata",
        summary="Model version metadata",
    )
    async def version_metadata(name: str, version: str):
        return server.model(name, version).metadata()


def _add_predict_routes(app, server):
    """Predict, with and without a version, and every other path: 404 or 405."""
    import fastapi

    @app.post("/v1/models/{name}:predict", summary="Predict", openapi_extra=PREDICT_BODY)
    async def predict_latest(request: fastapi.Request, name: str):
        return await server.predict(request, name, None)

    @app.post(
        "/v1/models/{name}/versions/{version}:predict",
        summary="Predict with a given version",
        openapi_extra=PREDICT_BODY,
    )
    async def predict_version(request: fastapi.Request, name: str, version: str):
        return await server.predict(request, name, version)

    @app.api_route("/v1/models/{path:path}", methods=list(HTTP_METHODS), include_in_schema=False)
    async def other(request: fastapi.Request, path: str):
        raise unroutable(request.method, path)


def unroutable(method, path):
    """The `ServingError` for a request no route answers: 405 or 404."""
    url = f"/v1/models/{path}"
    if PREDICT_PATH.fullmatch(path):
        return ServingError(
            405,
            f"{method} {url}: a predict request must be a POST with a JSON body.",
            headers={"Allow": "POST"},
        )
    if RESOURCE_PATH.fullmatch(path):
        return ServingError(
            405,
            f"{method} {url}: model status and metadata answer GET only.",
            headers={"Allow": "GET"},
        )
    return ServingError(
        404,
        f"Unsupported request path {url}; this server answers GET "
        "/v1/models/NAME[/versions/VERSION][/metadata] and POST "
        "/v1/models/NAME[/versions/VERSION]:predict.",
    )


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
        message = " ".join(lines)
        assertion = ASSERTION_MESSAGE.search(message)
        if assertion:
            message = assertion.group(1)
        return ServingError(400, "Invalid input: " + message)
    logger.exception("Model call failed", exc_info=error)
    return ServingError(500, f"The model call failed: {type(error).__name__}: {error}")
