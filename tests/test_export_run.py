"""Tests of exporting a run's model.keras: `export_run`, ``python -m
stn_keras.export`` and `saved_model_export_available`, on every backend."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import random_images
from serving_helpers import CLASS_NAMES
from serving_helpers import build_st_cnn

BACKEND = keras.backend.backend()

# Saves the tiny ST-CNN under KERAS_BACKEND (set by the caller) to argv[1].
SAVE_MODEL = """
import sys
sys.path.insert(0, "tests")
from serving_helpers import build_st_cnn
build_st_cnn(nested=True).save(sys.argv[1])
"""


def make_run(run_dir, backend, class_names=CLASS_NAMES):
    """A run directory whose model.keras was saved on ``backend``, in a subprocess."""
    run_dir.mkdir(parents=True)
    if backend == BACKEND:
        build_st_cnn(nested=True).save(run_dir / "model.keras")
    else:
        subprocess.run(
            [sys.executable, "-c", SAVE_MODEL, str(run_dir / "model.keras")],
            env=dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3"),
            check=True, capture_output=True,
        )
    (run_dir / "config.json").write_text(json.dumps({"model": "st_cnn", "class_names": class_names}))
    return run_dir


def test_availability_depends_on_the_backend():
    from stn_keras.export import saved_model_export_available

    available, reason = saved_model_export_available()
    if BACKEND == "tensorflow":
        assert (available, reason) == (True, "")
    else:
        assert not available
        assert f"Keras runs on {BACKEND!r}" in reason
        assert "KERAS_BACKEND=tensorflow python -m stn_keras.export RUN_DIR" in reason


def test_missing_tensorflow_says_to_install_it(monkeypatch):
    import importlib.util

    from stn_keras.export import export_run
    from stn_keras.export import saved_model_export_available

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *rest: None if name == "tensorflow" else find_spec(name, *rest)
    )
    available, reason = saved_model_export_available()
    assert not available and "`pip install tensorflow`" in reason
    with pytest.raises(ValueError, match="pip install tensorflow"):
        export_run("any_run")


@pytest.mark.skipif(BACKEND == "tensorflow", reason="the refusal of other backends")
def test_export_run_on_another_backend_says_how_to_export(tmp_path):
    from stn_keras.export import export_run

    with pytest.raises(ValueError, match="needs the TensorFlow backend"):
        export_run(tmp_path)


@pytest.mark.tensorflow_only
def test_model_saved_under_jax_exports_with_its_class_names(tmp_path):
    import tensorflow as tf

    from stn_keras.export import export_run

    run_dir = make_run(tmp_path / "run", "jax")
    export_dir, signatures = export_run(run_dir)
    assert export_dir == run_dir / "saved_model"
    assert signatures == ["serving_default", "predict_bytes", "spatial_transforms"]
    assert sorted(path.name for path in run_dir.iterdir()) == ["config.json", "model.keras", "saved_model"]
    model = keras.saving.load_model(run_dir / "model.keras")
    images = random_images((3, 28, 28, 1), seed=8)
    loaded = tf.saved_model.load(str(export_dir))
    np.testing.assert_allclose(
        loaded.signatures["serving_default"](images=tf.constant(images))["probabilities"].numpy(),
        model.predict(images, verbose=0),
        atol=1e-6,
    )
    encoded = tf.constant([tf.io.encode_png(tf.zeros((28, 28, 1), tf.uint8)).numpy()])
    names = loaded.signatures["predict_bytes"](image_bytes=encoded)["class_names"].numpy()
    assert names[0].decode() in CLASS_NAMES


@pytest.mark.tensorflow_only
@pytest.mark.parametrize(
    "damage, message",
    [
        ("no run", "Run directory not found: '{run}'"),
        ("no model", "No model.keras in '{run}': pass the directory of a finished training run"),
        ("no config", "No config.json in '{run}': the class names of the SavedModel are read from its 'class_names' key"),
        ("config without class names", "'{run}/config.json' has no 'class_names' list"),
        ("config not JSON", "'{run}/config.json' is not valid JSON"),
        ("model not a .keras file", "Cannot load model file '{run}/model.keras': the file is damaged"),
    ],
)
def test_command_line_refuses_incomplete_runs_in_one_line(tmp_path, damage, message):
    from stn_keras.export.__main__ import main

    run_dir = tmp_path / "run"
    if damage != "no run":
        run_dir.mkdir()
        (run_dir / "model.keras").write_bytes(b"not a zip" if damage == "model not a .keras file" else b"")
        if damage == "no model":
            (run_dir / "model.keras").unlink()
        config = {"config not JSON": "{", "config without class names": json.dumps({"model": "cnn"})}
        if damage != "no config":
            (run_dir / "config.json").write_text(config.get(damage, json.dumps({"class_names": ["a", "b"]})))
    with pytest.raises(SystemExit) as exit_info:
        main([str(run_dir)])
    text = str(exit_info.value.code)
    assert text.startswith("python -m stn_keras.export: error: " + message.format(run=run_dir)), text
    assert "\n" not in text
    assert not (run_dir / "saved_model").exists()


@pytest.mark.tensorflow_only
def test_command_line_writes_the_saved_model(tmp_path):
    run_dir = make_run(tmp_path / "run", "tensorflow")
    finished = subprocess.run(
        [sys.executable, "-m", "stn_keras.export", str(run_dir), "--max-image-pixels", "1000"],
        env=dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True, text=True, timeout=300,
    )
    assert finished.returncode == 0, finished.stderr
    assert "with signatures ['serving_default', 'predict_bytes', 'spatial_transforms']" in finished.stderr
    options = json.loads((run_dir / "saved_model" / "assets.extra" / "export_options.json").read_text())
    assert options["max_image_pixels"] == 1000
    assert options["class_names"] == CLASS_NAMES
