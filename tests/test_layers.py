"""The Keras layers: their contract (`run_layer_test`), values, training.

Each layer passes `layer_test_case.run_layer_test` (config and ``.keras``
round trips, symbolic against eager shapes and dtypes, weight counts, a
training step, mixed precision); the tests below check what is particular
to each layer.
"""

import contextlib
import os

import keras
import numpy as np
import pytest
from keras import ops

from conftest import BACKEND
from conftest import numpy
from conftest import random_images
from conftest import value_and_gradients
from layer_test_case import run_layer_test
from layer_test_case import trainable_localization_net
from stn_keras import layers
from stn_keras import ops as stn_ops

GENERATORS = {
    "affine": (layers.AffineGridGenerator, {}),
    "attention": (layers.AttentionGridGenerator, {}),
    "similarity": (layers.SimilarityGridGenerator, {}),
    "projective": (layers.ProjectiveGridGenerator, {}),
    "tps": (layers.TPSGridGenerator, {"control_shape": (3, 4)}),
}


def localization_net(name="localization"):
    return keras.Sequential(
        [
            keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(8, activation="relu", name="dense"),
        ],
        name=name,
    )


def every_layer_model():
    """A functional model holding each layer of the library once."""
    images = keras.Input((20, 24, 2), name="images")
    transformed, theta = layers.SpatialTransformer(
        localization_net(),
        output_size=(16, 18),
        transform="affine",
        localization_downsample=2,
        return_theta=True,
        name="spatial_transformer",
    )(images)
    features = layers.CoordConv(
        3, 3, with_r=True, padding="same", name="coord_conv"
    )(transformed)
    flat = keras.layers.Flatten(name="flatten")(features)
    outputs = [features]
    for transform, (generator, options) in GENERATORS.items():
        size = generator(output_size=(5, 6), **options).num_parameters
        parameters = keras.layers.Dense(
            size, activation="tanh", name=f"{transform}_parameters"
        )(flat)
        grid = generator(
            output_size=(5, 6), name=f"{transform}_grid", **options
        )(parameters)
        outputs.append(
            layers.BilinearInterpolation(
                padding_mode="border", name=f"{transform}_sampler"
            )([features, grid])
        )
    return keras.Model(images, [*outputs, theta])


def theta_near_identity(generator_class, options, seed=1):
    """``(2, num_parameters)`` parameters near the identity of a generator."""
    generator = generator_class(output_size=(7, 5), **options)
    noise = np.random.default_rng(seed).normal(scale=0.3, size=(2, generator.num_parameters))
    return (noise + generator.identity_parameters()).astype("float32")


LAYER_CASES = [
    *(
        pytest.param(
            generator_class,
            {"output_size": (7, 5), "align_corners": True, **options},
            theta_near_identity(generator_class, options),
            (2, 7, 5, 2),
            {"float32_outputs": (0,)},
            id=transform,
        )
        for transform, (generator_class, options) in GENERATORS.items()
    ),
    pytest.param(
        layers.BilinearInterpolation,
        {"padding_mode": "reflection", "align_corners": True},
        [random_images((2, 6, 5, 3)), random_images((2, 4, 7, 2), seed=1) * 2.6 - 1.3],
        (2, 4, 7, 3),
        {},
        id="bilinear_interpolation",
    ),
    pytest.param(
        layers.CoordConv,
        {"filters": 6, "kernel_size": (3, 5), "with_r": True, "strides": 2,
         "padding": "same", "activation": "relu"},
        random_images((2, 8, 10, 1)),
        (2, 4, 5, 6),
        {"expected_num_trainable_weights": 2},
        id="coord_conv",
    ),
    pytest.param(
        layers.PerImageStandardization,
        {"minimum_stddev": 0.01},
        random_images((2, 5, 4, 3)),
        (2, 5, 4, 3),
        {},
        id="per_image_standardization",
    ),
    pytest.param(
        layers.DepthwiseGradientConv2D,
        {"filters": 4, "kernel_size": 3, "activation": "relu"},
        random_images((2, 7, 6, 1)),
        (2, 5, 4, 4),
        {"expected_num_trainable_weights": 2},
        id="depthwise_gradient_conv2d",
    ),
    pytest.param(
        layers.SpatialTransformer,
        {"localization_net": trainable_localization_net(keras.layers.Conv2D), "output_size": (6, 7),
         "transform": "projective", "return_theta": True, "localization_downsample": 2},
        random_images((2, 16, 12, 1)),
        [(2, 6, 7, 1), (2, 8)],
        # conv, dense and regression: a kernel and a bias each.
        {"expected_num_trainable_weights": 6, "float32_outputs": (1,)},
        id="spatial_transformer",
    ),
]


@pytest.mark.parametrize("layer_class,init_kwargs,input_data,output_shape,expected", LAYER_CASES)
def test_layer_contract(layer_class, init_kwargs, input_data, output_shape, expected):
    run_layer_test(layer_class, init_kwargs, input_data, output_shape, **expected)


@pytest.mark.tensorflow_only
def test_saved_model_export_reloads_for_two_batch_sizes(tmp_path):
    import tensorflow as tf

    model = every_layer_model()
    export_dir = os.fspath(tmp_path / "exported")
    model.export(export_dir, verbose=False)
    restored = tf.saved_model.load(export_dir)
    wrapped = keras.layers.TFSMLayer(export_dir, call_endpoint="serve")
    for batch in (1, 5):
        images = random_images((batch, 20, 24, 2), seed=batch)
        expected = model.predict(images, verbose=0)
        for outputs in (restored.serve(images), wrapped(images)):
            outputs = list(outputs.values()) if isinstance(outputs, dict) else outputs
            for before, after in zip(expected, outputs):
                np.testing.assert_allclose(np.asarray(after), before, atol=1e-5)


@pytest.mark.parametrize("transform", sorted(GENERATORS))
def test_generator_matches_the_function(transform):
    generator_class, options = GENERATORS[transform]
    generator = generator_class(output_size=(7, 5), align_corners=True, **options)
    theta = theta_near_identity(generator_class, options)
    expected = stn_ops.make_grid(
        transform,
        theta,
        (7, 5),
        align_corners=True,
        control_shape=options.get("control_shape", stn_ops.DEFAULT_TPS_CONTROL_SHAPE),
    )
    np.testing.assert_array_equal(numpy(generator(theta)), numpy(expected))


def test_affine_generator_accepts_matrix_form():
    theta = np.array([[[1.0, 0.2, 0.1], [0.0, 0.9, -0.1]]], "float32")
    generator = layers.AffineGridGenerator(output_size=(3, 4))
    np.testing.assert_array_equal(
        numpy(generator(theta)), numpy(generator(theta.reshape(1, 6)))
    )


def float64_enabled():
    """JAX holds float64 only with x64 on; the other backends always do."""
    if BACKEND == "jax":
        import jax

        return jax.enable_x64(True)
    return contextlib.nullcontext()


@pytest.mark.parametrize("transform", sorted(GENERATORS))
def test_generator_keeps_float64_theta_in_float64(transform):
    generator_class, options = GENERATORS[transform]
    generator = generator_class(output_size=(3, 4), **options)
    with float64_enabled():
        theta = ops.convert_to_tensor(
            generator.identity_parameters()[None].astype("float64")
        )
        grid = generator(theta)
        spec = generator.compute_output_spec(
            keras.KerasTensor((1, generator.num_parameters), "float64")
        )
    assert keras.backend.standardize_dtype(grid.dtype) == "float64"
    assert spec.dtype == "float64"
    # The identity grid is the pixel-centre lattice to float64 rounding (a
    # float32 grid would hold -2/3 as -0.66666669, 2e-8 off).
    x = (2.0 * np.arange(4) + 1.0) / 4.0 - 1.0
    y = np.array([-2.0 / 3.0, 0.0, 2.0 / 3.0])
    expected = np.stack(np.broadcast_arrays(x[None, :], y[:, None]), axis=-1)
    np.testing.assert_allclose(numpy(grid)[0], expected, rtol=0, atol=1e-15)


def test_bilinear_interpolation_matches_function_both_layouts():
    rng = np.random.default_rng(2)
    images = rng.normal(size=(2, 6, 5, 3)).astype("float32")
    grid = rng.uniform(-1.3, 1.3, size=(2, 4, 7, 2)).astype("float32")
    expected = numpy(stn_ops.bilinear_sample(images, grid, "reflection", True))
    last = layers.BilinearInterpolation(
        padding_mode="reflection", align_corners=True
    )
    np.testing.assert_array_equal(numpy(last([images, grid])), expected)
    first = layers.BilinearInterpolation.from_config(
        {**last.get_config(), "data_format": "channels_first", "name": "first"}
    )
    output = first([np.transpose(images, (0, 3, 1, 2)), grid])
    np.testing.assert_array_equal(np.transpose(numpy(output), (0, 2, 3, 1)), expected)
    assert first.compute_output_shape([(2, 3, 6, 5), (2, 4, 7, 2)]) == (2, 3, 4, 7)


def test_coordinate_channels_exact_values_on_non_square_input():
    channels = numpy(layers.coord_conv.coordinate_channels(2, 4, with_r=True))
    x = np.array([-0.75, -0.25, 0.25, 0.75])
    y = np.array([-0.5, 0.5])
    np.testing.assert_allclose(channels[..., 0], np.tile(x, (2, 1)), atol=1e-7)
    np.testing.assert_allclose(
        channels[..., 1], np.tile(y[:, None], (1, 4)), atol=1e-7
    )
    np.testing.assert_allclose(
        channels[..., 2], np.sqrt(x[None] ** 2 + y[:, None] ** 2), atol=1e-7
    )
    aligned = numpy(layers.coord_conv.coordinate_channels(3, 5, align_corners=True))
    np.testing.assert_allclose(aligned[0, :, 0], np.linspace(-1, 1, 5), atol=1e-7)
    np.testing.assert_allclose(aligned[:, 0, 1], [-1.0, 0.0, 1.0], atol=1e-7)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_coord_conv_feeds_coordinates_to_its_convolution(data_format):
    """A 1x1 kernel that copies channel k shows the channel the conv sees."""
    layer = layers.CoordConv(
        4, 1, with_r=True, use_bias=False, data_format=data_format
    )
    shape = (2, 3, 5, 1) if data_format == "channels_last" else (2, 1, 3, 5)
    images = random_images(shape)
    layer.build(shape)
    layer.convolution.kernel.assign(np.eye(4, dtype="float32")[None, None])
    output = numpy(layer(images))
    if data_format == "channels_first":
        output = np.transpose(output, (0, 2, 3, 1))
        images = np.transpose(images, (0, 2, 3, 1))
    np.testing.assert_allclose(output[..., 0], images[..., 0], atol=1e-6)
    expected = numpy(layers.coord_conv.coordinate_channels(3, 5, with_r=True))
    np.testing.assert_allclose(output[0, ..., 1:], expected, atol=1e-6)
    np.testing.assert_allclose(output[1, ..., 1:], expected, atol=1e-6)
    assert layer.compute_output_shape(shape) == (
        (2, 3, 5, 4) if data_format == "channels_last" else (2, 4, 3, 5)
    )


def test_per_image_standardization_matches_numpy_and_zeroes_a_flat_image():
    # 32 values a picture, so a flat picture's mean is exact on every backend.
    images = random_images((3, 4, 4, 2))
    images[1] = images[1] * 0.05 + 0.9  # a washed-out picture
    images[2] = 0.5  # flat: below the floor on the divisor
    exact = images.astype("float64")
    expected = exact - exact.mean(axis=(1, 2, 3), keepdims=True)
    expected /= np.maximum(expected.std(axis=(1, 2, 3), keepdims=True), 1 / 255)
    standardized = numpy(layers.PerImageStandardization()(images))
    # float32 rounding of the washed-out picture's mean (0.92) is multiplied
    # by 1 / its deviation (about 70): up to about 1e-5, as reductions go.
    np.testing.assert_allclose(standardized, expected, atol=5e-5)
    np.testing.assert_allclose(standardized[:2].std(axis=(1, 2, 3)), 1, rtol=1e-5)
    assert not standardized[2].any()
    # Each image is standardised on its own: the others do not matter.
    np.testing.assert_allclose(
        numpy(layers.PerImageStandardization()(images[:1])), standardized[:1], atol=1e-6
    )


@pytest.mark.parametrize("transform", sorted(GENERATORS))
def test_spatial_transformer_starts_as_identity(transform):
    transformer = layers.SpatialTransformer(
        localization_net(), transform=transform, control_shape=(3, 3)
    )
    images = random_images((2, 12, 10, 3))
    np.testing.assert_allclose(
        numpy(transformer(images)), images, atol=3e-6
    )


def test_spatial_transformer_theta_and_output_size():
    transformer = layers.SpatialTransformer(
        localization_net(),
        output_size=(6, 7),
        transform="projective",
        return_theta=True,
        localization_downsample=2,
    )
    images = random_images((3, 16, 12, 1))
    output, theta = transformer(images)
    assert tuple(output.shape) == (3, 6, 7, 1)
    np.testing.assert_allclose(
        numpy(theta), np.tile(stn_ops.identity_parameters("projective"), (3, 1))
    )
    # The localisation net saw the 2x-downsampled 8x6 input.
    assert transformer.localization_net.layers[0].input.shape[1:3] == (8, 6)


def test_localize_and_sample_are_the_two_halves_of_call():
    # Linear features: no ReLU can zero them all and leave theta the identity.
    linear_net = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(8)])
    transformer = layers.SpatialTransformer(
        linear_net, output_size=(16, 18), localization_downsample=2, return_theta=True
    )
    images = random_images((3, 20, 24, 2))
    transformer.localize(images)  # builds the layer
    kernel = transformer.regression.kernel
    kernel.assign(np.random.default_rng(3).normal(0, 0.05, kernel.shape))
    theta = numpy(transformer.localize(images))
    output, expected_theta = transformer(images)
    np.testing.assert_array_equal(theta, numpy(expected_theta))
    # Theta depends on the image: the regression is no longer the identity.
    assert np.abs(theta - theta[:1]).max() > 1e-4
    np.testing.assert_array_equal(
        numpy(transformer.sample(images, theta)), numpy(output)
    )


def test_sample_with_a_chosen_theta_flips_the_image():
    transformer = layers.SpatialTransformer(localization_net())
    images = random_images((2, 12, 10, 3))
    # x -> -x maps each pixel centre onto its mirror image.
    flip = np.tile(np.array([[-1, 0, 0, 0, 1, 0]], "float32"), (2, 1))
    flipped = transformer.sample(images, flip)
    np.testing.assert_allclose(numpy(flipped), images[:, :, ::-1], atol=1e-6)


def test_spatial_transformer_channels_first_is_channels_last_transposed():
    """Same weights, both layouts: the same theta, so the same pixels."""
    images = random_images((2, 10, 12, 3))
    outputs = {}
    for data_format in ("channels_last", "channels_first"):
        keras.utils.set_random_seed(0)
        transformer = layers.SpatialTransformer(
            keras.Sequential(
                [keras.layers.GlobalAveragePooling2D(data_format=data_format), keras.layers.Dense(4)]
            ),
            output_size=(5, 6),
            data_format=data_format,
            return_theta=True,
        )
        layout = images if data_format == "channels_last" else np.transpose(images, (0, 3, 1, 2))
        transformer.build(layout.shape)
        # Off the identity, so a layout mix-up in sampling shows.
        transformer.regression.kernel.assign(
            np.random.default_rng(1).normal(scale=2.0, size=(4, 6))
        )
        outputs[data_format] = [numpy(output) for output in transformer(layout)]
    (last, last_theta), (first, first_theta) = outputs["channels_last"], outputs["channels_first"]
    np.testing.assert_allclose(first_theta, last_theta, atol=1e-6)
    assert np.abs(last_theta - stn_ops.identity_parameters("affine")).max() > 0.1
    assert first.shape == (2, 3, 5, 6)
    np.testing.assert_allclose(np.transpose(first, (0, 2, 3, 1)), last, atol=1e-5)


def highest_matmul_precision():
    """Full float32 matmuls: no TF32 (TensorFlow on NVIDIA GPUs), no
    reduced-precision passes (JAX's default on GPU and TPU). torch uses full
    precision unless asked otherwise."""
    if BACKEND == "jax":
        import jax

        return jax.default_matmul_precision("highest")
    if BACKEND == "tensorflow":
        import tensorflow as tf

        @contextlib.contextmanager
        def without_tensor_float_32():
            enabled = tf.config.experimental.tensor_float_32_execution_enabled()
            tf.config.experimental.enable_tensor_float_32_execution(False)
            try:
                yield
            finally:
                tf.config.experimental.enable_tensor_float_32_execution(enabled)

        return without_tensor_float_32()
    return contextlib.nullcontext()


def test_learning_rate_multiplier_scales_localization_gradients():
    # The dense layers' gradients are compared to 1e-4: reduced-precision
    # matmuls on a GPU would be off by more than that.
    with highest_matmul_precision():
        full, slow = (
            learning_rate_multiplier_gradients(multiplier) for multiplier in (1.0, 0.1)
        )
    assert len(full) == 4  # localisation dense and regression head
    for full_gradient, slow_gradient in zip(full, slow):
        assert np.abs(full_gradient).max() > 0
        np.testing.assert_allclose(
            slow_gradient, 0.1 * full_gradient, rtol=1e-4, atol=1e-7
        )


def learning_rate_multiplier_gradients(multiplier):
    images = ops.convert_to_tensor(random_images((2, 8, 8, 1)))

    keras.utils.set_random_seed(0)
    transformer = layers.SpatialTransformer(
        keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(4)]),
        localization_learning_rate_multiplier=multiplier,
    )
    transformer.build(images.shape)
    # Move off the identity so every weight gets a gradient.
    transformer.regression.kernel.assign(
        np.random.default_rng(1).normal(scale=0.1, size=(4, 6))
    )

    def objective(*trainable_values):
        output, _ = transformer.stateless_call(list(trainable_values), [], images)
        return ops.sum(output**2)

    values = [numpy(v) for v in transformer.trainable_variables]
    return value_and_gradients(objective, *values)[1]


def test_dynamic_batch_and_fit_with_and_without_jit():
    keras.utils.set_random_seed(0)
    images = keras.Input((12, 12, 1))
    transformed = layers.SpatialTransformer(
        localization_net(), output_size=(10, 10), transform="similarity"
    )(images)
    features = layers.CoordConv(2, 3, name="coord_conv")(transformed)
    outputs = keras.layers.Dense(3, activation="softmax")(
        keras.layers.Flatten()(features)
    )
    model = keras.Model(images, outputs)
    x = random_images((16, 12, 12, 1))
    y = np.arange(16) % 3
    # JAX without jit runs op by op (minutes); torch.compile is out of scope.
    jit_options = {"tensorflow": [False, True], "jax": [True], "torch": [False]}
    for jit_compile in jit_options[BACKEND]:
        model.compile(
            optimizer="adam",
            loss="sparse_categorical_crossentropy",
            jit_compile=jit_compile,
        )
        history = model.fit(x, y, batch_size=5, epochs=2, verbose=0)
        assert np.all(np.isfinite(history.history["loss"]))
    assert model.predict(x[:3], verbose=0).shape == (3, 3)
    assert model.predict(x[:7], verbose=0).shape == (7, 3)


def test_mixed_precision_outputs_are_close_to_float32(dtype_policy):
    images = random_images((2, 16, 16, 1))
    theta = np.array([[0.8, 0.1, 0.05, -0.1, 0.9, 0.02]] * 2, "float32")
    expected = numpy(
        stn_ops.bilinear_sample(images, stn_ops.affine_grid(theta, (16, 16)))
    )
    dtype_policy("mixed_float16")
    grid = layers.AffineGridGenerator(output_size=(16, 16))(theta)
    sampled = layers.BilinearInterpolation()([images, grid])
    transformed = layers.SpatialTransformer(localization_net())(images)
    np.testing.assert_allclose(numpy(sampled).astype("float32"), expected, atol=2e-3)
    np.testing.assert_allclose(
        numpy(transformed).astype("float32"), images, atol=2e-3
    )


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: layers.AffineGridGenerator(output_size=(3, -1)), "output_size"),
        (lambda: layers.AffineGridGenerator(output_size="28"), "output_size"),
        (
            lambda: layers.AffineGridGenerator(output_size=3, align_corners=1),
            "align_corners",
        ),
        (
            lambda: layers.TPSGridGenerator(output_size=3, control_shape=(4,)),
            "control_shape",
        ),
        (lambda: layers.BilinearInterpolation(padding_mode="edge"), "padding_mode"),
        (lambda: layers.BilinearInterpolation(data_format="NCHW"), "data_format"),
        (
            lambda: layers.BilinearInterpolation(align_corners="yes"),
            "align_corners",
        ),
        (lambda: layers.CoordConv(4, 3, with_r=None), "with_r"),
        (lambda: layers.CoordConv(4, 3, align_corners=0), "align_corners"),
        (lambda: layers.SpatialTransformer("conv"), "localization_net"),
        (
            lambda: layers.SpatialTransformer(localization_net(), transform="shear"),
            "transform='shear'",
        ),
        (
            lambda: layers.SpatialTransformer(localization_net(), output_size=0),
            "output_size",
        ),
        (
            lambda: layers.SpatialTransformer(
                localization_net(), localization_downsample=0
            ),
            "localization_downsample",
        ),
        (
            lambda: layers.SpatialTransformer(
                localization_net(), localization_downsample=1.5
            ),
            "localization_downsample",
        ),
        (
            lambda: layers.SpatialTransformer(
                localization_net(), localization_learning_rate_multiplier=-0.1
            ),
            "localization_learning_rate_multiplier",
        ),
        (
            lambda: layers.SpatialTransformer(
                localization_net(), return_theta="yes"
            ),
            "return_theta",
        ),
        (
            lambda: layers.SpatialTransformer(
                localization_net(), padding_mode="wrap"
            ),
            "padding_mode",
        ),
        (lambda: layers.PerImageStandardization(minimum_stddev=0), "minimum_stddev=0"),
        (lambda: layers.PerImageStandardization(minimum_stddev="1"), "minimum_stddev='1'"),
    ],
)
def test_bad_constructor_arguments_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    "call,message",
    [
        (
            lambda: layers.AffineGridGenerator(4)(keras.Input((5,))),
            r"\(batch, 6\)",
        ),
        (
            lambda: layers.TPSGridGenerator(4)(keras.Input((6,))),
            r"\(batch, 32\)",
        ),
        (
            lambda: layers.ProjectiveGridGenerator(4)(keras.Input((2, 4))),
            r"\(batch, 8\)",
        ),
        (
            lambda: layers.BilinearInterpolation()(
                [keras.Input((4, 4, 1)), keras.Input((3, 3, 3))]
            ),
            "grid.shape",
        ),
        (
            lambda: layers.BilinearInterpolation()(
                [keras.Input((4, 1)), keras.Input((3, 3, 2))]
            ),
            "rank 4",
        ),
        (
            lambda: layers.BilinearInterpolation()(keras.Input((4, 4, 1))),
            r"list \[images, grid\]",
        ),
        (
            lambda: layers.SpatialTransformer(localization_net())(
                keras.Input((None, None, 1))
            ),
            "known spatial sizes",
        ),
        (
            lambda: layers.CoordConv(2, 3)(keras.Input((4, 1))),
            "rank-4",
        ),
    ],
)
def test_bad_call_shapes_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call()
