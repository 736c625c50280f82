"""Which test images several models get wrong: shared errors and their average.

Runs every model on the same split and prints each one's errors, how many
of them another model makes too, the images wrong in every model, and the
errors of the models' averaged probabilities (an ensemble, reported apart
from any single model's figure). The data settings come from the run's
config.json beside the first model; --data-dir overrides its data directory.
Usage:

    PYTHONPATH=. python experiments/error_overlap.py --split test \\
        --models saved_models/rts_mnist_st_cnn/model.keras runs/a/model.keras runs/b/model.keras
"""

import argparse
import json
import logging
import sys

import numpy as np

from stn_keras import evaluation
from stn_keras.data import as_float_images
from stn_keras.data.split_arrays import SPLITS
from stn_keras.settings import load_data


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", required=True, help="two or more .keras files or SavedModels")
    parser.add_argument("--split", default="test", choices=SPLITS, help="split to run (default: test)")
    parser.add_argument("--data-dir", help="data directory; unset: the first model's run's")
    parser.add_argument("--batch-size", type=int, default=256, help="prediction batch (default: 256)")
    parser.add_argument("--output", help="also write the figures to this JSON file")
    return parser


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if len(arguments.models) < 2:
        parser.error(f"--models needs at least two models. Received: {arguments.models}")
    overrides = {"data_dir": arguments.data_dir} if arguments.data_dir else {}
    try:
        dataset = load_data(evaluation.data_config_for(arguments.models[0], overrides))
        images, labels = dataset.split(arguments.split)
        float_images = as_float_images(images)
        probabilities = []
        for path in arguments.models:
            trained = evaluation.load_trained_model(path, arguments.batch_size)
            evaluation.check_compatible(trained, dataset, arguments.split)
            probabilities.append(np.asarray(trained.predict(float_images), dtype="float32"))
    except ValueError as error:
        # A missing or damaged model, or one that does not fit the data:
        # said in one line, as evaluate.py says it.
        parser.error(str(error))
    overlap = evaluation.error_overlap(labels, probabilities)
    print(evaluation.format_error_overlap(overlap, arguments.models))
    if arguments.output:
        with open(arguments.output, "w") as file:
            json.dump({"models": arguments.models, "split": arguments.split, **overlap}, file, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
