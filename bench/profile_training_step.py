"""Where an ST-CNN training step's time goes, by timed sub-graphs.

Builds the seed-004 RTS pair of ``bench_training.py`` (``st_cnn`` with 32
filters, ``cnn`` with 36) at 42x42 and times, each as its own
``tf.function`` in graph mode without XLA (what ``model.fit`` runs on a CPU),
forward and backward where the step differentiates it:

- the whole step of each model (loss and the gradients of every trainable
  weight; the optimizer's update, the same for both, is left out);
- the ST-CNN's parts: the localisation (downsampling, localisation net and
  regression head to theta), the grid (theta to grid, and its gradient), the
  sampling forward, the sampling forward and backward to the grid, and the
  trunk behind the transformer (its forward and backward, the input's
  gradient included).

The sampling gradient is taken with respect to the grid only: the images
fed to the transformer are data. Prints milliseconds per step (median of
the rounds, interleaved) and each part's share of the ST-CNN step. TensorFlow
only (graph mode is the question).

    PYTHONPATH=. KERAS_BACKEND=tensorflow python bench/profile_training_step.py
"""

import argparse
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from bench.machine import machine_description
from stn_keras.models import build_model
from stn_keras.ops import grids
from stn_keras.ops import sampling

IMAGE_SIZE = 42
NUM_CLASSES = 10
FILTERS = {"cnn": 36, "st_cnn": 32}


def step_function(model, images, labels):
    """One step's loss and gradients of every trainable weight."""
    loss_function = keras.losses.SparseCategoricalCrossentropy()

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_function(labels, model(images, training=True))
        return tape.gradient(loss, model.trainable_variables)

    return step


def transformer_parts(model, images, labels):
    """Timed sub-graphs of the ST-CNN's transformer and trunk."""
    transformer = model.get_layer("transformer")
    localization_variables = (
        transformer.localization_net.trainable_variables
        + transformer.regression.trainable_variables
    )
    # The transformer also returns theta; the trunk reads its images.
    transformer_output = transformer.output
    if isinstance(transformer_output, (list, tuple)):
        transformer_output = transformer_output[0]
    trunk = keras.Model(transformer_output, model.output)
    output_size = (IMAGE_SIZE, IMAGE_SIZE)
    loss_function = keras.losses.SparseCategoricalCrossentropy()

    def localize():
        if hasattr(transformer, "localize"):
            return transformer.localize(images, training=True)
        # Commits before SpatialTransformer.localize, for "before" figures.
        features = transformer.localization_net(transformer._downsample(images), training=True)
        return transformer.regression(tf.reshape(features, (tf.shape(features)[0], -1)))

    theta = tf.Variable(localize())
    grid = tf.Variable(grids.make_grid("affine", theta, output_size))
    transformed = tf.Variable(sampling.grid_sample(images, grid))

    @tf.function
    def localisation():
        with tf.GradientTape() as tape:
            value = tf.reduce_sum(localize())
        return tape.gradient(value, localization_variables)

    @tf.function
    def grid_generation():
        with tf.GradientTape() as tape:
            value = tf.reduce_sum(grids.make_grid("affine", theta, output_size))
        return tape.gradient(value, theta)

    @tf.function
    def sampling_forward():
        return sampling.grid_sample(images, grid)

    @tf.function
    def sampling_forward_backward():
        with tf.GradientTape() as tape:
            value = tf.reduce_sum(tf.square(sampling.grid_sample(images, grid)))
        return tape.gradient(value, grid)

    @tf.function
    def trunk_step():
        with tf.GradientTape() as tape:
            loss = loss_function(labels, trunk(transformed, training=True))
        return tape.gradient(loss, trunk.trainable_variables + [transformed])

    return {
        "localisation (downsample, net, head), fwd+bwd": localisation,
        "grid, fwd+bwd": grid_generation,
        "sampling, fwd": sampling_forward,
        "sampling, fwd+bwd to the grid": sampling_forward_backward,
        "trunk behind the transformer, fwd+bwd": trunk_step,
    }


def seconds(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=15)
    arguments = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    images = tf.constant(
        rng.random((arguments.batch_size, IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.float32)
    )
    labels = tf.constant(rng.integers(0, NUM_CLASSES, arguments.batch_size))
    models = {
        name: build_model(name, (IMAGE_SIZE, IMAGE_SIZE, 1), NUM_CLASSES, filters=filters)
        for name, filters in FILTERS.items()
    }
    functions = {
        f"{name} whole step (loss and all gradients)": step_function(model, images, labels)
        for name, model in models.items()
    }
    functions.update(transformer_parts(models["st_cnn"], images, labels))
    for function in functions.values():
        function()
        function()
    timings = {name: [] for name in functions}
    for _ in range(arguments.rounds):
        for name, function in functions.items():
            timings[name].append(seconds(function))
    milliseconds = {name: 1e3 * statistics.median(values) for name, values in timings.items()}
    total = milliseconds["st_cnn whole step (loss and all gradients)"]
    print(machine_description())
    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, graph mode without XLA, "
        f"batch {arguments.batch_size}, {IMAGE_SIZE}x{IMAGE_SIZE}, median of "
        f"{arguments.rounds} interleaved rounds"
    )
    print(f"{'part':48} {'ms/step':>8} {'of st_cnn step':>15}")
    for name, value in milliseconds.items():
        print(f"{name:48} {value:8.2f} {100 * value / total:14.0f}%")


if __name__ == "__main__":
    main()
