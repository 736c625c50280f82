"""`run_layer_test`: the contract every layer of the library keeps, in one call.

After keras-hub's ``TestCase.run_layer_test``: for a layer class, its
constructor arguments and an input, it checks the config round trip, a
``.keras`` round trip of a model holding the layer, symbolic against eager
output shapes and dtypes, the weight counts, a training step, and the
mixed-precision policies. Each layer's own tests then check only what is
particular to it (values against ``stn_keras.ops`` or by hand).
"""

import os
import tempfile

import keras
import numpy as np

from conftest import BACKEND
from conftest import numpy

# Compute dtype of each mixed policy; variables stay float32 under both.
MIXED_POLICIES = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


def _as_list(structure):
    return list(structure) if isinstance(structure, (list, tuple)) else [structure]


def _shape(tensor):
    return tuple(tensor.shape)


def _dtype(tensor):
    return keras.backend.standardize_dtype(tensor.dtype)


def _as_list_of_shapes(shape_or_shapes):
    """``compute_output_shape``'s answer as a list of shapes."""
    if isinstance(shape_or_shapes, list) or (
        isinstance(shape_or_shapes, tuple) and shape_or_shapes and isinstance(shape_or_shapes[0], tuple)
    ):
        return list(shape_or_shapes)
    return [shape_or_shapes]


def _symbolic_inputs(input_data):
    inputs = [
        keras.Input(batch_shape=array.shape, dtype=str(array.dtype))
        for array in _as_list(input_data)
    ]
    return inputs if isinstance(input_data, (list, tuple)) else inputs[0]


def _check_mixed_precision(layer_class, init_kwargs, input_data, float32_outputs):
    for policy, compute_dtype in MIXED_POLICIES.items():
        layer = layer_class(**init_kwargs, dtype=policy)
        outputs = _as_list(layer(input_data))
        expected = [
            "float32" if index in float32_outputs else compute_dtype
            for index in range(len(outputs))
        ]
        assert [_dtype(output) for output in outputs] == expected, policy
        assert all(_dtype(weight) == "float32" for weight in layer.weights), policy


def _check_training_step(model, input_data, outputs):
    """Two steps of Adam on a squared error move every trainable weight."""
    before = [numpy(weight) for weight in model.trainable_weights]
    targets = [np.ones(output.shape, "float32") for output in outputs]
    # Two steps: tracing a graph (TensorFlow) costs more than running them
    # eagerly; JAX runs op by op without jit, slower still.
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", run_eagerly=BACKEND != "jax")
    batch_size = max(len(next(iter(_as_list(input_data)))) // 2, 1)
    model.fit(input_data, targets, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
    for weight, value in zip(model.trainable_weights, before):
        after = numpy(weight)
        assert np.all(np.isfinite(after)), weight.path
        assert not np.array_equal(after, value), f"{weight.path} did not change"


def run_layer_test(
    layer_class,
    init_kwargs,
    input_data,
    expected_output_shape,
    expected_num_trainable_weights=0,
    expected_num_non_trainable_weights=0,
    expected_output_dtype="float32",
    float32_outputs=(),
    run_training_check=True,
):
    """Checks the contract of ``layer_class(**init_kwargs)`` on ``input_data``.

    Args:
        layer_class: the layer class.
        init_kwargs: its constructor arguments.
        input_data: a numpy array, or a list of them for several inputs.
        expected_output_shape: the output's shape, or a list of shapes for
            several outputs (eager, symbolic and ``compute_output_shape``).
        expected_num_trainable_weights: trainable weights once built.
        expected_num_non_trainable_weights: non-trainable weights once built.
        expected_output_dtype: the dtype of every output under float32.
        float32_outputs: indices of the outputs that stay float32 under the
            mixed policies (grids, theta); the others take the compute dtype.
        run_training_check: fit two steps and check that every trainable
            weight moves (where the layer has trainable weights).
    """
    expected_shapes = [
        tuple(shape)
        for shape in (
            expected_output_shape
            if isinstance(expected_output_shape, list)
            else [expected_output_shape]
        )
    ]

    layer = layer_class(**init_kwargs)
    config = layer.get_config()
    assert set(init_kwargs) <= set(config), "get_config must hold every argument"
    clone = layer_class.from_config(config)
    assert clone.get_config() == config

    outputs = _as_list(layer(input_data))
    # With the same weights, a clone computes the same: nothing that
    # changes the output was left out of the config.
    clone(input_data)
    clone.set_weights(layer.get_weights())
    for output, cloned in zip(outputs, _as_list(clone(input_data))):
        np.testing.assert_array_equal(numpy(cloned), numpy(output))
    assert [_shape(output) for output in outputs] == expected_shapes
    assert [_dtype(output) for output in outputs] == [expected_output_dtype] * len(outputs)
    assert len(layer.trainable_weights) == expected_num_trainable_weights
    assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights
    input_shapes = [array.shape for array in _as_list(input_data)]
    computed = layer.compute_output_shape(
        input_shapes if isinstance(input_data, (list, tuple)) else input_data.shape
    )
    assert [tuple(shape) for shape in _as_list_of_shapes(computed)] == expected_shapes

    symbolic_inputs = _symbolic_inputs(input_data)
    symbolic_outputs = layer_class.from_config(config)(symbolic_inputs)
    assert [_shape(output) for output in _as_list(symbolic_outputs)] == expected_shapes
    assert [_dtype(output) for output in _as_list(symbolic_outputs)] == [
        _dtype(output) for output in outputs
    ]

    model = keras.Model(symbolic_inputs, symbolic_outputs)
    expected = [numpy(output) for output in _as_list(model(input_data))]
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.keras")
        model.save(path)
        reloaded = keras.saving.load_model(path)
    for before, after in zip(expected, _as_list(reloaded(input_data))):
        np.testing.assert_array_equal(numpy(after), before)

    if run_training_check and model.trainable_weights:
        _check_training_step(model, input_data, expected)
    _check_mixed_precision(layer_class, init_kwargs, input_data, float32_outputs)


def trainable_localization_net(convolution_class):
    """A small localisation net (``keras.layers.Conv2D`` or ``Conv3D``) for
    the training check: tanh, not relu, so no unit dies and every weight
    gets a gradient."""
    return keras.Sequential(
        [
            convolution_class(4, 3, activation="tanh"),
            keras.layers.Flatten(),
            keras.layers.Dense(8, activation="tanh"),
        ]
    )
