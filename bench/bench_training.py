"""Training throughput: ``model.fit`` of the library against PyTorch eager.

Times images/second of a training step for the seed-004 RTS pair, the
plain ``cnn`` (36 filters) and the parameter-matched ``st_cnn`` (32 filters
plus its localisation net), both at 42x42 with SGD, on the active Keras
backend, and the same two networks written in PyTorch (``affine_grid`` and
``grid_sample`` for the transformer) trained by an eager loop, in the same
process, interleaved round by round. Prints the medians, the ratio
library / torch for each network and each side's cost of the transformer
over the plain CNN. Uses the GPU when the backends see one.

    PYTHONPATH=. KERAS_BACKEND=jax python bench/bench_training.py --rounds 5
"""

import argparse
import statistics
import time

import keras
import numpy as np
import torch
import torch.nn.functional as F

from bench.machine import machine_description
from stn_keras.models import build_model
from stn_keras.runtime import describe_devices

IMAGE_SIZE = 42
NUM_CLASSES = 10
# The seed-004 pair: parameter counts match within 2%.
FILTERS = {"cnn": 36, "st_cnn": 32}


class TorchConvolutionalTrunk(torch.nn.Module):
    """9x9 conv, 2x2 pool, ReLU, 7x7 conv, 2x2 pool, ReLU, dense 50, dense 10."""

    def __init__(self, filters, size):
        super().__init__()
        self.conv_1 = torch.nn.Conv2d(1, filters, 9)
        self.conv_2 = torch.nn.Conv2d(filters, filters, 7)
        side = ((size - 8) // 2 - 6) // 2
        self.dense = torch.nn.Linear(filters * side * side, 50)
        self.logits = torch.nn.Linear(50, NUM_CLASSES)

    def forward(self, images):
        features = F.relu(F.max_pool2d(self.conv_1(images), 2))
        features = F.relu(F.max_pool2d(self.conv_2(features), 2))
        return self.logits(F.relu(self.dense(features.flatten(1))))


class TorchSpatialTransformerCNN(torch.nn.Module):
    """The library's ``st_cnn``: localise on the 2x-downsampled input, then the trunk."""

    def __init__(self, filters, size):
        super().__init__()
        self.localization_1 = torch.nn.Conv2d(1, 20, 5)
        self.localization_2 = torch.nn.Conv2d(20, 20, 5)
        side = -(-(size // 2 - 4) // 2) - 4
        self.localization_dense = torch.nn.Linear(20 * side * side, 20)
        self.regression = torch.nn.Linear(20, 6)
        torch.nn.init.zeros_(self.regression.weight)
        with torch.no_grad():
            self.regression.bias.copy_(torch.tensor([1.0, 0, 0, 0, 1, 0]))
        self.trunk = TorchConvolutionalTrunk(filters, size)

    def forward(self, images):
        small = F.interpolate(images, scale_factor=0.5, mode="bilinear", align_corners=False)
        features = F.relu(self.localization_1(small))
        features = F.max_pool2d(features, 2, ceil_mode=True)
        features = F.relu(self.localization_2(features))
        features = F.relu(self.localization_dense(features.flatten(1)))
        theta = self.regression(features).view(-1, 2, 3)
        grid = F.affine_grid(theta, images.shape, align_corners=False)
        return self.trunk(F.grid_sample(images, grid, align_corners=False))


def torch_model(name):
    size = IMAGE_SIZE
    if name == "cnn":
        return TorchConvolutionalTrunk(FILTERS[name], size)
    return TorchSpatialTransformerCNN(FILTERS[name], size)


def keras_model(name, jit_compile):
    model = build_model(name, (IMAGE_SIZE, IMAGE_SIZE, 1), NUM_CLASSES, filters=FILTERS[name])
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss="sparse_categorical_crossentropy",
        jit_compile=jit_compile,
    )
    return model


def time_keras(model, images, labels, batch_size):
    """Seconds of one ``fit`` epoch over ``images`` (compiled beforehand)."""
    start = time.perf_counter()
    model.fit(images, labels, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    return time.perf_counter() - start


def time_torch(model, optimizer, images, labels, batch_size):
    """Seconds of one eager epoch of SGD steps over ``images``."""
    synchronize = torch.cuda.synchronize if images.is_cuda else (lambda: None)
    synchronize()
    start = time.perf_counter()
    for begin in range(0, len(images), batch_size):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(
            model(images[begin : begin + batch_size]), labels[begin : begin + batch_size]
        )
        loss.backward()
        optimizer.step()
    synchronize()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="training steps per timing")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timings per side")
    parser.add_argument(
        "--jit-compile", default="auto", choices=("auto", "true", "false"),
        help="model.compile's jit_compile (default: Keras' auto)",
    )
    arguments = parser.parse_args(argv)
    jit_compile = {"auto": "auto", "true": True, "false": False}[arguments.jit_compile]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    count = arguments.batch_size * arguments.steps
    rng = np.random.default_rng(0)
    images = rng.random((count, IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.float32)
    labels = rng.integers(0, NUM_CLASSES, count)
    torch_images = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).to(device)
    torch_labels = torch.from_numpy(labels).to(device)

    keras_models = {name: keras_model(name, jit_compile) for name in FILTERS}
    torch_models = {name: torch_model(name).to(device) for name in FILTERS}
    optimizers = {
        name: torch.optim.SGD(model.parameters(), lr=0.01) for name, model in torch_models.items()
    }
    for name in FILTERS:
        keras_count = keras_models[name].count_params()
        torch_count = sum(parameter.numel() for parameter in torch_models[name].parameters())
        if keras_count != torch_count:
            raise SystemExit(
                f"{name}: the torch copy has {torch_count} parameters, the library's "
                f"{keras_count}: update the torch networks to the library's."
            )
        # Warm-up: compilation, autotuning, allocator.
        time_keras(keras_models[name], images, labels, arguments.batch_size)
        time_torch(torch_models[name], optimizers[name], torch_images, torch_labels,
                   arguments.batch_size)

    seconds = {(side, name): [] for side in ("keras", "torch") for name in FILTERS}
    for _ in range(arguments.rounds):
        for name in FILTERS:
            seconds["keras", name].append(
                time_keras(keras_models[name], images, labels, arguments.batch_size)
            )
            seconds["torch", name].append(
                time_torch(torch_models[name], optimizers[name], torch_images, torch_labels,
                           arguments.batch_size)
            )
    rate = {key: count / statistics.median(values) for key, values in seconds.items()}
    print(machine_description())
    print(
        f"Keras {keras.__version__} on {describe_devices().describe()}, jit_compile="
        f"{arguments.jit_compile}; torch {torch.__version__} eager on {device}"
    )
    print(
        f"batch {arguments.batch_size}, {arguments.steps} steps a timing, median of "
        f"{arguments.rounds} interleaved rounds, SGD, {IMAGE_SIZE}x{IMAGE_SIZE}"
    )
    print(f"{'model':8} {'params':>8} {'stn_keras img/s':>16} {'torch img/s':>12} {'ratio':>6}")
    for name in FILTERS:
        print(
            f"{name:8} {keras_models[name].count_params():8d} "
            f"{rate['keras', name]:16.0f} {rate['torch', name]:12.0f} "
            f"{rate['keras', name] / rate['torch', name]:6.2f}"
        )
    for side in ("keras", "torch"):
        overhead = rate[side, "cnn"] / rate[side, "st_cnn"] - 1
        label = "stn_keras" if side == "keras" else "torch"
        print(f"transformer overhead over the plain CNN, {label}: {100 * overhead:+.0f}%")


if __name__ == "__main__":
    main()
