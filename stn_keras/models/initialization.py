"""Initial weights other than Keras' defaults, for reproducing other code.

Keras starts kernels Glorot-uniform and biases at zero. PyTorch's and Torch7's
``nn.Linear`` / ``nn.Conv2d`` (the code the paper and its re-implementations
ran) start both the kernel and the bias uniform in ``+-1/sqrt(fan_in)``:
2.3x wider than Glorot on the ST-CNN's 9x9 first layer and 2.4x narrower on
its 800 -> 50 dense layer. ``"fan_in_uniform"`` reproduces that; it is one of
the candidate causes of the gap to the paper's RTS figures.
"""

import math

import keras

from stn_keras.models.introspection import spatial_transformer_layers
from stn_keras.validation import check_choice

INITIALIZATIONS = ("keras", "fan_in_uniform")


def check_initialization(initialization):
    return check_choice("initialization", initialization, INITIALIZATIONS, "initialization")


def _kernel_layers(model):
    """Every layer of ``model`` that owns a ``kernel``, nested layers included."""
    return [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if getattr(layer, "kernel", None) is not None
    ]


def initialize_fan_in_uniform(model):
    """Redraws every kernel and bias of ``model`` uniform in ``+-1/sqrt(fan_in)``.

    ``fan_in`` is the kernel's size without its last (output) axis:
    ``kh * kw * in_channels`` for a convolution, ``in_units`` for a dense
    layer. The spatial transformers' regression heads keep their zero kernel
    and identity bias, so every transformer still starts at the identity.
    Draws from Keras' global seed (``keras.utils.set_random_seed``).

    Args:
        model: a built Keras model.

    Returns:
        ``model``, its weights replaced in place.
    """
    identity_heads = {id(layer.regression) for layer in spatial_transformer_layers(model)}
    # One generator for every draw: an initializer object would repeat its
    # values on each call, making every bias a copy of its kernel's start.
    seed = keras.random.SeedGenerator()
    for layer in _kernel_layers(model):
        if id(layer) in identity_heads:
            continue
        bound = 1 / math.sqrt(math.prod(layer.kernel.shape[:-1]))
        variables = [layer.kernel, getattr(layer, "bias", None)]
        for variable in (variable for variable in variables if variable is not None):
            variable.assign(
                keras.random.uniform(
                    variable.shape, -bound, bound, dtype=variable.dtype, seed=seed
                )
            )
    return model
