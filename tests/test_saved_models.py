"""The pretrained models in saved_models/: complete, small, loadable, accurate.

The accuracy checks read a few hundred real images (``real_data``): 300
evenly spaced over the split each model card reports (the splits are in
class or track order; a distorted split's 300 digits are distorted afresh,
with the run's distortion), against a floor a few
points under the card's figure (300 images give a standard error of about
1 point at 97%), so a model that was swapped, retrained badly or loaded
wrongly fails while a correct one never does.
"""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import stn_keras  # noqa: F401  (registers the layers)
from stn_keras import evaluation
from stn_keras.data import as_float_images
from stn_keras.data import distort
from stn_keras.settings import load_data

SAVED_MODELS_DIR = Path(__file__).resolve().parents[1] / "saved_models"
# name: (split the card reports, minimum accuracy on 300 of its images).
SHIPPED = {
    "rts_mnist_st_cnn": ("test", 0.98),
    "gtsrb_st_cnn": ("val", 0.99),
    "cluttered_mnist_st_cnn": ("test", 0.96),
}
MAX_FOLDER_BYTES = 25 * 1024 * 1024
CHECKED_IMAGES = 300


def _folder_bytes(folder):
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_folder_is_complete_and_small(name):
    folder = SAVED_MODELS_DIR / name
    for entry in (
        "model.keras", "config.json", "metrics.json", "README.md", "saved_model/saved_model.pb"
    ):
        assert (folder / entry).is_file(), f"{folder / entry} is missing"
    assert _folder_bytes(folder) <= MAX_FOLDER_BYTES
    # config.json is the run's, so evaluate.py finds the data settings.
    config = json.loads((folder / "config.json").read_text())["config"]
    assert config["dataset"] in ("mnist", "gtsrb")
    card = (folder / "README.md").read_text()
    assert f"--model saved_models/{name}/model.keras" in card


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_keras_model_loads_and_predicts_probabilities(name):
    model = keras.saving.load_model(SAVED_MODELS_DIR / name / "model.keras")
    images = np.random.default_rng(0).random((2, *model.input_shape[1:])).astype("float32")
    probabilities = np.asarray(model.predict(images, verbose=0))
    assert probabilities.shape == (2, model.output_shape[-1])
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=1e-5)


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_saved_model_has_the_three_signatures(name):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(SAVED_MODELS_DIR / name / "saved_model"))
    assert {"serving_default", "predict_bytes", "spatial_transforms"} <= set(
        loaded.signatures
    )


def _checked_images(config, split):
    """``CHECKED_IMAGES`` images evenly spaced over ``split`` of the data set
    ``config`` describes. A distorted data set distorts only those (with the
    run's distortion parameters): distorting a whole 10,000-image split took
    most of this test's time on JAX."""
    dataset = load_data(config)
    images, labels = dataset.undistorted_split(split)
    chosen = np.linspace(0, len(images) - 1, CHECKED_IMAGES).astype("int64")
    images, labels = images[chosen], labels[chosen]
    if dataset.distortion is None:
        return images, labels
    result = distort(
        images, dataset.distortion, seed=config["seed"], labels=labels,
        **dataset.distortion_parameters,
    )
    return result.images, result.labels


@pytest.mark.real_data
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_is_accurate_on_real_images(name, data_dir):
    split, minimum = SHIPPED[name]
    model_path = SAVED_MODELS_DIR / name / "model.keras"
    config = evaluation.data_config_for(model_path, {"data_dir": data_dir})
    images, labels = _checked_images(config, split)
    trained = evaluation.load_trained_model(model_path)
    predictions = trained.predict(as_float_images(images)).argmax(-1)
    accuracy = float(np.mean(predictions == labels))
    assert accuracy >= minimum, f"{name}: {accuracy:.4f} on {split} < {minimum}"


def _track_figure_module():
    import importlib.util

    path = SAVED_MODELS_DIR.parent / "experiments" / "gtsrb_track_figure.py"
    spec = importlib.util.spec_from_file_location("gtsrb_track_figure", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.real_data
def test_gtsrb_track_figure_draws_one_whole_validation_track(data_dir, tmp_path):
    figure = _track_figure_module()
    model_path = SAVED_MODELS_DIR / "gtsrb_st_cnn" / "model.keras"
    config = evaluation.data_config_for(model_path, {"data_dir": data_dir})
    dataset = load_data(config)
    images, labels = figure.track_images(dataset, data_dir, 0)
    # GTSRB tracks are 30 frames of one physical sign: one class throughout.
    assert len(images) == 30 and len(set(labels.tolist())) == 1
    output = tmp_path / "track.png"
    figure.main(["--model", str(model_path), "--output", str(output)])
    assert output.stat().st_size > 1000
