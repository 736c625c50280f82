"""Time of a training epoch of a run's configuration, and what producing its batches costs.

Resolves the settings of ``--config`` as ``train.py`` does, loads its data
set, builds the same training input (online distortion or augmentation
included) and the same compiled model, then times:

- producing every batch of one epoch alone (the input pipeline's work);
- ``--epochs`` epochs of ``model.fit`` on that input, without validation
  or callbacks; the first epoch, which traces and compiles, is left out of
  the median.

Prints both, images per second, and the batches' share of an epoch.

    STN_DATA_DIR=../shared/data PYTHONPATH=. KERAS_BACKEND=tensorflow \
        python bench/bench_epoch.py --config experiments/cpu/rts_st_cnn_affine.yaml
"""

import argparse
import statistics
import time

import keras

from bench.machine import machine_description
from stn_keras import training
from stn_keras.settings import load_data
from stn_keras.settings import resolve_settings


class EpochTimes(keras.callbacks.Callback):
    """Wall-clock seconds of each epoch."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="a train.py configuration file")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of model.fit (>= 2)")
    arguments = parser.parse_args(argv)
    settings = resolve_settings(
        {"epochs": arguments.epochs, "output_dir": "unused"}, arguments.config
    )
    dataset = load_data(settings)
    batches = training.training_batches(settings, dataset, first_epoch=0)
    steps = batches.steps_per_epoch
    labels = dataset.y_train_undistorted if settings.online_distortion else dataset.y_train
    images_per_epoch = len(labels)

    start = time.perf_counter()
    for index in range(steps):
        batches[index]
    production = time.perf_counter() - start

    model = training.build_configured_model(settings, dataset.image_shape, dataset.num_classes)
    model.compile(
        optimizer=training.make_optimizer(settings, steps, model),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=settings.jit_compile,
    )
    times = EpochTimes()
    model.fit(
        batches,
        epochs=arguments.epochs,
        steps_per_epoch=steps,
        callbacks=[times],
        verbose=0,
        shuffle=False,
    )
    epoch = statistics.median(times.seconds[1:])
    print(machine_description())
    print(
        f"{arguments.config}: model {settings.model}, {steps} steps of "
        f"{settings.batch_size}, {images_per_epoch} images an epoch, "
        f"jit_compile={model.jit_compile}, Keras {keras.__version__} on "
        f"{keras.backend.backend()}"
    )
    print(f"producing one epoch's batches alone: {production:7.1f} s")
    print(
        f"one epoch of model.fit (median of {len(times.seconds) - 1} after the first): "
        f"{epoch:7.1f} s, {images_per_epoch / epoch:7.0f} images/s; batches "
        f"{100 * production / epoch:.0f}% of it"
    )


if __name__ == "__main__":
    main()
