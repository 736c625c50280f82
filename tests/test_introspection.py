"""Tests of stn_keras.models.introspection on every backend: finding the
spatial transformers of a model, nested ones included, and what they compute."""

import keras
import numpy as np
import pytest

from serving_helpers import build_cnn
from serving_helpers import build_st_cnn
from conftest import random_images
from stn_keras.models.introspection import find_spatial_transformers
from stn_keras.models.introspection import spatial_transformer_layers
from stn_keras.models.introspection import transformer_model


def transformer_with_theta(layer, images):
    """The reference: the layer itself asked for theta on its own input."""
    return_theta = layer.return_theta
    layer.return_theta = True
    try:
        transformed, theta = layer(images)
    finally:
        layer.return_theta = return_theta
    return keras.ops.convert_to_numpy(transformed), keras.ops.convert_to_numpy(theta)


@pytest.mark.parametrize("nested", [False, True])
def test_transformer_model_returns_images_and_theta_of_each_transformer(nested):
    model = build_st_cnn(nested=nested)
    images = random_images((3, 28, 28, 1), seed=1)
    (layer,) = spatial_transformer_layers(model)
    transformed, theta = transformer_model(model).predict(images, verbose=0)
    # The nested transformer sits after a Rescaling(0.5, offset=0.25).
    expected_images, expected_theta = transformer_with_theta(
        layer, images * 0.5 + 0.25 if nested else images
    )
    np.testing.assert_allclose(theta, expected_theta, atol=1e-6)
    np.testing.assert_allclose(transformed, expected_images, atol=1e-5)
    # Random regression weights: theta depends on the image.
    assert np.abs(theta - [1, 0, 0, 0, 1, 0]).max() > 1e-3
    # The layer is left as it was, its graph untouched.
    assert layer.return_theta is not nested
    assert tuple(layer.input.shape) == (None, 28, 28, 1)


def test_transformer_model_reaches_into_a_sequential_sub_model():
    model = build_st_cnn(nested=True)
    (layer,) = spatial_transformer_layers(model)
    block = keras.Sequential(
        [keras.layers.Rescaling(2.0, name="double"), layer], name="sequential_block"
    )
    inputs = keras.Input((28, 28, 1))
    outer = keras.Model(inputs, block(inputs))
    images = random_images((2, 28, 28, 1), seed=2)
    transformed, theta = transformer_model(outer).predict(images, verbose=0)
    expected_images, expected_theta = transformer_with_theta(layer, images * 2.0)
    np.testing.assert_allclose(theta, expected_theta, atol=1e-6)
    np.testing.assert_allclose(transformed, expected_images, atol=1e-5)


def test_paths_lead_from_the_model_to_the_nested_layer():
    model = build_st_cnn(nested=True)
    ((path, layer),) = find_spatial_transformers(model)
    assert path == (model, model.get_layer("transformer_block"))
    assert layer is model.get_layer("transformer_block").get_layer("spatial_transformer")


def test_transformers_of_a_localisation_net_are_not_listed():
    from stn_keras.layers import SpatialTransformer

    inner = SpatialTransformer(
        keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(4)]), name="inner"
    )
    localization_net = keras.Sequential([inner, keras.layers.Flatten(), keras.layers.Dense(4)])
    inputs = keras.Input((8, 8, 1))
    outer = SpatialTransformer(localization_net, name="outer")
    model = keras.Model(inputs, outer(inputs))
    assert [layer.name for layer in spatial_transformer_layers(model)] == ["outer"]


def test_model_without_transformer_has_none():
    model = build_cnn()
    assert find_spatial_transformers(model) == []
    assert transformer_model(model) is None
