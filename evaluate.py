"""Evaluate a trained model of stn_keras: ``python evaluate.py --help``.

Writes metrics.json, confusion_matrix.csv/.png, st_samples.png and
misclassified.png to ``--output-dir`` and prints the per-class table, the
overall accuracy and, for a distorted data set, the errors by distortion
parameter and on the same digits undistorted. Data settings default to those in the run's
config.json next to the model.
"""

import argparse
import logging
import sys

from stn_keras import evaluation
from stn_keras.data.split_arrays import SPLITS
from stn_keras.setting_flags import add_setting_flag
from stn_keras.settings import OPTIONS
from stn_keras.settings import load_data

# The data settings of the model's run that an evaluation may override.
DATA_FLAGS = (
    "dataset", "distortion", "data_dir", "seed", "test_seed", "val_size", "image_size"
)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="evaluate.py",
        description="Evaluate a .keras model or an exported SavedModel on a "
        "data split: metrics, confusion matrix and transformer pictures.",
    )
    parser.add_argument(
        "--model", required=True, help="a .keras file or a SavedModel directory"
    )
    parser.add_argument(
        "--split",
        default="test",
        choices=SPLITS,
        help="split to evaluate (default: test)",
    )
    parser.add_argument(
        "--output-dir",
        help="where to write the reports (default: evaluation/ beside the model)",
    )
    parser.add_argument(
        "--compare-with",
        metavar="MODEL",
        help="another .keras file or SavedModel run on the same images: both "
        "models' errors, the images only one gets right and the exact McNemar "
        "p-value, printed and written to metrics.json",
    )
    data = parser.add_argument_group(
        "data", "the data set to evaluate on, as train.py's flags name it; "
        "unset, a flag takes the run's setting, from the config.json beside the model"
    )
    for name in DATA_FLAGS:
        option = OPTIONS[name]
        shown = "the run's" if option.default is None else f"the run's, or {option.default}"
        add_setting_flag(data, name, option, default_text=shown)
    parser.add_argument(
        "--batch-size", type=int, default=256, help="prediction batch (default: 256)"
    )
    parser.add_argument(
        "--num-samples",
        type=int,
        default=8,
        help="images in st_samples.png (default: 8)",
    )
    return parser


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if arguments.batch_size < 1 or arguments.num_samples < 1:
        parser.error(
            "--batch-size and --num-samples must be >= 1. Received: "
            f"{arguments.batch_size} and {arguments.num_samples}"
        )
    try:
        trained = evaluation.load_trained_model(
            arguments.model, arguments.batch_size
        )
        data_config = evaluation.data_config_for(
            arguments.model,
            {
                name: getattr(arguments, name)
                for name in DATA_FLAGS
                if getattr(arguments, name) is not None
            },
        )
        dataset = load_data(data_config)
        output_dir = arguments.output_dir or evaluation.default_output_dir(
            arguments.model
        )
        metrics = evaluation.evaluate(
            trained,
            dataset,
            output_dir,
            split=arguments.split,
            batch_size=arguments.batch_size,
            num_samples=arguments.num_samples,
            compare_with=arguments.compare_with,
        )
    except (ValueError, FileNotFoundError) as error:
        # Missing data raises the data layer's FileNotFoundError: shown as is.
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    print(evaluation.format_report(metrics, dataset.class_names))
    if "comparison" in metrics:
        print(evaluation.format_comparison(metrics["comparison"]))
    print(f"Reports written to {output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
