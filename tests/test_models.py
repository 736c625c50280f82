"""Models: registry, architectures, parameter counts, transformer outputs."""

import contextlib

import keras
import numpy as np
import pytest

from conftest import random_images
import stn_keras  # noqa: F401
from stn_keras.models import MODELS
from stn_keras.models import build_model
from stn_keras.models import has_spatial_transformer
from stn_keras.models import spatial_transformer_layers
from stn_keras.models import transformer_model
from tiny_data import shapes

# (name, input shape, classes, options): every model on a small input.
SMOKE_CASES = [
    ("fcn", (28, 28, 1), 3, {}),
    ("cnn", (28, 28, 1), 3, {}),
    ("st_fcn", (28, 28, 1), 3, {}),
    ("st_cnn", (28, 28, 1), 3, {}),
    ("st_cnn", (28, 28, 2), 3, {"num_transformers": 2}),
    ("compact_st_cnn", (32, 32, 3), 3, {}),
    ("compact_st_cnn", (32, 32, 3), 3,
     {"convolutions_per_block": 2, "batch_normalization": True, "standardize_images": True}),
]


def _fit_two_epochs(model, input_shape, num_classes):
    images, labels = shapes(16, input_shape[0], input_shape[2], seed=3)
    labels = labels % num_classes
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    history = model.fit(
        images.astype("float32") / 255.0, labels, batch_size=8, epochs=2, verbose=0
    )
    return history.history["loss"]


@pytest.mark.parametrize("name, input_shape, num_classes, options", SMOKE_CASES)
def test_two_epochs_lower_the_loss_on_a_tiny_fixed_problem(name, input_shape, num_classes, options):
    keras.utils.set_random_seed(0)
    model = build_model(name, input_shape, num_classes, **options)
    first, second = _fit_two_epochs(model, input_shape, num_classes)
    assert second < first, (first, second)
    probabilities = model.predict(np.zeros((2, *input_shape), "float32"), verbose=0)
    assert probabilities.shape == (2, num_classes)
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=1e-5)


@pytest.mark.tensorflow_only  # big models: one backend is enough for a step
@pytest.mark.parametrize("name", ["idsia", "st_idsia"])
def test_gtsrb_idsia_models_train_one_step(name):
    model = build_model(name, (32, 32, 3), 43)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    images = random_images((2, 32, 32, 3))
    labels = np.array([0, 42])
    # Each loss is computed before its step: the second one is after a step.
    before, after = (float(np.asarray(model.train_on_batch(images, labels))) for _ in range(2))
    assert after < before, (before, after)


@pytest.mark.parametrize("name", ["cnn", "st_cnn", "compact_cnn", "compact_st_cnn", "idsia", "st_idsia"])
def test_dropout_drops_in_training_only_and_adds_no_weights(name):
    plain = build_model(name, (32, 32, 3), 5)
    model = build_model(name, (32, 32, 3), 5, dropout=0.5)
    assert [layer.name for layer in model.layers if isinstance(layer, keras.layers.Dropout)] == ["dropout_1"]
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in plain.layers)
    assert model.count_params() == plain.count_params()
    images = random_images((4, 32, 32, 3), seed=0)
    inference = keras.ops.convert_to_numpy(model(images, training=False))
    np.testing.assert_allclose(inference, keras.ops.convert_to_numpy(model(images, training=False)))
    assert not np.allclose(inference, keras.ops.convert_to_numpy(model(images, training=True)))


@pytest.mark.parametrize("name", ["st_cnn", "cnn", "compact_st_cnn"])
def test_fan_in_uniform_initialisation_draws_torch_bounds_and_keeps_the_identity(name):
    input_shape = (32, 32, 3) if name == "compact_st_cnn" else (42, 42, 1)
    keras.utils.set_random_seed(0)
    model = build_model(name, input_shape, 10, initialization="fan_in_uniform")
    heads = {id(variable) for layer in spatial_transformer_layers(model) for variable in layer.regression.weights}
    kernels = [v for v in model.trainable_variables if v.path.endswith("kernel") and id(v) not in heads]
    for kernel in kernels:
        bound = 1 / np.sqrt(np.prod(kernel.shape[:-1]))  # e.g. 1/9 for conv_1's 9x9x1
        values = kernel.numpy()
        assert np.abs(values).max() <= bound, kernel.path
        # Uniform in +-bound: standard deviation bound / sqrt(3), not Glorot's.
        assert values.std() == pytest.approx(bound / np.sqrt(3), rel=0.25), kernel.path
        bias = next(v for v in model.trainable_variables if v.path == kernel.path[: -len("kernel")] + "bias")
        assert np.abs(bias.numpy()).max() <= bound and np.abs(bias.numpy()).max() > 0, bias.path
        # Drawn apart from the kernel, not a copy of its first values.
        assert not np.allclose(bias.numpy(), values.reshape(-1)[: bias.shape[0]]), bias.path
    for layer in spatial_transformer_layers(model):
        np.testing.assert_array_equal(layer.regression.kernel.numpy(), 0.0)
        np.testing.assert_array_equal(layer.regression.bias.numpy(), [1, 0, 0, 0, 1, 0])
    keras.utils.set_random_seed(0)
    again = build_model(name, input_shape, 10, initialization="fan_in_uniform")
    for first, second in zip(model.trainable_variables, again.trainable_variables):
        np.testing.assert_array_equal(first.numpy(), second.numpy())


def test_coordconv_kernels_count_the_coordinate_channels_in_their_fan_in():
    model = build_model("st_cnn", (28, 28, 1), 10, localization_convolution="coordconv", initialization="fan_in_uniform")
    kernel = next(v for v in model.trainable_variables if "conv_1/convolution/kernel" in v.path)
    assert kernel.shape == (5, 5, 3, 20)  # the image and the two coordinate channels
    assert np.abs(kernel.numpy()).max() <= 1 / np.sqrt(75)


def test_unknown_initialization_is_refused():
    with pytest.raises(ValueError, match=r"Unknown initialization. Expected one of \('keras', 'fan_in_uniform'\)"):
        build_model("st_cnn", (28, 28, 1), 10, initialization="he")


def test_dropout_rate_must_be_below_one():
    with pytest.raises(ValueError, match=r"`dropout` must be a finite number >= 0 and < 1. Received: dropout=1"):
        build_model("compact_st_cnn", (32, 32, 3), 5, dropout=1)


def test_parameter_counts_match_hand_computation():
    # CNN on 42x42 (RTS): conv 9x9x1x36, conv 7x7x36x36, dense 5*5*36 -> 50 -> 10.
    expected_cnn = (81 * 36 + 36) + (49 * 36 * 36 + 36) + (900 * 50 + 50) + 510
    assert build_model("cnn", (42, 42, 1), 10).count_params() == expected_cnn
    # ST-CNN: the same trunk with 32 filters plus the localisation net on the
    # 21x21 downsampled input: conv 5x5 20, pool -> 9x9, conv 5x5 20 -> 5x5,
    # dense 500 -> 20, regression 20 -> 6.
    trunk = (81 * 32 + 32) + (49 * 32 * 32 + 32) + (800 * 50 + 50) + 510
    localization = (25 * 20 + 20) + (25 * 20 * 20 + 20) + (500 * 20 + 20)
    regression = 20 * 6 + 6
    st_cnn = build_model("st_cnn", (42, 42, 1), 10)
    assert st_cnn.count_params() == trunk + localization + regression
    # Baseline and ST model stay within 5% of each other's capacity.
    assert abs(st_cnn.count_params() / expected_cnn - 1) < 0.05
    fcn = build_model("fcn", (28, 28, 1), 10).count_params()
    st_fcn = build_model("st_fcn", (28, 28, 1), 10).count_params()
    assert abs(st_fcn / fcn - 1) < 0.05


def test_compact_st_cnn_blocks_of_batch_normalised_convolutions_count_by_hand():
    options = {"filters": (8, 16, 32), "dense_units": 20, "localization": (4, 6, 10)}
    plain = build_model("compact_st_cnn", (32, 32, 3), 5, **options)
    deep = build_model(
        "compact_st_cnn", (32, 32, 3), 5, convolutions_per_block=2,
        batch_normalization=True, standardize_images=True, **options,
    )
    # Each block gains a second 3x3 convolution; with batch normalisation no
    # convolution has a bias and each has 2 scales and offsets (trainable)
    # and 2 moving statistics (not) per filter. The dense layers and the
    # transformer are unchanged.
    def block(inputs, filters):
        return 9 * inputs * filters + 9 * filters * filters + 2 * 4 * filters

    def plain_block(inputs, filters):
        return 9 * inputs * filters + filters

    extra = sum(
        block(inputs, filters) - plain_block(inputs, filters)
        for inputs, filters in ((3, 8), (8, 16), (16, 32))
    )
    assert deep.count_params() == plain.count_params() + extra
    assert len(deep.non_trainable_weights) == 2 * 6
    names = [layer.name for layer in deep.layers]
    assert names[:2] == ["images", "standardization"]
    assert "conv_2_2_batch_normalization" in names and "conv_1" not in names
    assert "conv_1" in [layer.name for layer in plain.layers]


def test_compact_cnn_is_compact_st_cnn_without_its_transformer():
    options = {
        "filters": (8, 16, 32), "dense_units": 20, "convolutions_per_block": 2,
        "batch_normalization": True, "standardize_images": True,
    }
    cnn = build_model("compact_cnn", (32, 32, 3), 5, **options)
    st_cnn = build_model("compact_st_cnn", (32, 32, 3), 5, localization=(4, 6, 10), **options)
    assert not has_spatial_transformer("compact_cnn")
    assert not spatial_transformer_layers(cnn)
    assert [layer.name for layer in cnn.layers] == [
        layer.name for layer in st_cnn.layers if layer.name != "transformer"
    ]
    # The localisation net on 32x32x3: 2x2 pool -> 16x16, 5x5 conv (same) 3 -> 4,
    # pool -> 8x8, 5x5 conv 4 -> 6, pool -> 4x4, dense 96 -> 10, regression 10 -> 6.
    localization = (75 * 4 + 4) + (100 * 6 + 6) + (96 * 10 + 10) + (10 * 6 + 6)
    assert st_cnn.count_params() == cnn.count_params() + localization


def test_standardize_images_makes_the_prediction_blind_to_contrast_and_brightness():
    keras.utils.set_random_seed(0)
    model = build_model("compact_st_cnn", (32, 32, 3), 4, standardize_images=True)
    images = random_images((3, 32, 32, 3))
    np.testing.assert_allclose(
        model.predict(images * 0.2 + 0.05, verbose=0), model.predict(images, verbose=0),
        atol=2e-6,
    )


def test_identity_initialised_transformer_passes_the_input_through():
    model = build_model("st_cnn", (28, 28, 1), 10)
    images = random_images((3, 28, 28, 1), seed=1)
    transformed, theta = transformer_model(model).predict(images, verbose=0)
    np.testing.assert_allclose(theta, np.tile([1, 0, 0, 0, 1, 0], (3, 1)), atol=1e-6)
    np.testing.assert_allclose(transformed, images, atol=1e-5)


def test_transformer_model_returns_each_transformer_in_order():
    # Narrow layers: the structure matters here, not the capacity.
    model = build_model(
        "st_idsia",
        (32, 32, 3),
        43,
        filters=(4, 6, 8),
        dense_units=8,
        input_localization=(4, 4, 4),
        feature_localization=(4, 4, 4),
    )
    sub_model = transformer_model(model)
    shapes_out = [tuple(output.shape) for output in sub_model.outputs]
    assert shapes_out == [(None, 32, 32, 3), (None, 6), (None, 5, 5, 6), (None, 6)]
    assert [layer.name for layer in spatial_transformer_layers(model)] == [
        "transformer_1",
        "transformer_2",
    ]
    assert transformer_model(build_model("cnn", (28, 28, 1), 10)) is None


@pytest.mark.parametrize(
    "transform, num_parameters",
    [("affine", 6), ("attention", 3), ("similarity", 4), ("projective", 8), ("tps", 32)],
)
def test_every_transform_builds(transform, num_parameters):
    model = build_model("st_cnn", (28, 28, 1), 10, transform=transform)
    _, theta = transformer_model(model).outputs
    assert theta.shape == (None, num_parameters)


def test_coordconv_and_leaky_relu_options_reach_the_localisation_net():
    model = build_model(
        "st_cnn",
        (28, 28, 1),
        10,
        localization_convolution="coordconv",
        localization_activation="leaky_relu",
    )
    net = spatial_transformer_layers(model)[0].localization_net
    kinds = {type(layer).__name__ for layer in net.layers}
    assert {"CoordConv", "LeakyReLU"} <= kinds
    assert "Conv2D" not in kinds and "ReLU" not in kinds


def test_options_under_their_old_names_build_the_same_model():
    # What a run's config.json of before the renames passes to build_model.
    old = {"loc_conv": "coordconv", "loc_activation": "leaky_relu", "grid_shape": [3, 3]}
    new = {
        "localization_convolution": "coordconv",
        "localization_activation": "leaky_relu",
        "control_shape": [3, 3],
    }
    built = []
    for options in (old, new):
        keras.backend.clear_session()  # the same automatic names
        keras.utils.set_random_seed(5)
        with pytest.warns(DeprecationWarning) if options is old else contextlib.nullcontext():
            built.append(build_model("st_cnn", (28, 28, 1), 10, transform="tps", **options))
    assert built[0].get_config() == built[1].get_config()
    for before, after in zip(built[0].get_weights(), built[1].get_weights()):
        np.testing.assert_array_equal(before, after)
    assert spatial_transformer_layers(built[0])[0].control_shape == (3, 3)


def test_old_and_new_option_names_together_are_an_error():
    with pytest.raises(ValueError, match="`loc_conv` is the old name of `localization_convolution`"):
        build_model(
            "st_cnn", (28, 28, 1), 10, localization_convolution="conv", loc_conv="coordconv"
        )


@pytest.mark.parametrize(
    "name, input_shape",
    [("st_fcn", (28, 28, 1)), ("st_cnn", (28, 28, 1)), ("compact_st_cnn", (32, 32, 3))],
)
def test_localization_learning_rate_multiplier_scales_the_localisation_step(
    name, input_shape
):
    # A zero multiplier freezes the localisation net under SGD while the
    # classifier still learns: the option reaches the transformer.
    model = build_model(name, input_shape, 3, localization_learning_rate_multiplier=0.0)
    transformer = spatial_transformer_layers(model)[0]
    assert transformer.localization_learning_rate_multiplier == 0.0
    before_localization = [w.numpy().copy() for w in transformer.trainable_weights]
    before_logits = model.get_layer("logits").kernel.numpy().copy()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    images = random_images((4, *input_shape), seed=4)
    model.train_on_batch(images, np.array([0, 1, 2, 0]))
    for before, weight in zip(before_localization, transformer.trainable_weights):
        np.testing.assert_array_equal(weight.numpy(), before)
    assert np.abs(model.get_layer("logits").kernel.numpy() - before_logits).max() > 0


def test_layers_are_named_and_keras_file_round_trips(tmp_path):
    model = build_model("st_cnn", (28, 28, 2), 19, num_transformers=2)
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    assert {"images", "transformer_1", "transformer_2", "probabilities"} <= set(names)
    path = tmp_path / "model.keras"
    model.save(path)
    images = random_images((2, 28, 28, 2), seed=2)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        reloaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6
    )
    assert len(transformer_model(reloaded).outputs) == 4


def test_probabilities_stay_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_model("st_cnn", (28, 28, 1), 10)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert keras.backend.standardize_dtype(model.outputs[0].dtype) == "float32"
    transformer = spatial_transformer_layers(model)[0]
    assert transformer.localization_net.layers[0].compute_dtype == "bfloat16"


def test_registry_lists_transformer_models():
    assert set(MODELS) == {
        "fcn", "cnn", "st_fcn", "st_cnn", "idsia", "st_idsia", "compact_cnn", "compact_st_cnn",
    }
    assert not has_spatial_transformer("cnn")
    assert has_spatial_transformer("st_idsia")


@pytest.mark.parametrize(
    "arguments, message",
    [
        (("resnet", (28, 28, 1), 10), "Unknown model. Expected one of ('fcn', 'cnn'"),
        (("st_cnn", (28, 28), 10), "`input_shape` must be (height, width, channels)"),
        (("st_cnn", (28, 28, 1), 1), "`num_classes` must be an int >= 2"),
        (("st_cnn", (20, 20, 1), 10), "needs images of at least 28x28"),
    ],
)
def test_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=None) as error:
        build_model(*arguments)
    assert message in str(error.value)


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("st_cnn", {"transform": "spline"}, "Unknown transform. Expected one of ('affine'"),
        ("st_cnn", {"localization_convolution": "dense"}, "Unknown localization_convolution. Expected one of ('conv', 'coordconv')"),
        ("st_cnn", {"localization_activation": "tanh"}, "Expected one of ('relu', 'leaky_relu')"),
        ("cnn", {"transform": "tps"}, "Model 'cnn' has no spatial transformer, so transform"),
        ("st_fcn", {"localization_convolution": "coordconv"}, "fully connected localisation net"),
        ("st_cnn", {"filterz": 3}, "Unknown option(s) ['filterz'] for model 'st_cnn'"),
        ("st_cnn", {"num_transformers": 0}, "`num_transformers` must be an int >= 1"),
        ("compact_st_cnn", {"convolutions_per_block": 0}, "`convolutions_per_block` must be an int >= 1"),
        ("compact_st_cnn", {"batch_normalization": "yes"}, "`batch_normalization` must be a bool"),
        ("compact_st_cnn", {"standardize_images": 1}, "`standardize_images` must be a bool"),
        ("compact_cnn", {"transform": "affine"}, "Model 'compact_cnn' has no spatial transformer, so transform"),
        ("compact_cnn", {"convolutions_per_block": 0}, "`convolutions_per_block` must be an int >= 1"),
    ],
)
def test_options_that_do_not_fit_the_model(name, options, message):
    input_shape = (32, 32, 3) if name.startswith("compact") else (28, 28, 1)
    with pytest.raises(ValueError) as error:
        build_model(name, input_shape, 10, **options)
    assert message in str(error.value)
