"""Serve exported SavedModels over TensorFlow Serving's REST API.

Example:

    python serve.py --model-dir runs/mnist/saved_model --model-name mnist
    curl -d '{"instances": [[[[0.0], ...]]]}' \
        http://127.0.0.1:8501/v1/models/mnist:predict

See docs/SERVING.md for the endpoints, the signatures and TensorFlow Serving.
"""

import argparse
import logging
import os

from stn_keras.serving import app as serving_app

logger = logging.getLogger("serve")
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
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model-dir", action="append", required=True,
        help="SavedModel directory, or a folder of numbered versions (the "
        "highest is served); repeat to serve several models.",
    )
    parser.add_argument(
        "--model-name", action="append",
        help="name in URLs, one per --model-dir in the same order (default: "
        "the directory's name, its parent's for a version or saved_model folder)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=8501, help="port to bind")
    parser.add_argument(
        "--max-batch-size", type=int, default=serving_app.DEFAULT_MAX_BATCH_SIZE,
        help="most instances per request and per batched model call",
    )
    parser.add_argument(
        "--batch-timeout-ms", type=float, default=serving_app.DEFAULT_BATCH_TIMEOUT_MS,
        help="how long a request waits for others to be batched with",
    )
    parser.add_argument(
        "--batching", action=argparse.BooleanOptionalAction, default=True,
        help="merge concurrent requests into one model call",
    )
    parser.add_argument(
        "--max-body-bytes", type=int, default=serving_app.DEFAULT_MAX_BODY_BYTES,
        help="largest request body accepted",
    )
    parser.add_argument(
        "--num-threads", type=int, default=serving_app.DEFAULT_NUM_THREADS,
        help="threads running model calls",
    )
    parser.add_argument(
        "--num-batch-threads", type=int, default=serving_app.DEFAULT_NUM_BATCH_THREADS,
        help="batches of one signature that may run at once",
    )
    parser.add_argument("--log-level", default="info", help="logging level")
    return parser.parse_args(argv)


def main(argv=None):
    arguments = parse_arguments(argv)
    logging.basicConfig(
        level=arguments.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    import uvicorn

    models = models_from_arguments(arguments.model_dir, arguments.model_name)
    if arguments.host not in LOOPBACK_HOSTS:
        logger.warning(
            "Binding %s: the server is reachable from other machines and has "
            "no authentication.", arguments.host,
        )
    app = serving_app.create_app(
        models,
        max_batch_size=arguments.max_batch_size,
        batch_timeout_ms=arguments.batch_timeout_ms,
        max_body_bytes=arguments.max_body_bytes,
        enable_batching=arguments.batching,
        num_threads=arguments.num_threads,
        num_batch_threads=arguments.num_batch_threads,
    )
    logger.info(
        "Serving %s on http://%s:%d (batching %s, max batch %d, timeout %g ms)",
        sorted(models), arguments.host, arguments.port,
        "on" if arguments.batching else "off",
        arguments.max_batch_size, arguments.batch_timeout_ms,
    )
    # Uvicorn answers SIGTERM and SIGINT by finishing the requests in flight.
    uvicorn.run(app, host=arguments.host, port=arguments.port,
                log_level=arguments.log_level.lower())


if __name__ == "__main__":
    main()
