"""Times RTS generation for all 60,000 MNIST training digits (issue 3).

Usage (target: at most 10 s on 2 CPU cores):

    STN_DATA_DIR=../shared/data KERAS_BACKEND=tensorflow \
        python bench/bench_distortions.py [--distortion rts] [--repeats 2]

The first run includes compiling the sampler; the best of ``--repeats`` runs
is reported as the steady-state figure.
"""

import argparse
import logging
import os
import time

import keras

from machine import cpu_model
from stn_keras.data import DISTORTIONS
from stn_keras.data import distort
from stn_keras.data import load_dataset

logger = logging.getLogger("bench_distortions")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distortion", default="rts", choices=DISTORTIONS)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    dataset = load_dataset("mnist", data_dir=args.data_dir, val_size=0)
    images, labels = dataset.x_train, dataset.y_train
    timings = []
    for repeat in range(args.repeats):
        start = time.perf_counter()
        result = distort(images, args.distortion, seed=repeat, labels=labels)
        timings.append(time.perf_counter() - start)
        logger.info(
            "run %d: %s for %d images -> %s in %.2f s (%.0f images/s)",
            repeat + 1,
            args.distortion,
            len(images),
            result.images.shape,
            timings[-1],
            len(images) / timings[-1],
        )
    best = min(timings)
    logger.info(
        "best: %.2f s, %.0f images/s; first run (with compilation): %.2f s; "
        "backend %s, %d CPU cores, %s",
        best,
        len(images) / best,
        timings[0],
        keras.backend.backend(),
        os.cpu_count(),
        cpu_model(),
    )


if __name__ == "__main__":
    main()
