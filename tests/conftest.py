"""Shared test configuration: backend markers, real-data gating, gradients.

The suite runs once per Keras backend (``KERAS_BACKEND``). Tests marked
``tensorflow_only`` skip on JAX and PyTorch; tests marked ``real_data`` skip
unless ``STN_DATA_DIR`` points at the real data sets.
"""

import os

import keras
import numpy as np
import pytest

BACKEND = keras.backend.backend()


def pytest_collection_modifyitems(config, items):
    data_dir = os.environ.get("STN_DATA_DIR")
    for item in items:
        if "tensorflow_only" in item.keywords and BACKEND != "tensorflow":
            item.add_marker(
                pytest.mark.skip(reason=f"needs TensorFlow; backend is {BACKEND}")
            )
        if "real_data" in item.keywords and not data_dir:
            item.add_marker(
                pytest.mark.skip(reason="STN_DATA_DIR is not set")
            )


@pytest.fixture
def data_dir():
    """The real data directory (only for tests marked ``real_data``)."""
    return os.environ["STN_DATA_DIR"]


def value_and_gradients(function, *arguments):
    """Evaluates ``function(*arguments)`` (a scalar) and its gradients.

    Runs on the active Keras backend's own autodiff, so the library's
    gradients are tested on TensorFlow, JAX and PyTorch alike. Returns numpy
    ``(value, [gradient for each argument])``; an argument the value does
    not depend on gets a zero gradient, on every backend.
    """
    if BACKEND == "tensorflow":
        import tensorflow as tf

        variables = [tf.Variable(argument) for argument in arguments]
        with tf.GradientTape() as tape:
            value = function(*variables)
        gradients = tape.gradient(
            value,
            variables,
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
        return value.numpy(), [gradient.numpy() for gradient in gradients]
    if BACKEND == "jax":
        import jax

        value, gradients = jax.value_and_grad(
            function, argnums=tuple(range(len(arguments)))
        )(*arguments)
        return np.asarray(value), [np.asarray(g) for g in gradients]
    if BACKEND == "torch":
        import torch

        tensors = [
            torch.tensor(argument, requires_grad=True) for argument in arguments
        ]
        value = function(*tensors)
        value.backward()
        return value.detach().cpu().numpy(), [
            np.zeros(tensor.shape, "float32")
            if tensor.grad is None
            else tensor.grad.cpu().numpy()
            for tensor in tensors
        ]
    raise NotImplementedError(f"No gradient helper for backend {BACKEND!r}")
