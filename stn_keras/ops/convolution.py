"""A 2D convolution whose single-channel input gradient is fast on TensorFlow.

In an ST-CNN the trunk's first convolution reads the transformer's output,
so the training step needs its gradient with respect to the images: that is
how the gradient reaches theta. With one input channel TensorFlow's CPU
kernel for it (``Conv2DBackpropInput``) is 3-5x slower than the same sum
written as a depthwise convolution of the padded output gradient, one
filter per output channel, summed over the output channels
(docs/BENCHMARKS.md, issue 16). With several input channels the depthwise
form does more work than the kernel, so it is not used there.
"""

import keras
from keras import ops

from stn_keras.ops.tensorflow_speedups import speedups_apply
from stn_keras.validation import check_data_format

_DEPTHWISE_DTYPES = ("float32", "float64")


def conv2d(inputs, kernel, strides=1, padding="valid", dilation_rate=1, data_format=None):
    """``keras.ops.conv`` of images ``(B, H, W, C)`` with a faster input gradient.

    The same values as ``keras.ops.conv`` and the same gradients up to float
    rounding. On the TensorFlow backend, for single-channel, channels-last
    float inputs at stride and dilation 1, the gradient with respect to
    ``inputs`` is computed as a depthwise convolution (unless
    `stn_keras.ops.tensorflow_speedups` turned this off, as exports do);
    everywhere else this is ``keras.ops.conv``.

    Args:
        inputs: images ``(B, H, W, C)`` (or ``(B, C, H, W)`` for
            ``"channels_first"``).
        kernel: ``(kernel_height, kernel_width, C, filters)``.
        strides, padding, dilation_rate, data_format: as ``keras.ops.conv``.

    Returns:
        The convolved images.
    """
    settings = {
        "strides": strides,
        "padding": padding,
        "dilation_rate": dilation_rate,
        "data_format": data_format,
    }
    if not _depthwise_input_gradient_applies(inputs, kernel, **settings):
        return ops.conv(inputs, kernel, **settings)
    return _conv2d_with_depthwise_input_gradient(inputs, kernel, padding.lower())


def _all_ones(value):
    return all(entry == 1 for entry in (value if isinstance(value, (list, tuple)) else (value,)))


def _depthwise_input_gradient_applies(inputs, kernel, strides, padding, dilation_rate, data_format):
    return (
        speedups_apply()
        and len(inputs.shape) == 4
        and inputs.shape[-1] == 1
        and check_data_format(data_format) == "channels_last"
        and padding.lower() in ("valid", "same")
        and _all_ones(strides)
        and _all_ones(dilation_rate)
        and all(isinstance(size, int) for size in kernel.shape[:2])
        and keras.backend.standardize_dtype(inputs.dtype) in _DEPTHWISE_DTYPES
    )


def _input_gradient(upstream, kernel, padding):
    """The gradient of a stride-1 convolution of one-channel images.

    It is the correlation of the output gradient, padded to the full size,
    with the kernel flipped in both axes, summed over the filters: one
    depthwise convolution with a filter per output channel.
    """
    kernel_height, kernel_width = kernel.shape[:2]
    if padding == "valid":
        pads = [(kernel_height - 1, kernel_height - 1), (kernel_width - 1, kernel_width - 1)]
    else:
        # "same" pads the forward input (size - 1) // 2 before, the rest after.
        pads = [
            (size - 1 - (size - 1) // 2, (size - 1) // 2)
            for size in (kernel_height, kernel_width)
        ]
    padded = ops.pad(upstream, [(0, 0), *pads, (0, 0)])
    flipped = ops.flip(ops.flip(kernel, axis=0), axis=1)
    depthwise_kernel = ops.transpose(flipped, (0, 1, 3, 2))
    return ops.sum(ops.depthwise_conv(padded, depthwise_kernel), axis=-1, keepdims=True)


def _conv2d_with_depthwise_input_gradient(inputs, kernel, padding):
    import tensorflow as tf

    @tf.custom_gradient
    def convolve(inputs, kernel):
        def gradient(upstream):
            kernel_gradient = tf.raw_ops.Conv2DBackpropFilter(
                input=inputs,
                filter_sizes=tf.shape(kernel),
                out_backprop=upstream,
                strides=[1, 1, 1, 1],
                padding=padding.upper(),
            )
            return _input_gradient(upstream, kernel, padding), kernel_gradient

        return ops.conv(inputs, kernel, padding=padding), gradient

    # Variables (a layer's kernel) are read here, so that the gradient
    # function sees plain tensors and the tape carries it to the variables.
    return convolve(tf.convert_to_tensor(inputs), tf.convert_to_tensor(kernel))
