"""The first thing to run: ``python -m stn_keras.demo`` (``make demo``).

Trains an ST-CNN on RTS-distorted ``digits`` (scikit-learn's 8x8 digits
upscaled to 28x28, rotated, scaled and translated: offline, no download),
evaluates it on the test split, exports a SavedModel and prints where the
model, the metrics and the pictures are. A few minutes on two CPU cores.
"""

import argparse
import logging
import time
from pathlib import Path

from stn_keras import evaluation
from stn_keras import training
from stn_keras.export import export_best_model
from stn_keras.settings import load_data
from stn_keras.settings import resolve_settings

DEMO_SETTINGS = {
    "dataset": "digits",
    "distortion": "rts",
    "model": "st_cnn",
    "optimizer": "adam",
    "learning_rate": 0.002,
    "lr_schedule": "cosine",
    "batch_size": 32,
    "epochs": 20,
    "verbose": 2,
}


def run_demo(output_root="runs", epochs=None):
    """Trains, evaluates and exports the demo model; returns its paths.

    Args:
        output_root: directory under which a new ``demo-<time>`` run
            directory is created (runs are never overwritten).
        epochs: number of epochs (default: ``DEMO_SETTINGS["epochs"]``).

    Returns:
        ``(TrainingResult, metrics dict, evaluation directory)``.
    """
    run_dir = Path(output_root) / time.strftime("demo-%Y%m%d-%H%M%S")
    overrides = {**DEMO_SETTINGS, "output_dir": str(run_dir)}
    if epochs is not None:
        overrides["epochs"] = epochs
    settings = resolve_settings(overrides)
    dataset = load_data(settings)
    result = training.train(settings, dataset)
    export_best_model(result.run_dir)
    evaluation_dir = run_dir / "evaluation"
    metrics = evaluation.evaluate(run_dir / "model.keras", dataset, evaluation_dir)
    print(evaluation.format_report(metrics, dataset.class_names))
    return result, metrics, evaluation_dir


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    parser = argparse.ArgumentParser(
        description="Train, evaluate and export an ST-CNN on RTS-distorted digits."
    )
    parser.add_argument(
        "--output-root", default="runs", help="parent of the run directory (default: runs)"
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=DEMO_SETTINGS["epochs"],
        help=f"training epochs (default: {DEMO_SETTINGS['epochs']})",
    )
    arguments = parser.parse_args(argv)
    if arguments.epochs < 1:
        parser.error(f"--epochs must be >= 1. Received: {arguments.epochs}")
    result, metrics, evaluation_dir = run_demo(arguments.output_root, arguments.epochs)
    run_dir = result.run_dir
    print()
    print(result.summary())
    print(f"Test accuracy: {100 * metrics['accuracy']:.2f}% on {metrics['num_samples']} images")
    print(f"Model (Keras):       {run_dir / 'model.keras'}")
    print(f"Model (SavedModel):  {run_dir / 'saved_model'}")
    print(f"Training settings:   {run_dir / 'config.json'}")
    print(f"Training history:    {run_dir / 'history.csv'}")
    print(f"Metrics:             {evaluation_dir / 'metrics.json'}")
    for name in ("st_samples.png", "confusion_matrix.png", "misclassified.png"):
        print(f"Picture:             {evaluation_dir / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
