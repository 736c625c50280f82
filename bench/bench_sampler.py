"""Benchmark: the project's sampler against torch's, in the same run.

Times ``affine_grid`` + ``grid_sample`` (forward, and forward + backward
with respect to images and theta) in each sampling mode, on images
(BxHxWxC) and volumes (BxDxHxWxC), on the active Keras backend against
``torch.nn.functional.affine_grid`` + ``grid_sample`` on the same CPU, and
prints images/second and the ratio project / torch (above 1: faster).

    KERAS_BACKEND=tensorflow python bench/bench_sampler.py
    KERAS_BACKEND=jax python bench/bench_sampler.py --shapes 256x42x42x1 --modes bilinear

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
from stn_keras.ops import grid_sample  # noqa: E402

DEFAULT_SHAPES = (
    "256x42x42x1",
    "256x60x60x1",
    "128x48x48x3",
    "32x224x224x3",
    "16x32x32x32x1",
)
MODES = ("bilinear", "nearest", "bicubic")


def parse_shape(text):
    try:
        shape = tuple(int(part) for part in text.split("x"))
    except ValueError:
        shape = ()
    if len(shape) not in (4, 5):
        raise argparse.ArgumentTypeError(
            "A shape is BxHxWxC (images) or BxDxHxWxC (volumes), e.g. "
            f"256x42x42x1. Received: {text!r}"
        )
    return shape


def identity_theta(batch, spatial_rank, rng):
    """Affine parameters near the identity, ``(batch, rank * (rank + 1))``."""
    identity = np.eye(spatial_rank, spatial_rank + 1).ravel()
    theta = identity + rng.normal(scale=0.2, size=(batch, identity.size))
    return theta.astype("float32")


def project_steps(backend, jit_compile, mode):
    """Compiled forward and forward+backward steps on the Keras backend."""

    def sample(images, theta):
        grid = affine_grid(theta, tuple(images.shape[1:-1]))
        return grid_sample(images, grid, mode, data_format="channels_last")

    if backend == "tensorflow":
        import tensorflow as tf

        def backward(images, theta, upstream):
            with tf.GradientTape() as tape:
                tape.watch([images, theta])
                output = sample(images, theta)
            # "nearest" passes no gradient to theta: zeros, not None.
            return tape.gradient(
                output,
                [images, theta],
                upstream,
                unconnected_gradients=tf.UnconnectedGradients.ZERO,
            )

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
        return torch_eager_steps(sample)
    raise ValueError(f"Unsupported backend {backend!r}")


def torch_steps(mode):
    """The reference: torch's affine_grid and grid_sample, eager."""

    def sample(images, theta):
        grid = F.affine_grid(theta, images.shape, align_corners=False)
        return F.grid_sample(images, grid, mode=mode, align_corners=False)

    return torch_eager_steps(sample)


def torch_eager_steps(sample):
    """Forward (no autograd) and forward+backward steps of a torch sampler."""

    def forward(images, theta):
        with torch.no_grad():
            return sample(images, theta)

    def backward(images, theta, upstream):
        images = images.detach().requires_grad_(True)
        theta = theta.detach().requires_grad_(True)
        output = sample(images, theta)
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
        help="BxHxWxC or BxDxHxWxC shapes to time (default: %(default)s)",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=MODES,
        default=list(MODES),
        help="sampling modes (bicubic is skipped on volumes)",
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
    rng = np.random.default_rng(0)
    header = (
        f"{'shape':<18} {'mode':<8} {'variant':<7} {'pass':<9} "
        f"{'project img/s':>14} {'torch img/s':>12} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for shape in arguments.shapes:
        batch, spatial_rank = shape[0], len(shape) - 2
        images = rng.uniform(size=shape).astype("float32")
        theta = identity_theta(batch, spatial_rank, rng)
        upstream = rng.normal(size=shape).astype("float32")
        channels_first = (0, len(shape) - 1, *range(1, len(shape) - 1))
        torch_images = torch.tensor(images).permute(*channels_first).contiguous()
        torch_theta = torch.tensor(theta).reshape(-1, spatial_rank, spatial_rank + 1)
        torch_upstream = torch.tensor(upstream).permute(*channels_first).contiguous()
        keras_arguments = [
            ops.convert_to_tensor(value) for value in (images, theta, upstream)
        ]
        torch_arguments = {
            "forward": (torch_images, torch_theta),
            "fwd+bwd": (torch_images, torch_theta, torch_upstream),
        }
        for mode in arguments.modes:
            if mode == "bicubic" and spatial_rank == 3:
                continue
            reference_forward, reference_backward = torch_steps(mode)
            for variant, jit_compile in variants:
                forward, backward = project_steps(backend, jit_compile, mode)
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
                        f"{'x'.join(map(str, shape)):<18} {mode:<8} "
                        f"{variant:<7} {name:<9} "
                        f"{batch / measured[name]:>14,.0f} "
                        f"{batch / reference[name]:>12,.0f} "
                        f"{reference[name] / measured[name]:>6.2f}"
                    )


if __name__ == "__main__":
    main()
