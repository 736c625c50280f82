"""Tests of the ONNX and LiteRT exports: parity with Keras, quantization that
keeps the spatial transformer in float, the CLI, missing optional packages."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from serving_helpers import CLASS_NAMES
from serving_helpers import build_st_cnn
from conftest import random_images

pytestmark = pytest.mark.tensorflow_only

SHIPPED = os.path.join(os.path.dirname(__file__), "..", "saved_models")
# Float formats: the same float32 maths in another runtime.
FLOAT_ATOL = 1e-4


@pytest.fixture(scope="module")
def model():
    return build_st_cnn()


@pytest.fixture(scope="module")
def images():
    return random_images((32, 28, 28, 1), seed=5)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, model):
    """A run directory of the tiny ST-CNN, as saved_models/ folders are laid out."""
    directory = tmp_path_factory.mktemp("run")
    model.save(directory / "model.keras")
    (directory / "config.json").write_text(
        json.dumps({"config": {"dataset": "mnist"}, "class_names": CLASS_NAMES})
    )
    return directory


def predictions_of(path, images):
    from stn_keras.export.runtimes import load_predictor

    return load_predictor(path)(images)


@pytest.mark.parametrize("format", ["onnx", "litert"])
def test_float_export_matches_keras(tmp_path, model, images, format):
    from stn_keras.export.formats import default_output
    from stn_keras.export.formats import export_litert
    from stn_keras.export.formats import export_onnx

    path = default_output(tmp_path, format)
    (export_onnx if format == "onnx" else export_litert)(model, path)
    expected = model.predict(images, verbose=0)
    actual = predictions_of(path, images)
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(actual.argmax(-1), expected.argmax(-1))
    assert np.max(np.abs(actual - expected)) <= FLOAT_ATOL
    # A second batch size runs on the same file: the batch is dynamic.
    np.testing.assert_allclose(predictions_of(path, images[:1]), expected[:1], atol=FLOAT_ATOL)


@pytest.fixture(scope="module")
def float_litert(tmp_path_factory, model):
    from stn_keras.export.formats import export_litert

    path = tmp_path_factory.mktemp("litert") / "model.tflite"
    export_litert(model, path)
    return path


@pytest.mark.parametrize("quantize", ["float16", "dynamic_int8"])
def test_weight_quantization_stays_close(tmp_path, model, images, float_litert, quantize):
    from stn_keras.export.formats import default_output
    from stn_keras.export.formats import export_litert

    path = default_output(tmp_path, "litert", quantize)
    export_litert(model, path, quantize)
    assert path.stat().st_size < float_litert.stat().st_size
    expected = model.predict(images, verbose=0)
    actual = predictions_of(path, images)
    agreement = np.mean(actual.argmax(-1) == expected.argmax(-1))
    print(f"{quantize}: top-1 agreement with Keras {agreement:.1%}")
    assert agreement >= 0.9
    assert np.max(np.abs(actual - expected)) <= (1e-3 if quantize == "float16" else 0.1)


def output_kinds(path, scope):
    """Per op name of a LiteRT file, the set of (output inside ``scope``, output dtype)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    tensors = interpreter.get_tensor_details()
    kinds = {}
    for op in interpreter._get_ops_details():
        if len(op["outputs"]):
            output = tensors[op["outputs"][0]]
            kinds.setdefault(op["op_name"], set()).add(
                (scope in output["name"], np.dtype(output["dtype"]).name)
            )
    return kinds


def test_int8_keeps_the_transformer_in_float(tmp_path, model, images):
    from stn_keras.export.formats import export_litert

    path = tmp_path / "model_int8.tflite"
    export_litert(model, path, "int8", calibration=random_images((40, 28, 28, 1), seed=6))
    kinds = output_kinds(path, "transformer")
    # The sampler's gathers and the interpolation run in float32 ...
    assert kinds["GATHER"] == {(True, "float32")}
    assert (True, "float32") in kinds["FLOOR"]
    # ... while the classifier's convolutions run in int8.
    assert (False, "int8") in kinds["CONV_2D"]
    assert (False, "float32") not in kinds["CONV_2D"]
    expected = model.predict(images, verbose=0)
    agreement = np.mean(predictions_of(path, images).argmax(-1) == expected.argmax(-1))
    print(f"int8: top-1 agreement with Keras {agreement:.1%}")
    assert agreement >= 0.9


def test_int8_keeps_per_image_standardization_in_float(tmp_path):
    from stn_keras.export.formats import export_litert
    from stn_keras.models import build_model

    model = build_model(
        "compact_cnn", (16, 16, 3), 3, filters=(4, 4, 4), dense_units=8, standardize_images=True
    )
    path = tmp_path / "model_int8.tflite"
    export_litert(model, path, "int8", calibration=random_images((20, 16, 16, 3), seed=7))
    kinds = output_kinds(path, "standardization")
    # The mean, deviation and division stay float; the classifier is int8.
    assert {dtype for op in kinds.values() for inside, dtype in op if inside} == {"float32"}
    assert kinds["CONV_2D"] == {(False, "int8")}


def test_int8_without_calibration_images_is_refused(tmp_path, model):
    from stn_keras.export.formats import export_litert

    with pytest.raises(ValueError, match="int8 quantization needs calibration images"):
        export_litert(model, tmp_path / "model.tflite", "int8", calibration=np.zeros((0, 28, 28, 1)))


def test_layer_tensor_names_picks_the_layer_scopes():
    from stn_keras.export.formats import layer_tensor_names

    names = [
        "serving_default_images:0",
        "st_cnn_1/transformer_1/Floor",
        "st_cnn_1/transformer_1/localization_net_1/conv_1/Relu;st_cnn_1/transformer_1/x",
        "st_cnn_1/transformer_2_1/Floor",
        "st_cnn_1/conv_1_1/Relu;st_cnn_1/conv_1_1/BiasAdd",
        "transformer/GatherV2",
        "st_cnn_1/my_transformer_1/add",
    ]
    assert layer_tensor_names(names, ["transformer"]) == [names[1], names[2], names[5]]
    assert layer_tensor_names(names, ["transformer", "transformer_2"]) == [
        names[1], names[2], names[3], names[5],
    ]
    assert layer_tensor_names(names, []) == []


def test_export_model_writes_each_format_from_a_run_directory(tmp_path, run_dir, images):
    from stn_keras.export import export_model

    expected = predictions_of(run_dir / "model.keras", images)
    for format, output in (("onnx", tmp_path / "m.onnx"), ("litert", tmp_path / "m.tflite")):
        path, details = export_model(run_dir, format, output)
        assert path == output and details == {"bytes": output.stat().st_size}
        np.testing.assert_allclose(predictions_of(path, images), expected, atol=FLOAT_ATOL)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--format", "onnx", "--quantize", "int8"],
         "`quantize` applies to the LiteRT format only. Received: format='onnx', quantize='int8'"),
        (["--format", "litert", "--output", "m.onnx"],
         "A litert file must end with .tflite. Received: output='m.onnx'"),
        (["--format", "onnx", "--output", "m.tflite"],
         "A onnx file must end with .onnx. Received: output='m.tflite'"),
    ],
)
def test_cli_refuses_bad_combinations(run_dir, arguments, message):
    from stn_keras.export.__main__ import main

    with pytest.raises(SystemExit) as raised:
        main([str(run_dir), *arguments])
    assert str(raised.value) == f"python -m stn_keras.export: error: {message}"


def test_cli_writes_litert_by_default_beside_the_model(tmp_path, run_dir, caplog):
    import logging

    from stn_keras.export.__main__ import main

    with caplog.at_level(logging.INFO, logger="stn_keras.export"):
        main([str(run_dir), "--format", "litert"])
    written = run_dir / "model.tflite"
    assert written.is_file()
    assert f"Wrote {written} (bytes: {written.stat().st_size})" in caplog.messages
@pytest.mark.parametrize(
    "format, missing", [("onnx", "tf2onnx"), ("onnx", "onnx")]
)
def test_missing_export_package_says_how_to_install(monkeypatch, tmp_path, run_dir, format, missing):
    import importlib.util

    from stn_keras.export import export_model

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *rest: None if name == missing else find_spec(name, *rest)
    )
    with pytest.raises(ValueError) as raised:
        export_model(run_dir, format, tmp_path / "m.onnx")
    assert str(raised.value) == (
        f"onnx export needs {missing}, which is not installed: pip install "
        '"stn_keras[export]" (or pip install -r requirements-dev.txt in a clone).'
    )


@pytest.mark.parametrize(
    "suffix, module", [(".onnx", "onnxruntime"), (".tflite", "ai_edge_litert")]
)
def test_missing_runtime_package_says_how_to_install(monkeypatch, tmp_path, suffix, module):
    import importlib.util

    from stn_keras.export.runtimes import load_predictor

    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *rest: None if name == module else find_spec(name, *rest)
    )
    with pytest.raises(ValueError, match=rf"needs {module}, which is not installed: pip install "):
        load_predictor(path)


def test_unknown_model_file_is_refused(tmp_path):
    from stn_keras.export.runtimes import load_predictor

    path = tmp_path / "model.h5"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"Cannot tell the format of '.*model.h5': expected a"):
        load_predictor(path)
    with pytest.raises(ValueError, match=r"Model not found: '.*missing.onnx'"):
        load_predictor(tmp_path / "missing.onnx")


def test_importing_export_loads_no_model_training_or_plotting_code():
    code = (
        "import sys; import stn_keras.export as export; export.export_model; "
        "print(sorted(name for name in ('stn_keras.models', 'stn_keras.callbacks', "
        "'stn_keras.visualization', 'stn_keras.training', 'stn_keras.run_dir') "
        "if name in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.real_data
def test_quantized_gtsrb_agrees_with_keras_on_real_signs(tmp_path, data_dir):
    """dynamic_int8 and int8 (transformer in float) agree with float on >= 98% of
    300 validation signs; int8 with the transformer quantized too, far less."""
    import keras

    from stn_keras.data import as_float_images
    from stn_keras.export import export_model
    from stn_keras.export.formats import calibration_images
    from stn_keras.export.formats import export_litert
    from stn_keras.export.parity import compare
    from stn_keras.run_dir import RunDirectory
    from stn_keras.settings import data_settings
    from stn_keras.settings import load_data

    model_dir = os.path.join(SHIPPED, "gtsrb_st_cnn")
    settings = data_settings(RunDirectory(model_dir).read_config())
    settings["data_dir"] = data_dir
    images, labels = load_data(settings).split("val")
    chosen = np.random.default_rng(1).choice(len(images), 300, replace=False)
    images, labels = as_float_images(images[chosen]), labels[chosen]
    reference = predictions_of(os.path.join(model_dir, "model.keras"), images)
    for quantize in ("dynamic_int8", "int8"):
        path, details = export_model(
            model_dir, "litert", tmp_path / f"{quantize}.tflite", quantize=quantize,
            data_dir=data_dir, num_calibration_images=100,
        )
        parity = compare(quantize, path, images, labels, reference)
        print(f"{quantize}: top-1 agreement {parity.top1_agreement:.1%}, {details}")
        assert parity.top1_agreement >= 0.98
    full = tmp_path / "int8_everything.tflite"
    export_litert(
        keras.saving.load_model(os.path.join(model_dir, "model.keras"), compile=False), full,
        "int8", calibration_images(model_dir, data_dir, 100), float_transformers=False,
    )
    parity = compare("int8, transformer quantized", full, images, labels, reference)
    print(f"int8 with the transformer quantized: top-1 agreement {parity.top1_agreement:.1%}")
    assert parity.top1_agreement < 0.9


def test_update_card_replaces_only_the_marked_table(tmp_path):
    from stn_keras.export.parity import CARD_END
    from stn_keras.export.parity import CARD_START
    from stn_keras.export.parity import update_card

    card = tmp_path / "README.md"
    card.write_text("# model\n\nText.\n")
    assert update_card(card, "| a |\n") == f"# model\n\nText.\n\n{CARD_START}\n| a |\n{CARD_END}\n"
    card.write_text(card.read_text() + "\n## After\n")
    assert update_card(card, "| b |") == f"# model\n\nText.\n\n{CARD_START}\n| b |\n{CARD_END}\n\n## After\n"


def test_markdown_table_formats_each_row():
    from stn_keras.export.parity import FormatParity
    from stn_keras.export.parity import markdown_table

    row = FormatParity("litert int8", "m.tflite", 1_676_040, 0.98822, 0.99774, 0.2213)
    assert markdown_table("val", 3990, [row]).splitlines() == [
        "| format | file size | accuracy (val, 3,990 images) | top-1 agreement with Keras "
        "| max abs. difference to Keras |",
        "|---|---:|---:|---:|---:|",
        "| litert int8 | 1.68 MB | 98.82% | 99.77% | 2.2e-01 |",
    ]
