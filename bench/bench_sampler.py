"""Benchmark: the project's sampler against torch's, in the same run.

Times ``affine_grid`` + ``bilinear_sample`` (forward, and forward + backward
with respect to images and theta) on the active Keras backend against
``torch.nn.functional.affine_grid`` + ``grid_sample`` on the same CPU, and
prints images/second and the ratio project / torch (above 1: faster).

    KERAS_BACKEND=tensorflow python bench/bench_sampler.py
    KERAS_BACKEND=jax python bench/bench_sampler.py --shapes 256x42x42x1

On TensorFlow the project's step runs as a ``tf.function``, with and
without XLA (``jit_compile``); on JAX under ``jax.jit``.
"""

import argparse
import logging
import os
import sys
import time

import keras
import numpy as np
import torch
import torch.nn.functional as F
from keras import ops

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from machine import cpu_model  # noqa: E402
from stn_keras.ops import affine_grid  # noqa: E402
from stn_keras.ops import bilinear_sample  # noqa: E402

DEFAULT_SHAPES = ("256x42x42x1", "256x60x60x1", "128x48x48x3", "32x224x224x3")


def parse_shape(text):
    try:
        batch, height, width, channels = (int(part) for part in text.split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"A shape is BxHxWxC, e.g. 256x42x42x1. Received: {text!r}"
        )
    return batch, height, width, channels


def sample(images, theta):
    grid = affine_grid(theta, ops.shape(images)[1:3])
    return bilinear_sample(images, grid)


def project_steps(backend, jit_compile):
    """Compiled forward and forward+backward steps on the Keras backend."""
    if backend == "tensorflow":
        import tensorflow as tf

        def backward(images, theta, upstream):
            with tf.GradientTape() as tape:
                tape.watch([images, theta])
                output = sample(images, theta)
            return tape.gradient(output, [images, theta], upstream)

        return (
            tf.function(sample, jit_compile=jit_compile),
            tf.function(backward, jit_compile=jit_compile),
        )
    if backend == "jax":
        import jax

        def backward(images, theta, upstream):
            _, pullback = jax.vjp(sample, images, theta)
            return pullback(upstream)

        return jax.jit(sample), jax.jit(backward)
    if backend == "torch":

        def forward(images, theta):
            with torch.no_grad():
                return sample(images, theta)

        def backward(images, theta, upstream):
            images = images.detach().requires_grad_(True)
            theta = theta.detach().requires_grad_(True)
            output = sample(images, theta)
            return torch.autograd.grad(output, [images, theta], upstream)

        return forward, backward
    raise ValueError(f"Unsupported backend {backend!r}")


def torch_steps():
    def forward(images, theta):
        with torch.no_grad():
            grid = F.affine_grid(theta, images.shape, align_corners=False)
            return F.grid_sample(images, grid, align_corners=False)

    def backward(images, theta, upstream):
        images = images.detach().requires_grad_(True)
        theta = theta.detach().requires_grad_(True)
        grid = F.affine_grid(theta, images.shape, align_corners=False)
        output = F.grid_sample(images, grid, align_corners=False)
        return torch.autograd.grad(output, [images, theta], upstream)

    return forward, backward


def block(result):
    """Waits for asynchronous backends and returns the wall clock."""
    for tensor in result if isinstance(result, (list, tuple)) else [result]:
        if isinstance(tensor, torch.Tensor):
            tensor.sum().item()
        else:
            ops.convert_to_numpy(tensor)
    return time.perf_counter()


def interleaved_seconds(steps, repeats, warmup=2):
    """Median seconds per call of each ``(step, arguments)``, timed in turns.

    Calling the steps in alternation, round after round, exposes them to the
    same load on a shared machine, so their ratio stays meaningful when the
    absolute figures drift.
    """
    for step, arguments in steps:
        for _ in range(warmup):
            block(step(*arguments))
    timings = [[] for _ in steps]
    for _ in range(repeats):
        for timing, (step, arguments) in zip(timings, steps):
            start = time.perf_counter()
            timing.append(block(step(*arguments)) - start)
    return [float(np.median(timing)) for timing in timings]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--shapes",
        nargs="+",
        type=parse_shape,
        default=[parse_shape(shape) for shape in DEFAULT_SHAPES],
        help="BxHxWxC shapes to time (default: %(default)s)",
    )
    parser.add_argument(
        "--repeats", type=int, default=10, help="timed calls (median kept)"
    )
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    backend = keras.backend.backend()
    torch.set_num_threads(os.cpu_count())
    logging.info(
        "backend=%s keras=%s torch=%s cpu=%s cores=%d",
        backend,
        keras.__version__,
        torch.__version__,
        cpu_model(),
        os.cpu_count(),
    )
    variants = {
        "tensorflow": [("graph", False), ("xla", True)],
        "jax": [("jit", True)],
        "torch": [("eager", False)],
    }[backend]
    reference_forward, reference_backward = torch_steps()
    rng = np.random.default_rng(0)
    header = (
        f"{'shape (B,H,W,C)':<18} {'variant':<7} {'pass':<9} "
        f"{'project img/s':>14} {'torch img/s':>12} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for batch, height, width, channels in arguments.shapes:
        images = rng.uniform(size=(batch, height, width, channels))
        images = images.astype("float32")
        theta = np.tile([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], (batch, 1))
        theta = (theta + rng.normal(scale=0.2, size=theta.shape)).astype(
            "float32"
        )
        upstream = rng.normal(size=images.shape).astype("float32")
        torch_images = torch.tensor(images).permute(0, 3, 1, 2).contiguous()
        torch_theta = torch.tensor(theta).reshape(-1, 2, 3)
        torch_upstream = torch.tensor(upstream).permute(0, 3, 1, 2).contiguous()
        keras_arguments = [
            ops.convert_to_tensor(value) for value in (images, theta, upstream)
        ]
        torch_arguments = {
            "forward": (torch_images, torch_theta),
            "fwd+bwd": (torch_images, torch_theta, torch_upstream),
        }
        for variant, jit_compile in variants:
            forward, backward = project_steps(backend, jit_compile)
            measured, reference = {}, {}
            for name, step, reference_step, size in (
                ("forward", forward, reference_forward, 2),
                ("fwd+bwd", backward, reference_backward, 3),
            ):
                measured[name], reference[name] = interleaved_seconds(
                    [
                        (step, keras_arguments[:size]),
                        (reference_step, torch_arguments[name]),
                    ],
                    arguments.repeats,
                )
            for name in ("forward", "fwd+bwd"):
                print(
                    f"{f'{batch}x{height}x{width}x{channels}':<18} "
                    f"{variant:<7} {name:<9} "
                    f"{batch / measured[name]:>14,.0f} "
                    f"{batch / reference[name]:>12,.0f} "
                    f"{reference[name] / measured[name]:>6.2f}"
                )


if __name__ == "__main__":
    main()
