"""Cost of online distortion, or of augmentation, in training.

Times ``model.fit`` of a small CNN on RTS digits for a few epochs, once
with the distortion drawn afresh for every batch by ``make_pipeline`` and
once on images distorted beforehand, and prints the ratio. With
``--augment``, the undistorted data set instead, once as it is and once
through ``stn_keras.data.augment`` (its defaults) for every batch.

    KERAS_BACKEND=tensorflow python bench/bench_online_distortion.py
    KERAS_BACKEND=tensorflow python bench/bench_online_distortion.py --augment
"""

import argparse
import logging
import time

import keras

from stn_keras.data import load_dataset
from stn_keras.data import make_pipeline

logger = logging.getLogger("bench_online_distortion")


def small_cnn(input_shape, num_classes):
    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Conv2D(32, 5, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(32, 5, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(num_classes),
        ]
    )


def time_fit(pipeline, input_shape, num_classes, epochs):
    model = small_cnn(input_shape, num_classes)
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(pipeline, epochs=1, verbose=0)  # compilation and warm-up
    start = time.perf_counter()
    model.fit(pipeline, epochs=epochs, verbose=0)
    return (time.perf_counter() - start) / epochs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--distortion", default="rts")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--augment",
        action="store_true",
        help="time augmentation of the undistorted images instead of the distortion",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    distortion = None if args.augment else args.distortion
    dataset = load_dataset(args.dataset, distortion=distortion)
    shape, classes = dataset.image_shape, dataset.num_classes
    offline = time_fit(
        make_pipeline(dataset.x_train, dataset.y_train, args.batch_size, shuffle=True),
        shape,
        classes,
        args.epochs,
    )
    online = time_fit(
        make_pipeline(
            dataset.x_train_undistorted,
            dataset.y_train_undistorted,
            args.batch_size,
            shuffle=True,
            distortion=distortion,
            augmentation={} if args.augment else None,
        ),
        shape,
        classes,
        args.epochs,
    )
    logger.info(
        "%s/%s, %d training images, batch %d, backend %s: %.2f s/epoch "
        "as stored, %.2f s/epoch drawn for every batch (x%.2f)",
        args.dataset,
        "augmentation" if args.augment else args.distortion,
        len(dataset.x_train),
        args.batch_size,
        keras.backend.backend(),
        offline,
        online,
        online / offline,
    )


if __name__ == "__main__":
    main()
