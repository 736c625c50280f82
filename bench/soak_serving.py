"""Soak test of the server: mixed good, bad and hostile requests on loopback.

Exports an MNIST ST-CNN (``build_model("st_cnn", (28, 28, 1), 10)``, random
weights), starts ``python -m stn_keras.serving`` on 127.0.0.1 only, warms it
up, then sends ``--requests`` requests (bounded by ``--time-limit-s``) from
``--threads`` client threads, drawn at random in fixed proportions:

- good float: 1 to 4 images as JSON numbers to ``serving_default``;
- good b64: 1 to 4 28x28 grey PNGs to ``predict_bytes`` (decoding them is
  exact, so the answer must equal ``model.predict`` on the pixels / 255);
- bad: malformed JSON, wrong shapes, NaN, unknown signatures, undecodable
  images, invalid base64;
- bomb: a 389 KB PNG declaring 20000 x 20000 pixels, or JPEG/GIF headers
  declaring 60000 x 60000 and 30000 x 30000.

A warm-up of 400 good requests (both kinds) comes first, so that the RSS
growth is measured from a server that has run both signatures.

Every good answer is compared with ``model.predict`` in this process (atol
1e-5). It reports latency percentiles by kind, answers by kind and status,
wrong answers, 5xx answers and the server's resident memory (RSS) before and
after the warm-up and at the end.

    python bench/soak_serving.py [--requests 10000] [--threads 32] [--time-limit-s 900]

Prints a Markdown table (and writes JSON with --output).
"""

import argparse
import collections
import json
import logging
import os
import random
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
from machine import machine_description  # noqa: E402
from tests.serving_helpers import b64  # noqa: E402
from tests.serving_helpers import encode_image  # noqa: E402
from tests.serving_helpers import oversized_image  # noqa: E402
from tests.serving_helpers import png_bomb  # noqa: E402

logger = logging.getLogger("soak_serving")

# Proportions of the request kinds.
MIX = {"good float": 0.45, "good b64": 0.35, "bad": 0.15, "bomb": 0.05}
POOL_SIZE = 64
WARMUP_REQUESTS = 400
ATOL = 1e-5


def good_requests(model, seed):
    """Pools of good float and b64 requests with their expected predictions."""
    generator = np.random.RandomState(seed)
    pools = {"good float": [], "good b64": []}
    for _ in range(POOL_SIZE):
        count = generator.randint(1, 5)
        pixels = generator.randint(0, 256, (count, 28, 28)).astype(np.uint8)
        images = pixels[..., None].astype("float32") / 255.0
        expected = model.predict(images, verbose=0)
        pools["good float"].append(({"instances": images.tolist()}, expected))
        body = {
            "signature_name": "predict_bytes",
            "instances": [b64(encode_image(image, "PNG")) for image in pixels],
        }
        pools["good b64"].append((body, expected))
    return {kind: [(json.dumps(body).encode(), expected) for body, expected in pool]
            for kind, pool in pools.items()}


def bad_requests():
    image = [[[0.5]] * 28] * 28
    bodies = [
        b'{"instances": [1, 2',
        b"[1, 2]",
        json.dumps({"instances": [[[0.5]] * 27] * 28}).encode(),
        json.dumps({"instances": [image], "inputs": [image]}).encode(),
        json.dumps({"signature_name": "classify", "instances": [image]}).encode(),
        b'{"instances": [[[[NaN]]]]}',
        json.dumps({"signature_name": "predict_bytes", "instances": [b64(b"not an image")]}).encode(),
        json.dumps({"signature_name": "predict_bytes", "instances": [{"b64": "@@@"}]}).encode(),
        json.dumps({"instances": []}).encode(),
    ]
    return [(body, None) for body in bodies]


def bomb_requests():
    images = [png_bomb(20000, 20000), oversized_image("JPEG", 60000, 60000),
              oversized_image("GIF", 30000, 30000)]
    return [
        (json.dumps({"signature_name": "predict_bytes", "instances": [b64(image)]}).encode(), None)
        for image in images
    ]


def is_right(kind, status, answer, expected):
    """Whether an answer is what its kind of request must get."""
    if kind.startswith("good"):
        if status != 200:
            return False
        predictions = answer["predictions"]
        if kind == "good b64":
            predictions = [prediction["probabilities"] for prediction in predictions]
        return np.allclose(predictions, expected, atol=ATOL)
    return 400 <= status < 500 and list(answer) == ["error"]


class Soak:
    """Sends the requests from threads and records every answer."""

    def __init__(self, url, pools, mix, seed):
        self.url = url
        self.pools = pools
        self.mix = mix
        self.seed = seed
        self.lock = threading.Lock()
        self.results = []

    def run(self, count, threads, time_limit_s):
        kinds = list(self.mix)
        plan = random.Random(self.seed).choices(
            kinds, weights=[self.mix[kind] for kind in kinds], k=count
        )
        deadline = time.monotonic() + time_limit_s
        next_index = iter(range(count))
        workers = [
            threading.Thread(target=self._worker, args=(plan, next_index, deadline))
            for _ in range(threads)
        ]
        started = time.monotonic()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return time.monotonic() - started

    def _worker(self, plan, next_index, deadline):
        import httpx

        chooser = random.Random(threading.get_ident())
        with httpx.Client(base_url=self.url, timeout=120) as client:
            while time.monotonic() < deadline:
                with self.lock:
                    index = next(next_index, None)
                if index is None:
                    return
                kind = plan[index]
                body, expected = chooser.choice(self.pools[kind])
                started = time.perf_counter()
                try:
                    answer = client.post("/v1/models/mnist:predict", content=body,
                                         headers={"content-type": "application/json"})
                    status, document = answer.status_code, answer.json()
                except Exception as error:  # A transport error is a result too.
                    status, document = f"transport error ({type(error).__name__})", {}
                latency_ms = (time.perf_counter() - started) * 1000
                right = isinstance(status, int) and is_right(kind, status, document, expected)
                with self.lock:
                    self.results.append((kind, status, latency_ms, right))


def summarise(results, elapsed_s, rss_mb):
    by_kind = collections.defaultdict(list)
    for kind, status, latency_ms, right in results:
        by_kind[kind].append((status, latency_ms, right))
    rows = []
    for kind in MIX:
        answers = by_kind.get(kind, [])
        if not answers:
            continue
        latencies = np.array([latency for _, latency, _ in answers])
        statuses = collections.Counter(str(status) for status, _, _ in answers)
        rows.append({
            "kind": kind,
            "requests": len(answers),
            "statuses": dict(sorted(statuses.items())),
            "wrong": sum(not right for _, _, right in answers),
            "p50_ms": round(float(np.percentile(latencies, 50)), 1),
            "p99_ms": round(float(np.percentile(latencies, 99)), 1),
        })
    return {
        "requests": len(results),
        "elapsed_s": round(elapsed_s, 1),
        "requests_per_s": round(len(results) / elapsed_s, 1),
        "wrong_answers": sum(row["wrong"] for row in rows),
        "server_errors_5xx": sum(
            1 for _, status, _, _ in results if isinstance(status, int) and status >= 500
        ),
        "rss_mb": rss_mb,
        "kinds": rows,
    }


def markdown(summary):
    lines = [
        "| kind | requests | answers by status | wrong | p50 ms | p99 ms |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for row in summary["kinds"]:
        statuses = ", ".join(f"{status}: {count}" for status, count in row["statuses"].items())
        lines.append(f"| {row['kind']} | {row['requests']} | {statuses} | {row['wrong']} | "
                     f"{row['p50_ms']} | {row['p99_ms']} |")
    rss = summary["rss_mb"]
    lines.append("")
    lines.append(
        f"{summary['requests']} requests in {summary['elapsed_s']} s "
        f"({summary['requests_per_s']} requests/s); wrong answers: "
        f"{summary['wrong_answers']}; 5xx answers: {summary['server_errors_5xx']}; "
        f"server RSS: {rss['start']} MB at start, {rss['after_warmup']} MB after the "
        f"warm-up, {rss['end']} MB at the end (growth after warm-up "
        f"{rss['end'] - rss['after_warmup']:+.1f} MB)."
    )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--time-limit-s", type=float, default=900.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="also write the results as JSON here")
    arguments = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    import keras
    import psutil

    from stn_keras.export import export_saved_model
    from stn_keras.models import build_model
    from tests.server_process import ServerProcess

    keras.utils.set_random_seed(arguments.seed)
    model = build_model("st_cnn", (28, 28, 1), 10)
    pools = good_requests(model, arguments.seed)
    pools["bad"] = bad_requests()
    pools["bomb"] = bomb_requests()
    with tempfile.TemporaryDirectory() as directory:
        export_saved_model(model, os.path.join(directory, "mnist", "1"))
        server = ServerProcess(["--model-dir", os.path.join(directory, "mnist")], "mnist")
        try:
            process = psutil.Process(server.process.pid)

            def rss_mb():
                return round(process.memory_info().rss / 2**20, 1)

            rss = {"start": rss_mb()}
            # Both good kinds, so that both signatures have run before the baseline.
            warmup_mix = {"good float": 0.5, "good b64": 0.5}
            Soak(server.url, pools, warmup_mix, arguments.seed).run(
                WARMUP_REQUESTS, arguments.threads, arguments.time_limit_s
            )
            rss["after_warmup"] = rss_mb()
            logger.info("Warmed up; sending %d requests", arguments.requests)
            soak = Soak(server.url, pools, MIX, arguments.seed)
            elapsed_s = soak.run(arguments.requests, arguments.threads, arguments.time_limit_s)
            rss["end"] = rss_mb()
        finally:
            stopped = server.stop()
    summary = summarise(soak.results, elapsed_s, rss)
    summary.update(machine_description(), clean_shutdown=stopped,
                   threads=arguments.threads, requested=arguments.requests)
    print(markdown(summary))
    print(f"\nMachine: {summary['cpu']}, {summary['cores']} cores; {summary['date']}; "
          f"clean shutdown: {stopped}")
    if arguments.output:
        with open(arguments.output, "w") as file:
            json.dump(summary, file, indent=2)


if __name__ == "__main__":
    main()
