"""Draws one GTSRB validation track before and after a model's transformer.

A track is the same physical sign filmed in consecutive frames as the car
approaches it; the figure shows whether the transformer keeps the sign at one
place and size along the track. Usage (the data settings come from the run's
config.json beside the model):

    PYTHONPATH=. python experiments/gtsrb_track_figure.py --model saved_models/gtsrb_st_cnn/model.keras \
        --output docs/figures/gtsrb_st_cnn_track.png
"""

import argparse
import logging

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import stn_keras  # noqa: E402, F401  (registers the layers)
from stn_keras import evaluation  # noqa: E402
from stn_keras.data import as_float_images  # noqa: E402
from stn_keras import visualization  # noqa: E402
from stn_keras.data import gtsrb  # noqa: E402
from stn_keras.settings import load_data  # noqa: E402


def track_images(dataset, data_dir, track_index):
    """The validation images of the ``track_index``-th held-out track, in frame order."""
    held_out = dataset.source["val_tracks"]
    tracks = gtsrb.load_gtsrb(data_dir)["tracks_train"]
    # The validation split keeps the reader's order, so its track ids are
    # the held-out entries of the reader's.
    val_tracks = tracks[np.isin(tracks, held_out)]
    chosen = val_tracks == held_out[track_index]
    return dataset.x_val[chosen], dataset.y_val[chosen]


def plot_track(images, transformed, predictions, labels, path, frames=10):
    """Two rows: frames of the track (float images), then the transformer's outputs.

    Each output is titled with its predicted class id, red when wrong.
    """
    step = max(len(images) // frames, 1)
    picked = list(range(0, len(images), step))[:frames]
    figure, axes = plt.subplots(2, len(picked), figsize=(1.3 * len(picked), 3.0))
    inputs = visualization.displayable_images(images[picked])
    outputs = visualization.displayable_images(transformed[picked])
    for column, index in enumerate(picked):
        for row, shown in enumerate((inputs, outputs)):
            axes[row, column].imshow(shown[column], interpolation="nearest")
            axes[row, column].axis("off")
        correct = predictions[index] == labels[index]
        axes[1, column].set_title(
            f"class {predictions[index]}", fontsize=7, color="black" if correct else "red"
        )
    figure.suptitle(
        f"validation track of class {labels[0]}: input (top), transformer output "
        "(bottom, titled with the prediction; red: wrong)",
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a .keras file of a GTSRB run")
    parser.add_argument("--output", required=True, help="PNG to write")
    parser.add_argument("--track", type=int, default=0, help="which held-out track (default: 0)")
    arguments = parser.parse_args(argv)
    config = evaluation.data_config_for(arguments.model)
    dataset = load_data(config)
    images, labels = track_images(dataset, config.get("data_dir"), arguments.track)
    trained = evaluation.load_trained_model(arguments.model)
    float_images = as_float_images(images)
    transformed = trained.transformer_views(float_images)[0].images
    predictions = trained.predict(float_images).argmax(-1)
    plot_track(float_images, transformed, predictions, labels, arguments.output)
    logging.info("Wrote %s (%d frames of track %d)", arguments.output, len(images), arguments.track)


if __name__ == "__main__":
    main()
