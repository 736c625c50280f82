"""Serving benchmark: requests/second and latency of the server on loopback.

For an MNIST-sized ST-CNN (28x28x1, 10 classes) and a GTSRB-sized ST-CNN
(48x48x3, 43 classes), both with untrained random weights (throughput does
not depend on the weights), this exports SavedModels, starts serve.py on
127.0.0.1 with batching off and on, and sends batch-1 ``:predict`` requests
(float32 images as JSON numbers) from 1, 8 and 32 client threads, and the
same images as base64 PNG to the ``predict_bytes`` signature from 8 threads,
each level bounded by a request count and a time limit. The ceiling is the same model called in-process on the same images, without
HTTP: ``model.predict`` and the exported ``serving_default`` signature, one
image per call and in batches of 32.

    python bench/bench_serving.py [--requests 400] [--time-limit-s 20]

Prints a Markdown table (and writes JSON with --output).
"""

import argparse
import base64
import concurrent.futures
import io
import json
import logging
import os
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from machine import machine_description  # noqa: E402
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

logger = logging.getLogger("bench_serving")

CONCURRENCY_LEVELS = (1, 8, 32)
WARMUP_REQUESTS = 20


def build_st_cnn(name, input_shape, num_classes, localization_filters, classifier_filters, dense_units):
    """An ST-CNN: a transformer localising on the 2x-downsampled input, then a CNN."""
    import keras

    from stn_keras.layers import SpatialTransformer

    localization_net = keras.Sequential(
        [
            keras.layers.Conv2D(localization_filters, 5, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(localization_filters, 5, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(dense_units, activation="relu"),
        ]
    )
    inputs = keras.Input(input_shape)
    features = SpatialTransformer(
        localization_net, localization_downsample=2, name="spatial_transformer"
    )(inputs)
    for filters in classifier_filters:
        features = keras.layers.Conv2D(filters, 5, padding="same", activation="relu")(features)
        features = keras.layers.MaxPooling2D()(features)
    features = keras.layers.Flatten()(features)
    features = keras.layers.Dense(dense_units * 4, activation="relu")(features)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(features)
    return keras.Model(inputs, outputs, name=name)


def benchmark_models():
    """The two benchmarked models with their names."""
    return {
        "mnist_st_cnn": build_st_cnn("mnist_st_cnn", (28, 28, 1), 10, 20, (32, 32), 20),
        "gtsrb_st_cnn": build_st_cnn("gtsrb_st_cnn", (48, 48, 3), 43, 32, (64, 128, 128), 64),
    }


def png_request(image):
    """A ``predict_bytes`` request body carrying ``image`` as a base64 PNG."""
    from PIL import Image

    pixels = np.round(image * 255.0).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buffer, "PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return json.dumps({"signature_name": "predict_bytes", "instances": [{"b64": encoded}]}).encode()


def json_loads_ms(bodies, repeats=50):
    """Mean time of ``json.loads`` on one request body, the server's first step."""
    started = time.perf_counter()
    for index in range(repeats):
        json.loads(bodies[index % len(bodies)])
    return (time.perf_counter() - started) / repeats * 1000.0


def percentile_ms(latencies, percent):
    return float(np.percentile(np.asarray(latencies) * 1000.0, percent))


def summary(latencies, wall_s):
    return {
        "requests": len(latencies),
        "requests_per_s": len(latencies) / wall_s,
        "p50_ms": percentile_ms(latencies, 50),
        "p99_ms": percentile_ms(latencies, 99),
    }


def run_load(url, bodies, concurrency, max_requests, time_limit_s):
    """Sends prebuilt request bodies from ``concurrency`` threads.

    Each thread has its own keep-alive connection, opened and used once
    before the clock starts. Stops after ``max_requests`` answers or
    ``time_limit_s``; a non-200 or malformed answer aborts the benchmark.
    """
    import httpx

    clients = [httpx.Client(timeout=120) for _ in range(concurrency)]

    def send(client, index):
        started = time.perf_counter()
        answer = client.post(
            url, content=bodies[index % len(bodies)],
            headers={"content-type": "application/json"},
        )
        latency = time.perf_counter() - started
        if answer.status_code != 200 or len(answer.json()["predictions"]) != 1:
            raise RuntimeError(f"Bad answer {answer.status_code}: {answer.text[:200]}")
        return latency

    next_index = iter(range(max_requests))
    lock = threading.Lock()

    def worker(client):
        latencies = []
        while time.monotonic() < deadline:
            with lock:
                index = next(next_index, None)
            if index is None:
                break
            latencies.append(send(client, index))
        return latencies

    try:
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(lambda client: send(client, 0), clients))
            deadline = time.monotonic() + time_limit_s
            started = time.perf_counter()
            results = list(pool.map(worker, clients))
            wall_s = time.perf_counter() - started
    finally:
        for client in clients:
            client.close()
    return summary([latency for result in results for latency in result], wall_s)


def timed_calls(call, images, max_requests, time_limit_s):
    """Latencies of ``call`` on one image at a time, bounded in count and time."""
    call(images[:1])
    latencies = []
    deadline = time.monotonic() + time_limit_s
    started = time.perf_counter()
    for index in range(max_requests):
        if time.monotonic() > deadline:
            break
        call_started = time.perf_counter()
        call(images[index % len(images)][None])
        latencies.append(time.perf_counter() - call_started)
    return summary(latencies, time.perf_counter() - started)


def images_per_second(call_all, images):
    """Throughput of ``call_all`` over all images, after a warm-up call."""
    call_all(images)
    started = time.perf_counter()
    call_all(images)
    return len(images) / (time.perf_counter() - started)


def in_process_ceiling(model, export_dir, images, max_requests, time_limit_s):
    """The same images without HTTP: ``model.predict`` and the SavedModel's signature."""
    import tensorflow as tf

    from stn_keras.export import SERVING_DEFAULT_SIGNATURE

    signature = tf.saved_model.load(export_dir).signatures[SERVING_DEFAULT_SIGNATURE]

    def predict(batch):
        return model.predict(batch, batch_size=32, verbose=0)

    def call_signature(batch):
        return signature(images=tf.constant(batch))

    def call_signature_in_batches(all_images):
        for start in range(0, len(all_images), 32):
            call_signature(all_images[start : start + 32])

    return {
        "model.predict, one image per call": timed_calls(predict, images, max_requests, time_limit_s),
        "model.predict, batches of 32": images_per_second(predict, images),
        "SavedModel serving_default, one image per call": timed_calls(
            call_signature, images, max_requests, time_limit_s
        ),
        "SavedModel serving_default, batches of 32": images_per_second(
            call_signature_in_batches, images
        ),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="most requests per measurement")
    parser.add_argument("--time-limit-s", type=float, default=20.0, help="most seconds per measurement")
    parser.add_argument("--images", type=int, default=256, help="distinct random images per model")
    parser.add_argument("--batch-timeout-ms", type=float, default=2.0, help="serve.py batching wait")
    parser.add_argument("--max-batch-size", type=int, default=32, help="serve.py largest batch")
    parser.add_argument("--num-batch-threads", type=int, default=2, help="serve.py batches at once")
    parser.add_argument("--output", help="also write the results as JSON here")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    import keras

    from stn_keras.export import export_saved_model
    from tests.server_process import ServerProcess

    keras.utils.set_random_seed(0)
    models = benchmark_models()
    results = {"machine": machine_description(), "arguments": vars(arguments), "models": {}}
    with tempfile.TemporaryDirectory() as export_root:
        server_arguments = []
        inputs = {}
        for name, model in models.items():
            export_dir = os.path.join(export_root, name, "1")
            export_saved_model(model, export_dir)
            server_arguments += ["--model-dir", os.path.join(export_root, name), "--model-name", name]
            images = np.random.RandomState(1).rand(arguments.images, *model.input_shape[1:]).astype("float32")
            bodies = {
                "float JSON": [json.dumps({"instances": image[None].tolist()}).encode() for image in images],
                "PNG b64, predict_bytes": [png_request(image) for image in images],
            }
            inputs[name] = bodies
            results["models"][name] = {
                "input_shape": list(model.input_shape[1:]),
                "parameters": model.count_params(),
                "in_process": in_process_ceiling(
                    model, export_dir, images, arguments.requests, arguments.time_limit_s
                ),
                "json_loads_ms_per_float_request": json_loads_ms(bodies["float JSON"]),
                "served": {},
            }
            logger.info("%s in process: %s", name, results["models"][name]["in_process"])
        for batching in (False, True):
            mode = "batching on" if batching else "batching off"
            server = ServerProcess(
                server_arguments + [
                    "--batching" if batching else "--no-batching",
                    "--max-batch-size", str(arguments.max_batch_size),
                    "--batch-timeout-ms", str(arguments.batch_timeout_ms),
                    "--num-batch-threads", str(arguments.num_batch_threads),
                ],
                ready_model=next(iter(models)),
            )
            try:
                for name, bodies in inputs.items():
                    url = f"{server.url}/v1/models/{name}:predict"
                    for request_format, levels in (
                        ("float JSON", CONCURRENCY_LEVELS), ("PNG b64, predict_bytes", (8,))
                    ):
                        run_load(url, bodies[request_format], 4, WARMUP_REQUESTS, arguments.time_limit_s)
                        for concurrency in levels:
                            measured = run_load(
                                url, bodies[request_format], concurrency,
                                arguments.requests, arguments.time_limit_s,
                            )
                            setting = f"{request_format}, {mode}, concurrency {concurrency}"
                            results["models"][name]["served"][setting] = measured
                            logger.info("%s %s: %s", name, setting, measured)
            finally:
                server.stop()
    print(markdown_table(results))
    if arguments.output:
        with open(arguments.output, "w") as file:
            json.dump(results, file, indent=2)


def markdown_table(results):
    lines = [
        "| model | setting | requests | req/s | p50 ms | p99 ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, model in results["models"].items():
        label = f"{name} ({'x'.join(map(str, model['input_shape']))}, {model['parameters']:,} params)"
        lines.append(
            f"| {label} | json.loads of one float request body (mean ms) | - | - | "
            f"{model['json_loads_ms_per_float_request']:.1f} | - |"
        )
        for setting, measured in model["served"].items():
            lines.append(
                f"| {label} | serve.py, {setting} | {measured['requests']} | "
                f"{measured['requests_per_s']:.1f} | {measured['p50_ms']:.1f} | {measured['p99_ms']:.1f} |"
            )
        for setting, measured in model["in_process"].items():
            if isinstance(measured, dict):
                lines.append(
                    f"| {label} | in-process {setting} | {measured['requests']} | "
                    f"{measured['requests_per_s']:.1f} | {measured['p50_ms']:.1f} | {measured['p99_ms']:.1f} |"
                )
            else:
                lines.append(f"| {label} | in-process {setting} | - | {measured:.1f} images/s | - | - |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
