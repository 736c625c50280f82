"""The server's resident memory (RSS) for a large JSON ``instances`` request.

Exports a 42x42 grey ST-CNN (random weights), starts ``python -m
stn_keras.serving`` on 127.0.0.1 with raised limits (``--max-body-bytes``,
``--max-batch-size``), answers a small warm-up request, then sends
``--requests`` times a body of ``--instances`` random 42x42x1 images
(JSON numbers with 4 decimals, 70 % zeros, like RTS digits). It samples the
server's RSS every 10 ms and prints, per MB of body, the peak growth over
the RSS before the request and the growth still held 2 s after the answer.

    KERAS_BACKEND=tensorflow python bench/serving_memory.py [--instances 10000] [--requests 3]
"""

import argparse
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
from tests.serving_helpers import build_st_cnn  # noqa: E402

MB = 2**20


def request_body(instances, seed=0):
    random = np.random.RandomState(seed)
    images = np.round(random.rand(instances, 42, 42, 1), 4)
    images[random.rand(*images.shape) < 0.7] = 0.0
    return json.dumps({"instances": images.tolist()}).encode()


def peak_and_retained(server, body):
    """RSS growth at the peak of the request and 2 s after its answer, in bytes."""
    import httpx
    import psutil

    process = psutil.Process(server.process.pid)
    before = process.memory_info().rss
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.monotonic()
    answer = httpx.post(
        f"{server.url}/v1/models/rts:predict", content=body,
        headers={"content-type": "application/json"}, timeout=600,
    )
    seconds = time.monotonic() - started
    time.sleep(2)
    done.set()
    sampler.join()
    assert answer.status_code == 200, answer.text[:500]
    return before, peak[0] - before, process.memory_info().rss - before, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=10000)
    parser.add_argument("--requests", type=int, default=3)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from stn_keras.export import export_saved_model
    from tests.server_process import ServerProcess

    body = request_body(arguments.instances)
    with tempfile.TemporaryDirectory() as folder:
        export_saved_model(build_st_cnn(input_shape=(42, 42, 1), num_classes=10), os.path.join(folder, "rts", "1"))
        server = ServerProcess(
            ["--model-dir", os.path.join(folder, "rts"), "--max-body-bytes", str(2 * len(body)),
             "--max-batch-size", str(arguments.instances)],
            ready_model="rts",
        )
        try:
            peak_and_retained(server, request_body(10, seed=1))
            print(f"Machine: {machine_description()}")
            print(f"Body: {len(body) / MB:.1f} MB, {arguments.instances} instances of 42x42x1\n")
            print("| request | RSS before (MB) | peak growth (MB per MB of body) | held 2 s after (MB per MB of body) | seconds |")
            print("|---|---|---|---|---|")
            for index in range(arguments.requests):
                before, peak, retained, seconds = peak_and_retained(server, body)
                print(
                    f"| {index + 1} | {before / MB:.0f} | {peak / MB:.0f} ({peak / len(body):.1f}) "
                    f"| {retained / MB:.0f} ({retained / len(body):.1f}) | {seconds:.1f} |"
                )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
