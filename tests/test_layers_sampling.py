"""GridSample, the sampling modes in the layers, and volumetric transformers."""

import keras
import numpy as np
import pytest
from keras import ops

from conftest import numpy
from conftest import random_images
from layer_test_case import run_layer_test
from layer_test_case import trainable_localization_net
from stn_keras import layers
from stn_keras import ops as stn_ops


def volume_localization_net():
    return keras.Sequential(
        [
            keras.layers.Conv3D(8, 3, activation="relu", name="conv_1"),
            keras.layers.MaxPooling3D(name="pool"),
            keras.layers.Conv3D(8, 3, activation="relu", name="conv_2"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(32, activation="relu", name="dense"),
        ],
        name="localization",
    )


LAYER_CASES = [
    pytest.param(
        layers.GridSample,
        {"mode": "bicubic", "padding_mode": "reflection", "align_corners": True},
        [random_images((2, 6, 7, 3)), random_images((2, 4, 5, 2), seed=1) * 2.4 - 1.2],
        (2, 4, 5, 3),
        {},
        id="grid_sample_images",
    ),
    pytest.param(
        layers.GridSample,
        {"mode": "nearest", "data_format": "channels_first"},
        [random_images((2, 3, 4, 5, 6)), random_images((2, 2, 3, 4, 3), seed=1) * 2.0 - 1.0],
        (2, 3, 2, 3, 4),
        {},
        id="grid_sample_volumes",
    ),
    pytest.param(
        layers.AffineGridGenerator,
        {"output_size": (3, 4, 5)},
        (np.eye(3, 4).ravel() + random_images((2, 12)) * 0.2).astype("float32"),
        (2, 3, 4, 5, 3),
        {"float32_outputs": (0,)},
        id="volumetric_affine_grid_generator",
    ),
    pytest.param(
        layers.SpatialTransformer,
        {"localization_net": trainable_localization_net(keras.layers.Conv3D),
         "localization_downsample": 2, "return_theta": True},
        random_images((2, 8, 10, 12, 2)),
        [(2, 8, 10, 12, 2), (2, 12)],
        # A convolution, a dense layer and the regression: kernel and bias each.
        {"expected_num_trainable_weights": 6, "float32_outputs": (1,)},
        id="volumetric_spatial_transformer",
    ),
]


@pytest.mark.parametrize("layer_class,init_kwargs,input_data,output_shape,expected", LAYER_CASES)
def test_layer_contract(layer_class, init_kwargs, input_data, output_shape, expected):
    run_layer_test(layer_class, init_kwargs, input_data, output_shape, **expected)


@pytest.mark.parametrize("mode", stn_ops.MODES)
def test_grid_sample_layer_matches_the_function(mode):
    images = random_images((2, 6, 7, 3))
    grid = random_images((2, 4, 5, 2), seed=1) * 2.4 - 1.2
    layer = layers.GridSample(mode=mode, padding_mode="reflection", align_corners=True)
    expected = numpy(
        stn_ops.grid_sample(images, grid, mode, "reflection", True, "channels_last")
    )
    np.testing.assert_array_equal(numpy(layer([images, grid])), expected)


def test_grid_sample_layer_samples_channels_first_volumes():
    volumes = random_images((2, 3, 4, 5, 6))  # (batch, channels, D, H, W)
    grid = random_images((2, 2, 3, 4, 3), seed=1) * 2.0 - 1.0
    layer = layers.GridSample(mode="nearest", data_format="channels_first")
    output = numpy(layer([volumes, grid]))
    expected = stn_ops.grid_sample(
        np.moveaxis(volumes, 1, -1), grid, "nearest", data_format="channels_last"
    )
    np.testing.assert_array_equal(np.moveaxis(output, 1, -1), numpy(expected))


def test_bilinear_interpolation_keeps_its_config():
    layer = layers.BilinearInterpolation(padding_mode="border", align_corners=True)
    config = layer.get_config()
    assert "mode" not in config
    assert (config["padding_mode"], config["align_corners"]) == ("border", True)
    clone = layers.BilinearInterpolation.from_config(config)
    assert clone.mode == "bilinear"


def test_volumetric_affine_generator_matches_the_function():
    generator = layers.AffineGridGenerator(output_size=(3, 4, 5))
    assert generator.num_parameters == 12
    theta = (generator.identity_parameters() + random_images((2, 12)) * 0.2).astype("float32")
    expected = numpy(stn_ops.affine_grid(theta, (3, 4, 5)))
    np.testing.assert_array_equal(numpy(generator(theta)), expected)
    np.testing.assert_array_equal(numpy(generator(theta.reshape(2, 3, 4))), expected)


@pytest.mark.parametrize("mode", stn_ops.MODES)
def test_spatial_transformer_mode_is_the_sampler_mode(mode):
    images = random_images((2, 10, 10, 1))
    transformer = layers.SpatialTransformer(
        keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(4)]),
        output_size=(6, 6),
        mode=mode,
        return_theta=True,
    )
    output, theta = transformer(images)
    grid = stn_ops.affine_grid(theta, (6, 6))
    np.testing.assert_allclose(
        numpy(output),
        numpy(stn_ops.grid_sample(images, grid, mode, data_format="channels_last")),
        atol=1e-6,
    )
    assert transformer.get_config()["mode"] == mode


def test_volumetric_transformer_starts_at_identity():
    transformer = layers.SpatialTransformer(
        volume_localization_net(), localization_downsample=2, return_theta=True
    )
    batch = random_images((3, 16, 18, 20, 2))
    output, predicted = transformer(batch)
    np.testing.assert_allclose(numpy(output), batch, atol=1e-5)
    np.testing.assert_allclose(
        numpy(predicted), np.tile(np.eye(3, 4).ravel(), (3, 1)), atol=1e-6
    )


def test_volumetric_downsample_averages_like_a_linear_resize():
    volumes = random_images((2, 8, 8, 8, 1))
    transformer = layers.SpatialTransformer(
        keras.layers.Flatten(), localization_downsample=2
    )
    transformer.build(volumes.shape)
    downsampled = numpy(transformer._downsample(ops.convert_to_tensor(volumes)))
    # Half-pixel centres: each output voxel is the mean of a 2x2x2 block.
    expected = volumes.reshape(2, 4, 2, 4, 2, 4, 2, 1).mean(axis=(2, 4, 6))
    np.testing.assert_allclose(downsampled, expected, atol=1e-6)


@pytest.mark.parametrize("old_name", ["tps_grid_shape", "grid_shape"])
def test_old_tps_lattice_config_keys_still_load(old_name):
    transformer = layers.SpatialTransformer(
        keras.layers.Flatten(), transform="tps", control_shape=(3, 3)
    )
    config = transformer.get_config()
    config[old_name] = config.pop("control_shape")
    with pytest.warns(DeprecationWarning, match=f"`{old_name}`.*`control_shape`"):
        clone = layers.SpatialTransformer.from_config(config)
    assert clone.control_shape == (3, 3)
    assert clone.get_config() == transformer.get_config()


def test_old_and_new_lattice_names_together_are_an_error():
    config = layers.TPSGridGenerator(4, control_shape=(3, 3)).get_config()
    config["grid_shape"] = (2, 2)
    with pytest.raises(ValueError, match="`grid_shape` is the old name of `control_shape`"):
        layers.TPSGridGenerator.from_config(config)


def test_tps_generator_config_written_with_grid_shape_gives_the_same_layer():
    # get_config() of a TPSGridGenerator before `grid_shape` was renamed.
    old_config = {
        "name": "tps_grid",
        "trainable": True,
        "dtype": "float32",
        "output_size": (5, 6),
        "align_corners": True,
        "grid_shape": (3, 4),
    }
    with pytest.warns(DeprecationWarning):
        generator = layers.TPSGridGenerator.from_config(old_config)
    expected = layers.TPSGridGenerator(
        (5, 6), control_shape=(3, 4), align_corners=True, name="tps_grid"
    )
    assert generator.get_config() == expected.get_config()
    theta = np.random.default_rng(0).normal(0, 0.1, (2, 24)).astype("float32")
    np.testing.assert_array_equal(numpy(generator(theta)), numpy(expected(theta)))


def blob_volume(size, centres, sigma=1.6):
    """Sum of Gaussian blobs at ``centres`` (voxels, (z, y, x)) in a cube."""
    axis = np.arange(size, dtype="float64")
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    volume = np.zeros((size,) * 3)
    for cz, cy, cx in centres:
        volume += np.exp(-((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma**2))
    return volume


def shifted_and_rotated_shapes(count, size, seed):
    """An asymmetric 3-D shape moved by random shifts and z rotations.

    Returns the moved volumes and the canonical volume, (count, D, H, W, 1).
    """
    rng = np.random.default_rng(seed)
    middle = (size - 1) / 2
    canonical = blob_volume(
        size, [(middle, middle, middle), (middle, middle + 3, middle), (middle + 3, middle, middle - 2)]
    )
    angle = rng.uniform(-0.35, 0.35, size=count)
    shift = rng.uniform(-0.25, 0.25, size=(count, 3))
    cosine, sine = np.cos(angle), np.sin(angle)
    zeros, ones = np.zeros(count), np.ones(count)
    theta = np.stack(
        [cosine, -sine, zeros, shift[:, 0], sine, cosine, zeros, shift[:, 1],
         zeros, zeros, ones, shift[:, 2]],
        axis=-1,
    ).astype("float32")
    stack = np.repeat(canonical[None, ..., None], count, axis=0).astype("float32")
    grid = stn_ops.affine_grid(theta, (size,) * 3)
    moved = numpy(stn_ops.grid_sample(stack, grid, data_format="channels_last"))
    return moved, stack


def test_volumetric_transformer_learns_to_undo_shifts_and_rotations():
    """A small 3-D ST, trained a few epochs on CPU, brings shapes back."""
    keras.utils.set_random_seed(0)
    size = 16
    moved, canonical = shifted_and_rotated_shapes(192, size, seed=1)
    volumes = keras.Input((size, size, size, 1))
    transformer = layers.SpatialTransformer(volume_localization_net(), localization_downsample=2)
    model = keras.Model(volumes, transformer(volumes))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
    before = model.evaluate(moved, canonical, verbose=0)
    model.fit(moved, canonical, batch_size=16, epochs=6, verbose=0)
    after = model.evaluate(moved, canonical, verbose=0)
    test_moved, test_canonical = shifted_and_rotated_shapes(64, size, seed=2)
    held_out_before = float(np.mean((test_moved - test_canonical) ** 2))
    held_out_after = model.evaluate(test_moved, test_canonical, verbose=0)
    assert after < 0.5 * before, (before, after)
    assert held_out_after < 0.5 * held_out_before, (held_out_before, held_out_after)


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: layers.GridSample(mode="area"), "mode='area'"),
        (lambda: layers.GridSample(padding_mode="wrap"), "padding_mode='wrap'"),
        (lambda: layers.GridSample(align_corners=1), "align_corners"),
        (lambda: layers.GridSample(data_format="NCDHW"), "data_format='NCDHW'"),
        (
            lambda: layers.SimilarityGridGenerator(output_size=(3, 4, 5)),
            "Only the affine transform has a volumetric",
        ),
        (
            lambda: layers.SpatialTransformer(
                keras.layers.Flatten(), output_size=(4, 4, 4), transform="tps"
            ),
            "Only the affine transform has a volumetric",
        ),
        (
            lambda: layers.SpatialTransformer(keras.layers.Flatten(), mode="area"),
            "mode='area'",
        ),
        (
            lambda: layers.SpatialTransformer(keras.layers.Flatten(), control_shape=(1, 4)),
            "control_shape",
        ),
    ],
)
def test_bad_constructor_arguments_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    "call,message",
    [
        (
            lambda: layers.GridSample(mode="bicubic")(
                [keras.Input((3, 4, 4, 1)), keras.Input((2, 2, 2, 3))]
            ),
            "mode='bicubic'",
        ),
        (
            lambda: layers.GridSample()([keras.Input((3, 4, 4, 1)), keras.Input((2, 2, 2))]),
            "grid.shape",
        ),
        (
            lambda: layers.AffineGridGenerator((3, 4, 5))(keras.Input((6,))),
            r"\(batch, 12\)",
        ),
        (
            lambda: layers.SpatialTransformer(keras.layers.Flatten(), transform="similarity")(
                keras.Input((4, 4, 4, 1))
            ),
            "Only the affine transform has a volumetric",
        ),
        (
            lambda: layers.SpatialTransformer(keras.layers.Flatten(), mode="bicubic")(
                keras.Input((4, 4, 4, 1))
            ),
            "images only",
        ),
        (
            lambda: layers.SpatialTransformer(keras.layers.Flatten(), output_size=(4, 4))(
                keras.Input((4, 4, 4, 1))
            ),
            "one entry per spatial axis",
        ),
    ],
)
def test_bad_call_shapes_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call()
