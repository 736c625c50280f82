"""Serve exported SavedModels over TensorFlow Serving's REST API.

Example:

    python -m stn_keras.serving --model-dir runs/mnist/saved_model --model-name mnist
    curl -d '{"instances": [[[[0.0], ...]]]}' \\
        http://127.0.0.1:8501/v1/models/mnist:predict

``serve.py`` at the repository root runs the same command line. See
docs/SERVING.md for the endpoints, the signatures, the limits and
TensorFlow Serving.
"""

import argparse
import logging
import os
import sys

from stn_keras.serving import app as serving_app
from stn_keras.serving import http_server

logger = logging.getLogger("stn_keras.serving")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def model_name_from_dir(model_dir):
    """Default model name: the directory's name, or its parent's for a version folder."""
    path = os.path.normpath(os.path.abspath(model_dir))
    name = os.path.basename(path)
    if name.isdigit() or name == "saved_model":
        name = os.path.basename(os.path.dirname(path))
    return name


def models_from_arguments(model_dirs, model_names):
    """Pairs ``--model-dir`` and ``--model-name`` values into ``{name: dir}``."""
    if model_names and len(model_names) != len(model_dirs):
        raise ValueError(
            f"Give one --model-name per --model-dir, or none. Received "
            f"{len(model_names)} names for {len(model_dirs)} directories."
        )
    names = model_names or [model_name_from_dir(path) for path in model_dirs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(
            f"Model names must be unique; {duplicates} name several "
            "directories. Name them with --model-name."
        )
    return dict(zip(names, model_dirs))


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m stn_keras.serving",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--model-dir", action="append", required=True,
        help="SavedModel directory, or a folder of numbered versions (the "
        "highest is served); repeat to serve several models.")
    add("--model-name", action="append",
        help="name in URLs, one per --model-dir in the same order (default: "
        "the directory's name, its parent's for a version or saved_model folder)")
    add("--host", default="127.0.0.1", help="address to bind")
    add("--port", type=int, default=8501, help="port to bind")
    add("--max-batch-size", type=int, default=serving_app.DEFAULT_MAX_BATCH_SIZE,
        help="most instances per request and per batched model call")
    add("--batch-timeout-ms", type=float, default=serving_app.DEFAULT_BATCH_TIMEOUT_MS,
        help="how long a request waits for others to be batched with")
    add("--batching", action=argparse.BooleanOptionalAction, default=True,
        help="merge concurrent requests into one model call")
    add("--max-body-bytes", type=int, default=serving_app.DEFAULT_MAX_BODY_BYTES,
        help="largest request body accepted")
    add("--max-request-pixels", type=int, default=serving_app.DEFAULT_MAX_REQUEST_PIXELS,
        help="most decoded pixels the encoded images of one request may "
        "declare together (each image is also held to its model's limit)")
    add("--num-threads", type=int, default=serving_app.DEFAULT_NUM_THREADS,
        help="threads running model calls")
    add("--num-batch-threads", type=int, default=serving_app.DEFAULT_NUM_BATCH_THREADS,
        help="batches of one signature that may run at once")
    add("--header-timeout-s", type=float, default=http_server.DEFAULT_HEADER_TIMEOUT_S,
        help="seconds a connection has to send a complete request head, after "
        "opening and after the first byte of each later request")
    add("--body-timeout-s", type=float, default=http_server.DEFAULT_BODY_TIMEOUT_S,
        help="seconds a connection has to send a request body after its head")
    add("--keep-alive-timeout-s", type=float,
        default=http_server.DEFAULT_KEEP_ALIVE_TIMEOUT_S,
        help="seconds an idle keep-alive connection stays open")
    add("--max-connections", type=int, default=http_server.DEFAULT_MAX_CONNECTIONS,
        help="open connections and requests beyond which requests get 503")
    add("--log-level", default="info", help="logging level")
    return parser.parse_args(argv)


def main(argv=None):
    arguments = parse_arguments(argv)
    logging.basicConfig(
        level=arguments.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        models = models_from_arguments(arguments.model_dir, arguments.model_name)
        app = serving_app.create_app(
            models,
            max_batch_size=arguments.max_batch_size,
            batch_timeout_ms=arguments.batch_timeout_ms,
            max_body_bytes=arguments.max_body_bytes,
            enable_batching=arguments.batching,
            num_threads=arguments.num_threads,
            num_batch_threads=arguments.num_batch_threads,
            max_request_pixels=arguments.max_request_pixels,
        )
    except ValueError as error:
        sys.exit(f"serve: error: {error}")
    if arguments.host not in LOOPBACK_HOSTS:
        logger.warning(
            "Binding %s: the server is reachable from other machines and has "
            "no authentication.", arguments.host,
        )
    logger.info(
        "Serving %s on http://%s:%d (batching %s, max batch %d, timeout %g ms)",
        sorted(models), arguments.host, arguments.port,
        "on" if arguments.batching else "off",
        arguments.max_batch_size, arguments.batch_timeout_ms,
    )
    http_server.run_server(
        app,
        arguments.host,
        arguments.port,
        header_timeout_s=arguments.header_timeout_s,
        body_timeout_s=arguments.body_timeout_s,
        keep_alive_timeout_s=arguments.keep_alive_timeout_s,
        max_connections=arguments.max_connections,
        log_level=arguments.log_level.lower(),
    )
