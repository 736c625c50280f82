"""Benchmark: CPU inference of the shipped models in every runtime, one run.

For each model folder, times ``model.keras`` (Keras ``predict`` and a direct
``model(images)`` call), its ``saved_model/`` (the ``serving_default``
signature), ONNX Runtime and LiteRT (float, dynamic_int8 and int8, exported
here into a temporary directory with ``stn_keras.export.export_model``) at
batch 1 and batch 64, and prints images/second and the latency of one call
(median and 99th percentile) as a Markdown table, with the machine and its
load average before and after.

    KERAS_BACKEND=tensorflow STN_DATA_DIR=/path/to/data \\
        python bench/bench_inference.py saved_models/rts_mnist_st_cnn saved_models/gtsrb_st_cnn

The inputs are uniform random images of each model's input shape (the
sampler's gathers cost the same whatever the pixels); int8 calibrates on the
model's own training images, so it needs ``STN_DATA_DIR`` (without it the
int8 rows are left out, saying so). Every runtime uses its default thread
count.
"""

import argparse
import json
import logging
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from machine import machine_description  # noqa: E402
from stn_keras.export.formats import default_output  # noqa: E402
from stn_keras.export.formats import export_model  # noqa: E402
from stn_keras.export.runtimes import load_predictor  # noqa: E402

DEFAULT_MODELS = (
    "saved_models/rts_mnist_st_cnn",
    "saved_models/cluttered_mnist_st_cnn",
    "saved_models/gtsrb_st_cnn",
)
BATCH_SIZES = (1, 64)
LITERT_VARIANTS = (None, "dynamic_int8", "int8")


def time_calls(predict, images, min_seconds, min_calls):
    """Seconds of each call of ``predict(images)`` after two warm-up calls."""
    for _ in range(2):
        predict(images)
    durations = []
    started = time.perf_counter()
    while len(durations) < min_calls or time.perf_counter() - started < min_seconds:
        begin = time.perf_counter()
        predict(images)
        durations.append(time.perf_counter() - begin)
    return np.asarray(durations)


def runtimes(model_dir, export_dir, with_int8):
    """``(name, predict)`` of every runtime of one model folder."""
    import keras

    import stn_keras  # noqa: F401  (registers the layers for load_model)

    model = keras.saving.load_model(os.path.join(model_dir, "model.keras"), compile=False)
    found = [
        ("Keras predict", lambda images: model.predict(images, verbose=0)),
        ("Keras direct call", lambda images: np.asarray(model(images, training=False))),
        ("SavedModel", load_predictor(os.path.join(model_dir, "saved_model"))),
    ]
    path, _ = export_model(model_dir, "onnx", default_output(export_dir, "onnx"))
    found.append(("ONNX Runtime", load_predictor(path)))
    for quantize in LITERT_VARIANTS:
        if quantize == "int8" and not with_int8:
            continue
        path, _ = export_model(
            model_dir, "litert", default_output(export_dir, "litert", quantize), quantize=quantize
        )
        found.append((f"LiteRT {quantize or 'float'}", load_predictor(path)))
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=DEFAULT_MODELS, help="model folders")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="timing per row")
    parser.add_argument("--min-calls", type=int, default=10, help="calls per row at least")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level="WARNING")
    with_int8 = bool(os.environ.get("STN_DATA_DIR"))
    machine = machine_description()
    load_before = os.getloadavg()
    rows = []
    for model_dir in arguments.models:
        with tempfile.TemporaryDirectory() as export_dir:
            for name, predict in runtimes(model_dir, export_dir, with_int8):
                for batch_size in BATCH_SIZES:
                    shape = (batch_size, *load_shape(model_dir))
                    images = np.random.default_rng(0).random(shape, dtype=np.float32)
                    durations = time_calls(predict, images, arguments.min_seconds, arguments.min_calls)
                    rows.append((
                        os.path.basename(os.path.normpath(model_dir)), name, batch_size,
                        batch_size / durations.mean(),
                        1e3 * np.percentile(durations, 50), 1e3 * np.percentile(durations, 99),
                        len(durations),
                    ))
                    print(" | ".join(str(value) for value in rows[-1]), file=sys.stderr)
    load_after = os.getloadavg()
    print(
        f"{machine['cpu']}, {machine['cores']} cores, {machine['date']}; load average "
        f"(1, 5, 15 min) before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
        f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}"
    )
    if not with_int8:
        print("STN_DATA_DIR is unset: no int8 rows (int8 calibrates on training images).")
    print()
    print("| model | runtime | batch | images/s | p50 latency (ms) | p99 latency (ms) | calls |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for model, name, batch_size, rate, p50, p99, calls in rows:
        print(f"| {model} | {name} | {batch_size} | {rate:,.0f} | {p50:.2f} | {p99:.2f} | {calls} |")


def load_shape(model_dir):
    """The ``image_shape`` a model folder's ``config.json`` records."""
    with open(os.path.join(model_dir, "config.json")) as file:
        return tuple(json.load(file)["image_shape"])


if __name__ == "__main__":
    main()
