"""`stn_keras.ops.convolution.conv2d` against ``keras.ops.conv``.

The values must be identical and the gradients equal up to float rounding
on every backend; on TensorFlow the single-channel input gradient must be
the depthwise form, and nowhere else.
"""

import numpy as np
import pytest
from keras import ops

from conftest import BACKEND
from conftest import value_and_gradients
from stn_keras.ops.convolution import conv2d
from stn_keras.ops.tensorflow_speedups import tensorflow_speedups

# (input channels, kernel size, padding, strides): the first four take the
# depthwise input gradient on TensorFlow, the last two fall back to ops.conv.
CASES = [
    (1, 9, "valid", 1),
    (1, 4, "valid", 1),
    (1, 3, "same", 1),
    (1, 4, "same", 1),
    (3, 3, "same", 1),
    (1, 3, "valid", 2),
]


def random_case(channels, kernel_size, filters=5, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(2, 11, 10, channels)).astype("float32")
    kernel = rng.normal(size=(kernel_size, kernel_size, channels, filters)).astype("float32")
    return images, kernel


@pytest.mark.parametrize("channels,kernel_size,padding,strides", CASES)
def test_values_and_gradients_match_keras_conv(channels, kernel_size, padding, strides):
    images, kernel = random_case(channels, kernel_size)
    # A fixed, uneven output weighting, so every output pixel's gradient differs.
    weights = ops.convert_to_tensor(
        np.random.default_rng(1).normal(
            size=tuple(ops.conv(images, kernel, strides=strides, padding=padding).shape)
        ).astype("float32")
    )

    def loss(convolution):
        return lambda images, kernel: ops.sum(
            convolution(images, kernel, strides=strides, padding=padding) * weights
        )

    value, gradients = value_and_gradients(loss(conv2d), images, kernel)
    expected_value, expected_gradients = value_and_gradients(loss(ops.conv), images, kernel)
    np.testing.assert_allclose(value, expected_value, rtol=1e-5)
    for gradient, expected in zip(gradients, expected_gradients):
        np.testing.assert_allclose(gradient, expected, rtol=1e-5, atol=1e-4)


def tensorflow_gradients(convolution, images, kernel, padding, order):
    """First or second-order gradients of a quadratic loss, in a ``tf.function``."""
    import tensorflow as tf

    @tf.function
    def gradients(images, kernel):
        with tf.GradientTape() as outer:
            outer.watch([images, kernel])
            with tf.GradientTape() as inner:
                inner.watch([images, kernel])
                outputs = convolution(images, kernel, padding=padding)
                loss = tf.reduce_sum(outputs * outputs)
            first = inner.gradient(loss, [images, kernel])
            curvature = sum(tf.reduce_sum(gradient * gradient) for gradient in first)
        return first if order == 1 else outer.gradient(curvature, [images, kernel])

    return [gradient.numpy() for gradient in gradients(tf.constant(images), tf.constant(kernel))]


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("kernel_size,padding", [(9, "valid"), (4, "same")])
def test_graph_gradients_of_both_orders_match_keras_conv(order, kernel_size, padding):
    images, kernel = random_case(1, kernel_size)
    got = tensorflow_gradients(conv2d, images, kernel, padding, order)
    expected = tensorflow_gradients(ops.conv, images, kernel, padding, order)
    for gradient, reference in zip(got, expected):
        # Float32 sums of different orders: equal to a few ulps of the largest entry.
        np.testing.assert_allclose(gradient, reference, rtol=0, atol=1e-5 * np.abs(reference).max())


def gradient_op_types(channels, strides=1, speedups=True):
    """The op types in the traced gradient of ``conv2d``'s output w.r.t. its input."""
    import tensorflow as tf

    images, kernel = random_case(channels, 3)

    def input_gradient(images):
        with tf.GradientTape() as tape:
            tape.watch(images)
            outputs = conv2d(images, tf.constant(kernel), strides=strides)
        return tape.gradient(outputs, images)

    with tensorflow_speedups(speedups):
        graph = tf.function(input_gradient).get_concrete_function(tf.constant(images)).graph
    return {op.type for op in graph.get_operations()}


@pytest.mark.tensorflow_only
def test_depthwise_input_gradient_only_where_it_applies():
    assert "DepthwiseConv2dNative" in gradient_op_types(1)
    assert "Conv2DBackpropInput" not in gradient_op_types(1)
    for plain in (gradient_op_types(1, speedups=False), gradient_op_types(3), gradient_op_types(1, strides=2)):
        assert "DepthwiseConv2dNative" not in plain
        assert "Conv2DBackpropInput" in plain


def test_other_backends_call_keras_conv_itself():
    if BACKEND == "tensorflow":
        pytest.skip("the depthwise input gradient is TensorFlow's")
    images, kernel = random_case(1, 3)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(conv2d(images, kernel)), ops.convert_to_numpy(ops.conv(images, kernel))
    )
