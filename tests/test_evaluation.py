"""Evaluation: metrics, confusion matrix, pictures, model loading and errors."""

import csv
import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import keras
import numpy as np
import pytest

from stn_keras import evaluation
from stn_keras import visualization
from stn_keras.models import build_model
from tiny_data import tiny_dataset
from tiny_data import tiny_distorted_dataset

REPORTS = (
    "metrics.json",
    "confusion_matrix.csv",
    "confusion_matrix.png",
    "misclassified.png",
)


@pytest.fixture(scope="module")
def dataset():
    return tiny_dataset()


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory, dataset):
    """A briefly trained ST-CNN saved as ``model.keras``."""
    keras.utils.set_random_seed(0)
    model = build_model("st_cnn", dataset.image_shape, dataset.num_classes)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(
        dataset.x_train / 255.0, dataset.y_train, epochs=2, batch_size=32, verbose=0
    )
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def saved_model_dir(keras_file):
    from stn_keras.export import export_saved_model

    path = keras_file.parent / "saved_model"
    export_saved_model(keras.saving.load_model(keras_file), path)
    return path


def test_compute_metrics_hand_computed():
    probabilities = np.array(
        [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]]
    )
    labels = np.array([0, 1, 1, 2])
    metrics, matrix = evaluation.compute_metrics(probabilities, labels, ["a", "b", "c"])
    np.testing.assert_array_equal(matrix, [[1, 0, 0], [1, 1, 0], [0, 0, 1]])
    assert metrics["accuracy"] == 0.75
    assert metrics["error_percent"] == pytest.approx(25.0)
    assert metrics["num_samples"] == 4 and metrics["num_correct"] == 3
    assert metrics["per_class_accuracy"] == {"a": 1.0, "b": 0.5, "c": 1.0}
    expected_loss = -np.mean(np.log([0.7, 0.8, 0.3, 0.6]))
    assert metrics["loss"] == pytest.approx(expected_loss)
    report = evaluation.format_report(metrics, ["a", "b", "c"])
    assert "Average loss: 0.5737, accuracy: 3/4 (75.00%)" in report
    assert " 50.00%" in report.splitlines()[2]


def test_class_without_samples_has_no_accuracy():
    metrics, _ = evaluation.compute_metrics(np.eye(3)[[0, 0]], np.array([0, 0]), "xyz")
    assert metrics["per_class_accuracy"] == {"x": 1.0, "y": None, "z": None}
    assert "n/a" in evaluation.format_report(metrics, "xyz")


def test_confusion_matrix_csv_layout(tmp_path):
    path = evaluation.write_confusion_matrix_csv(
        np.array([[3, 1], [0, 4]]), ["cat", "dog"], tmp_path / "matrix.csv"
    )
    with open(path) as file:
        rows = list(csv.reader(file))
    assert rows == [["true \\ predicted", "cat", "dog"], ["cat", "3", "1"], ["dog", "0", "4"]]


def test_metrics_json_round_trips(tmp_path):
    metrics, _ = evaluation.compute_metrics(np.eye(2)[[0, 1, 1]], np.array([0, 1, 0]), ["a", "b"])
    metrics["data"] = {"source": Path("/data/set")}  # not JSON: written as its text
    path = evaluation.write_metrics_json(metrics, tmp_path / "metrics.json")
    written = json.loads(path.read_text())
    assert written == {**metrics, "data": {"source": "/data/set"}}
    assert path.read_text().startswith('{\n  "loss": ')


def test_pick_samples_takes_one_image_per_class_first():
    labels = np.array([0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(evaluation.pick_samples(labels, 4), [0, 2, 4, 1])
    np.testing.assert_array_equal(evaluation.pick_samples(labels, 2), [0, 2])
    np.testing.assert_array_equal(evaluation.pick_samples(labels[:3], 8), [0, 2, 1])


def test_data_settings_come_from_the_run_beside_the_model_then_the_overrides(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    saved = {"dataset": "mnist", "distortion": "rts", "seed": 3, "epochs": 5}
    (run_dir / "config.json").write_text(json.dumps({"config": saved}))
    model_path = run_dir / "model.keras"
    config = evaluation.data_config_for(model_path, {"seed": 7})
    assert config["dataset"] == "mnist" and config["distortion"] == "rts"
    assert config["seed"] == 7 and "epochs" not in config
    assert evaluation.data_config_for(model_path, {"distortion": "none"})["distortion"] is None
    assert evaluation.default_output_dir(model_path) == run_dir.resolve() / "evaluation"
    alone = evaluation.data_config_for(tmp_path / "model.keras")
    assert (alone["dataset"], alone["distortion"], alone["seed"]) == ("digits", None, 0)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"seed": -1}, "`seed` must be an int >= 0. Received: seed=-1"),
        ({"distortion": "swirl"}, "Received: distortion='swirl'"),
        ({"image_size": 0}, "`image_size` must be an int >= 1. Received: image_size=0"),
        ({"val_size": 1.5}, "Received: val_size=1.5"),
    ],
)
def test_evaluation_data_settings_are_checked_as_a_runs_are(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        evaluation.data_config_for(tmp_path / "model.keras", overrides)


def test_transformer_samples_of_a_model_that_cannot_show_them_are_skipped_with_a_reason(
    tmp_path, caplog
):
    images = np.zeros((3, 4, 4, 1), "float32")
    labels = predictions = np.array([0, 1, 0])
    without_metadata = evaluation.TrainedModel(None, (4, 4, 1), 2, {}, transformer_views=None)
    without_transformer = dataclasses.replace(without_metadata, transformer_views=lambda batch: [])
    path = tmp_path / "st_samples.png"
    with caplog.at_level("INFO"):
        for trained in (without_metadata, without_transformer):
            assert evaluation.write_transformer_samples(
                trained, images, labels, predictions, ["a", "b"], 2, path
            ) is None
    assert "no transformer metadata (assets.extra/spatial_transformers.json)" in caplog.text
    assert "The model has no spatial transformer: no st_samples.png." in caplog.text
    assert not path.exists()


def test_evaluate_writes_reports_that_agree_with_a_direct_computation(
    tmp_path, keras_file, dataset
):
    metrics = evaluation.evaluate(keras_file, dataset, tmp_path / "eval")
    for name in (*REPORTS, "st_samples.png"):
        assert (tmp_path / "eval" / name).stat().st_size > 0, name
    model = keras.saving.load_model(keras_file)
    probabilities = model.predict(dataset.x_test / 255.0, verbose=0)
    predictions = probabilities.argmax(axis=-1)
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert written["num_samples"] == len(dataset.y_test)
    assert written["accuracy"] == pytest.approx(np.mean(predictions == dataset.y_test))
    assert written["error_percent"] == pytest.approx(100 * (1 - written["accuracy"]))
    loss = keras.losses.sparse_categorical_crossentropy(dataset.y_test, probabilities)
    loss = keras.ops.convert_to_numpy(loss)
    assert written["loss"] == pytest.approx(float(np.mean(loss)), rel=1e-4)
    for index, name in enumerate(dataset.class_names):
        of_class = dataset.y_test == index
        assert written["per_class_accuracy"][name] == pytest.approx(
            np.mean(predictions[of_class] == index)
        )
    assert written["model"]["format"] == "keras" and written["model"]["name"] == "st_cnn"
    assert written["data"]["source"] == dataset.source
    assert metrics["accuracy"] == written["accuracy"]
    with open(tmp_path / "eval" / "confusion_matrix.csv") as file:
        counts = np.array([row[1:] for row in list(csv.reader(file))[1:]], dtype=int)
    assert counts.sum() == len(dataset.y_test)
    assert np.trace(counts) == np.sum(predictions == dataset.y_test)


@pytest.mark.tensorflow_only
def test_saved_model_round_trip_equals_model_predict(keras_file, saved_model_dir, dataset):
    model = keras.saving.load_model(keras_file)
    trained = evaluation.load_trained_model(saved_model_dir, batch_size=5)
    images = dataset.x_test[:13] / 255.0  # not a multiple of the batch size
    np.testing.assert_allclose(
        trained.predict(images.astype("float32")),
        model.predict(images, verbose=0),
        atol=1e-5,
    )
    assert trained.input_shape == (28, 28, 1) and trained.num_classes == 3


@pytest.mark.tensorflow_only
def test_saved_model_signature_has_a_dynamic_batch(saved_model_dir):
    cli = shutil.which("saved_model_cli") or str(
        Path(__import__("sys").executable).parent / "saved_model_cli"
    )
    shown = subprocess.run(
        [cli, "show", "--dir", str(saved_model_dir), "--tag_set", "serve",
         "--signature_def", "serving_default"],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "dtype: DT_FLOAT" in shown
    assert "shape: (-1, 28, 28, 1)" in shown
    assert "shape: (-1, 3)" in shown


@pytest.mark.tensorflow_only
def test_evaluate_a_saved_model(tmp_path, keras_file, saved_model_dir, dataset):
    from_keras = evaluation.evaluate(keras_file, dataset, tmp_path / "keras")
    from_saved = evaluation.evaluate(saved_model_dir, dataset, tmp_path / "saved")
    for name in (*REPORTS, "st_samples.png"):
        assert (tmp_path / "saved" / name).stat().st_size > 0, name
    assert from_saved["accuracy"] == from_keras["accuracy"]
    assert from_saved["loss"] == pytest.approx(from_keras["loss"], rel=1e-5)
    assert from_saved["model"]["format"] == "saved_model"


@pytest.mark.tensorflow_only
def test_saved_model_transformer_views_equal_the_keras_models(
    keras_file, saved_model_dir, dataset
):
    images = dataset.x_test[:5] / 255.0
    from_keras = evaluation.load_trained_model(keras_file).transformer_views(images)
    from_saved = evaluation.load_trained_model(saved_model_dir).transformer_views(
        images
    )
    assert [view.name for view in from_saved] == [view.name for view in from_keras]
    assert len(from_keras) == 1
    for saved, direct in zip(from_saved, from_keras):
        assert (saved.transform, saved.align_corners, saved.control_shape) == (
            direct.transform,
            direct.align_corners,
            direct.control_shape,
        )
        np.testing.assert_allclose(saved.theta, direct.theta, atol=1e-5)
        np.testing.assert_allclose(saved.images, direct.images, atol=1e-5)


@pytest.mark.tensorflow_only
def test_saved_model_without_transformer_metadata_skips_st_samples(
    tmp_path, saved_model_dir, dataset
):
    from stn_keras import export

    copy = tmp_path / "saved_model"
    shutil.copytree(saved_model_dir, copy)
    (copy / export.TRANSFORMERS_METADATA).unlink()
    assert evaluation.load_trained_model(copy).transformer_views is None
    evaluation.evaluate(copy, dataset, tmp_path / "eval")
    assert (tmp_path / "eval" / "metrics.json").exists()
    assert not (tmp_path / "eval" / "st_samples.png").exists()


def test_wrong_shaped_data_names_both_shapes(tmp_path, keras_file):
    colour = tiny_dataset(size=32, channels=3)
    with pytest.raises(ValueError) as error:
        evaluation.evaluate(keras_file, colour, tmp_path / "eval")
    message = str(error.value)
    assert "expects images of shape (28, 28, 1)" in message
    assert "has images of shape (32, 32, 3)" in message
    assert not (tmp_path / "eval").exists()


def test_wrong_class_count(tmp_path, keras_file, dataset):
    more_classes = dataclasses.replace(dataset, num_classes=10, class_names=tuple("0123456789"))
    with pytest.raises(ValueError, match="The model predicts 3 classes but data set 'tiny' has 10"):
        evaluation.evaluate(keras_file, more_classes, tmp_path / "eval")


def test_corrupt_truncated_and_missing_models(tmp_path, keras_file, dataset):
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"not a zip file at all")
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(keras_file.read_bytes()[: keras_file.stat().st_size // 2])
    for path in (garbage, truncated):
        with pytest.raises(ValueError, match=re.escape(
            f"Cannot load model file '{path}': the file is damaged: it is not a complete .keras (zip) archive"
        )):
            evaluation.load_trained_model(path)
    with pytest.raises(ValueError, match="Model not found"):
        evaluation.load_trained_model(tmp_path / "missing.keras")
    with pytest.raises(ValueError, match="is not a SavedModel"):
        evaluation.load_trained_model(tmp_path)
    with pytest.raises(ValueError, match="Unknown split. Expected one of"):
        evaluation.evaluate(keras_file, dataset, tmp_path / "eval", split="dev")


def test_sampled_region_outline_hand_computed():
    identity = visualization.sampled_region_outline(
        "affine", np.array([[1, 0, 0, 0, 1, 0]]), (4, 4), (4, 4)
    )
    corners = {tuple(point) for point in np.round(identity[0], 6)}
    assert {(0, 0), (3, 0), (3, 3), (0, 3)} <= corners
    assert identity.shape == (1, 4 * 4 + 1, 2)
    np.testing.assert_allclose(identity[0, 0], identity[0, -1])  # closed
    # Attention with scale 0.5 on an 8x8 output: centres at +-7/8 map to
    # +-7/16, i.e. pixels ((1 -+ 7/16) * 8 - 1) / 2 = 1.75 and 5.25.
    zoomed = visualization.sampled_region_outline(
        "attention", np.array([[0.5, 0.0, 0.0]]), (8, 8), (8, 8)
    )
    np.testing.assert_allclose(zoomed[0].min(axis=0), [1.75, 1.75], atol=1e-6)
    np.testing.assert_allclose(zoomed[0].max(axis=0), [5.25, 5.25], atol=1e-6)
    # A shift by +0.5 (a quarter of the width) moves the outline 2 pixels right.
    shifted = visualization.sampled_region_outline(
        "affine", np.array([[1, 0, 0.5, 0, 1, 0]]), (8, 8), (8, 8)
    )
    np.testing.assert_allclose(shifted[0, :, 0].min(), 2.0, atol=1e-6)


def test_displayable_images():
    two_channel = np.zeros((1, 2, 2, 2), "float32")
    two_channel[0, 0, 0, 0] = 1.0
    two_channel[0, 1, 1, 1] = 1.0
    shown = visualization.displayable_images(two_channel)
    np.testing.assert_array_equal(shown[0, 0, 0], [1, 0, 1])  # magenta
    np.testing.assert_array_equal(shown[0, 1, 1], [0, 1, 0])  # green
    features = np.arange(2 * 3 * 3 * 5, dtype="float32").reshape(2, 3, 3, 5)
    shown = visualization.displayable_images(features)
    assert shown.shape == (2, 3, 3, 1)
    assert shown.min() == 0.0 and shown.max() == 1.0


def test_mistake_titles_wrap_long_class_names_and_keep_every_word():
    title = visualization.mistake_title(
        "Right-of-way at the next intersection", 0.354, "Beware of ice/snow", width=28
    )
    assert title == (
        "pred Right-of-way at the\nnext intersection (0.35)\ntrue Beware of ice/snow"
    )
    assert visualization.mistake_title("7", 0.9, "1") == "pred 7 (0.90)\ntrue 1"


def test_outline_points_are_where_the_transformer_samples():
    from scipy import ndimage

    from stn_keras.models import spatial_transformer_layers
    from stn_keras.models import transformer_model

    model = build_model("st_cnn", (28, 28, 1), 3)
    regression = spatial_transformer_layers(model)[0].regression
    theta = np.array([0.6, -0.3, 0.2, 0.25, 0.7, -0.1], "float32")
    regression.bias.assign(theta)
    image = np.random.default_rng(4).random((1, 28, 28, 1)).astype("float32")
    transformed, predicted_theta = transformer_model(model).predict(image, verbose=0)
    np.testing.assert_allclose(predicted_theta[0], theta, atol=1e-6)
    outline = visualization.sampled_region_outline("affine", predicted_theta, (28, 28), (28, 28))
    # The first 28 outline points are the output's top row, left to right.
    columns, rows = outline[0, :28, 0], outline[0, :28, 1]
    sampled = ndimage.map_coordinates(image[0, :, :, 0], [rows, columns], order=1, mode="grid-constant")
    np.testing.assert_allclose(sampled, transformed[0, 0, :, 0], atol=1e-5)


def test_an_interrupted_evaluation_keeps_the_previous_reports(tmp_path, keras_file, dataset, monkeypatch):
    output = tmp_path / "evaluation"
    first = evaluation.evaluate(keras_file, dataset, output)
    before = {name: (output / name).read_bytes() for name in REPORTS}

    def killed(*arguments, **options):
        raise KeyboardInterrupt

    monkeypatch.setattr(visualization, "plot_misclassified", killed)
    with pytest.raises(KeyboardInterrupt):
        evaluation.evaluate(keras_file, dataset, output, split="val")
    assert {name: (output / name).read_bytes() for name in REPORTS} == before
    assert json.loads((output / "metrics.json").read_text())["split"] == first["split"] == "test"
    assert [path.name for path in tmp_path.iterdir()] == ["evaluation"]  # no half-written sibling
    monkeypatch.undo()
    evaluation.evaluate(keras_file, dataset, output, split="val")
    assert json.loads((output / "metrics.json").read_text())["split"] == "val"
    assert [path.name for path in tmp_path.iterdir()] == ["evaluation"]


@pytest.mark.parametrize("counts", [(17, 31), (0, 5), (40, 41), (2, 120), (300, 260)])
def test_exact_mcnemar_p_value_is_the_two_sided_binomial_test(counts):
    from scipy.stats import binomtest

    expected = binomtest(counts[0], sum(counts), 0.5).pvalue
    assert evaluation.exact_mcnemar_p_value(*counts) == pytest.approx(expected, rel=1e-9)


def test_exact_mcnemar_p_value_by_hand():
    # Five discordant images, all on one side: 2 * (1/2)**5.
    assert evaluation.exact_mcnemar_p_value(0, 5) == 0.0625
    assert evaluation.exact_mcnemar_p_value(5, 0) == 0.0625
    # An even split, or nothing to tell the models apart: no evidence.
    assert evaluation.exact_mcnemar_p_value(3, 3) == 1.0
    assert evaluation.exact_mcnemar_p_value(0, 0) == 1.0


@pytest.mark.parametrize("counts", [(-1, 2), (1.5, 2), (3, "4")])
def test_exact_mcnemar_p_value_refuses_what_is_not_a_count(counts):
    with pytest.raises(ValueError, match=re.escape(f"only_first_correct={counts[0]!r}")):
        evaluation.exact_mcnemar_p_value(*counts)


def test_compare_predictions_counts_the_images_only_one_model_gets_right():
    labels = np.array([0, 1, 2, 0, 1])
    comparison = evaluation.compare_predictions(
        labels, np.array([0, 1, 0, 0, 2]), np.array([0, 0, 2, 1, 2])
    )
    assert comparison == {
        "errors": 2,
        "other_errors": 3,
        "only_this_correct": 2,
        "only_other_correct": 1,
        # 2 * P(Binomial(3, 1/2) <= 1) = 2 * 4/8, at most 1.
        "mcnemar_p_value": 1.0,
    }
    with pytest.raises(ValueError, match="Received: 5 labels, 5 and 4 predictions"):
        evaluation.compare_predictions(labels, labels, labels[:4])


def _constant_model(num_classes, shape=(28, 28, 1)):
    """A `TrainedModel` that predicts class 0 for every image."""

    def predict(images):
        probabilities = np.zeros((len(images), num_classes), "float32")
        probabilities[:, 0] = 1.0
        return probabilities

    return evaluation.TrainedModel(
        predict=predict, input_shape=shape, num_classes=num_classes,
        provenance={"path": "constant", "format": "test"},
    )


def test_evaluate_compares_with_another_model_on_the_same_images(tmp_path, keras_file, dataset):
    metrics = evaluation.evaluate(
        keras_file, dataset, tmp_path / "eval", compare_with=_constant_model(3)
    )
    model = keras.saving.load_model(keras_file)
    predictions = model.predict(dataset.x_test / 255.0, verbose=0).argmax(-1)
    expected = evaluation.compare_predictions(
        dataset.y_test, predictions, np.zeros_like(dataset.y_test)
    )
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert written["comparison"] == metrics["comparison"] == {
        "other_model": {"path": "constant", "format": "test"}, **expected
    }
    assert expected["other_errors"] == int(np.sum(dataset.y_test != 0))
    line = evaluation.format_comparison(metrics["comparison"])
    assert line.startswith(f"Against constant: {expected['errors']} errors against ")
    with pytest.raises(ValueError, match="The model predicts 5 classes but data set 'tiny' has 3"):
        evaluation.evaluate(keras_file, dataset, tmp_path / "other", compare_with=_constant_model(5))
    assert not (tmp_path / "other").exists()


def _one_hot(predictions, num_classes=3):
    return np.eye(num_classes, dtype="float32")[predictions]


def test_error_overlap_hand_computed():
    labels = np.array([0, 1, 2, 0, 1, 2])
    first = _one_hot([0, 2, 0, 0, 1, 2])  # wrong on images 1 and 2
    second = _one_hot([1, 2, 2, 0, 1, 2])  # wrong on 0 and 1
    third = _one_hot([0, 2, 2, 0, 0, 2])  # wrong on 1 and 4
    # Averaged: image 1 is wrong in all three; images 0, 2 and 4 have two
    # right votes out of three.
    overlap = evaluation.error_overlap(labels, [first, second, third])
    assert overlap == {
        "num_images": 6,
        "errors": [2, 2, 2],
        "shared_errors": [1, 1, 1],
        "wrong_in_every_model": 1,
        "wrong_in_several": 1,
        "wrong_in_exactly_one": 3,
        "wrong_in_any": 4,
        "average_errors": 1,
    }
    text = evaluation.format_error_overlap(overlap, ["a", "b", "c"])
    assert text.splitlines()[0] == "a: 2 errors, 1 of them made by another model too"
    assert "4 wrong in at least one model, 1 in two or more, 1 in all 3, 3 in exactly one" in text
    assert text.endswith("The 3 models' averaged probabilities (an ensemble): 1 errors.")


def test_error_overlap_averages_probabilities_not_votes():
    labels = np.array([0])
    confident = np.array([[0.9, 0.1]], "float32")
    unsure = np.array([[0.4, 0.6]], "float32")
    overlap = evaluation.error_overlap(labels, [confident, unsure, unsure])
    # Two of three vote 1, but the average is (0.57, 0.43): right.
    assert overlap["errors"] == [0, 1, 1] and overlap["average_errors"] == 0


@pytest.mark.parametrize(
    "probabilities, message",
    [
        ([np.zeros((2, 3))], r"at least two models' predictions to compare\. Received: 1"),
        ([np.zeros((2, 3)), np.zeros((3, 3))], r"\(images, classes\) = \(2, 3\).*\[\(2, 3\), \(3, 3\)\]"),
        ([np.zeros((2, 3)), np.zeros((2, 4))], r"Received shapes: \[\(2, 3\), \(2, 4\)\]"),
    ],
)
def test_error_overlap_refuses_what_it_cannot_compare(probabilities, message):
    with pytest.raises(ValueError, match=message):
        evaluation.error_overlap(np.array([0, 1]), probabilities)


def test_error_overlap_refuses_labels_that_are_not_one_per_image():
    with pytest.raises(ValueError, match=r"`labels` must be a 1-D array of class ids\. Received: shape=\(2, 1\)"):
        evaluation.error_overlap(np.array([[0], [1]]), [np.zeros((2, 3)), np.zeros((2, 3))])


def test_error_overlap_script_runs_models_on_the_split_of_the_first_ones_run(tmp_path, capsys):
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "experiments" / "error_overlap.py"
    spec = importlib.util.spec_from_file_location("error_overlap_script", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    paths = []
    for seed in (0, 1):
        keras.utils.set_random_seed(seed)
        path = tmp_path / f"run{seed}" / "model.keras"
        path.parent.mkdir()
        build_model("cnn", (28, 28, 1), 10).save(path)
        paths.append(str(path))
    output = tmp_path / "overlap.json"
    # No config.json beside the models: the default data set (digits, 360 test images).
    assert module.main(["--models", *paths, "--output", str(output)]) == 0
    written = json.loads(output.read_text())
    assert written["models"] == paths and written["num_images"] == 360
    printed = capsys.readouterr().out
    assert printed.startswith(f"{paths[0]}: {written['errors'][0]} errors")
    assert f"averaged probabilities (an ensemble): {written['average_errors']} errors." in printed
    with pytest.raises(SystemExit):
        module.main(["--models", paths[0]])
    assert "--models needs at least two models" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        module.main(["--models", paths[0], str(tmp_path / "missing.keras")])
    assert f"Model not found. Received: model path='{tmp_path / 'missing.keras'}'" in (
        capsys.readouterr().err
    )


def test_errors_by_parameter_hand_computed():
    wrong = np.array([True, False, False, True, True, False])
    parameters = {
        "angle": np.array([-45.0, -10.0, 0.0, 10.0, 44.0, 45.0]),
        "scale": np.full(6, 1.0),  # one value for every image: nothing to bin
        "patch_x": np.zeros((6, 3)),  # one value per patch: not one per image
    }
    table = evaluation.errors_by_parameter(wrong, parameters, bin_count=3)
    assert list(table) == ["angle"]
    assert table["angle"] == [
        {"low": -45.0, "high": -15.0, "images": 1, "errors": 1},
        {"low": -15.0, "high": 15.0, "images": 3, "errors": 1},
        # The last bin is closed on the right: 45 is in it.
        {"low": 15.0, "high": 45.0, "images": 2, "errors": 1},
    ]


def test_errors_by_parameter_leaves_out_indices_and_per_digit_values():
    wrong = np.array([True, False, False])
    parameters = {
        "partner": np.array([2, 0, 1]),  # the other digit of a sum: an index
        "angle": np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),  # one per digit
        "position_x": np.array([0, 5, 10]),
    }
    table = evaluation.errors_by_parameter(wrong, parameters, bin_count=2)
    assert table == {"position_x": [
        {"low": 0.0, "high": 5.0, "images": 1, "errors": 1},
        {"low": 5.0, "high": 10.0, "images": 2, "errors": 0},
    ]}
    assert evaluation.errors_by_parameter(np.zeros(0, bool), {"angle": np.zeros(0)}) == {}


@pytest.mark.parametrize(
    "wrong, parameters, bin_count, message",
    [
        (np.array([0, 1]), {}, 2, "`wrong` must be a 1-D boolean array"),
        (np.zeros((2, 1), bool), {}, 2, "Received: dtype=bool, shape=(2, 1)"),
        (np.zeros(2, bool), {}, 0, "`bin_count` must be an int >= 1. Received: bin_count=0"),
        (np.zeros(3, bool), {"angle": np.arange(4.0)}, 2,
         "Parameter 'angle' must have one entry per image. Received: len(wrong)=3, angle.shape=(4,)"),
        (np.zeros(3, bool), {"scale": np.float64(1.0)}, 2, "scale.shape=()"),
    ],
)
def test_errors_by_parameter_refuses_bad_input(wrong, parameters, bin_count, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        evaluation.errors_by_parameter(wrong, parameters, bin_count)


def test_centred_on_canvas_puts_the_image_in_the_middle():
    images = np.arange(1, 7, dtype="uint8").reshape(1, 2, 3, 1)
    canvas = evaluation.centred_on_canvas(images, (5, 6))
    assert canvas.shape == (1, 5, 6, 1) and canvas.dtype == np.uint8
    # Margins of 3 rows and 3 columns: 1 above, 2 below; 1 left, 2 right.
    np.testing.assert_array_equal(canvas[0, 1:3, 1:4], images[0])
    assert canvas.sum() == images.sum()
    with pytest.raises(ValueError, match=re.escape("no larger than the 2x2 canvas. Received: shape=(1, 2, 3, 1)")):
        evaluation.centred_on_canvas(images, (2, 2))
    with pytest.raises(ValueError, match="must be an NHWC batch"):
        evaluation.centred_on_canvas(images[0], (5, 6))
    np.testing.assert_array_equal(evaluation.centred_on_canvas(images, 4)[0, 1:3, 0:3], images[0])
    with pytest.raises(ValueError, match="`canvas_size` must be"):
        evaluation.centred_on_canvas(images, (5, 0))


def test_undistorted_errors_counts_the_errors_shared_with_the_distorted_images():
    wrong = np.array([True, True, False, False])
    assert evaluation.undistorted_errors(wrong, np.array([True, False, True, False])) == {
        "errors": 2, "also_wrong_distorted": 1,
    }
    with pytest.raises(ValueError, match=re.escape("Received: len(wrong)=4, len(undistorted_wrong)=3")):
        evaluation.undistorted_errors(wrong, wrong[:3])
    with pytest.raises(ValueError, match=re.escape("`undistorted_wrong` must be a 1-D boolean array")):
        evaluation.undistorted_errors(wrong, wrong.astype(float))


def test_an_empty_bin_reads_n_a():
    breakdown = {"by_parameter": {"angle": [
        {"low": -1.0, "high": 0.0, "images": 0, "errors": 0},
        {"low": 0.0, "high": 1.0, "images": 4, "errors": 1},
    ]}, "undistorted": None}
    assert evaluation.format_error_breakdown(breakdown, 1).splitlines() == [
        "Errors by angle:",
        "     -1.000 to     0.000      0 of      0      n/a",
        "      0.000 to     1.000      1 of      4   25.00%",
    ]


def _recording_model(num_classes, shape):
    """A `TrainedModel` predicting class 0, keeping every batch it is given."""
    seen = []
    model = _constant_model(num_classes, shape)

    def predict(images):
        seen.append(np.asarray(images))
        return model.predict(images)

    return dataclasses.replace(model, predict=predict), seen


def test_evaluate_breaks_the_errors_of_a_distorted_split_down(tmp_path):
    from stn_keras.data import as_float_images
    from stn_keras.data import load_dataset

    distorted = load_dataset("digits", distortion="rts", val_size=20)
    model, seen = _recording_model(10, distorted.image_shape)
    metrics = evaluation.evaluate(model, distorted, tmp_path / "eval")
    labels = distorted.y_test
    errors = int(np.sum(labels != 0))
    breakdown = json.loads((tmp_path / "eval" / "metrics.json").read_text())["distortion_breakdown"]
    assert breakdown == metrics["distortion_breakdown"]
    assert list(breakdown["by_parameter"]) == ["angle", "scale", "position_x", "position_y"]
    angles = distorted.split_distortion("test")["angle"]
    for rows in breakdown["by_parameter"].values():
        assert sum(row["images"] for row in rows) == len(labels)
        assert sum(row["errors"] for row in rows) == errors
    assert breakdown["by_parameter"]["angle"][0]["low"] == pytest.approx(angles.min())
    # The control ran on the same digits undistorted, centred on the canvas.
    undistorted, _ = distorted.undistorted_split("test")
    np.testing.assert_array_equal(
        seen[1], as_float_images(evaluation.centred_on_canvas(undistorted, (42, 42)))
    )
    assert breakdown["undistorted"] == {"errors": errors, "also_wrong_distorted": errors}
    text = evaluation.format_report(metrics, distorted.class_names)
    assert "\nErrors by angle:\n" in text
    assert text.endswith(
        f"The same digits undistorted, centred on the canvas: {errors} errors, "
        f"{errors} of them among the {errors} errors on the distorted images"
    )


def test_evaluate_without_an_undistorted_control_where_the_digits_do_not_fit(tmp_path):
    from stn_keras.data import load_dataset

    # Addition stacks two digits in channels: one digit is not an input.
    summed = load_dataset("digits", distortion="addition", canvas_size=30, val_size=20)
    model, seen = _recording_model(19, summed.image_shape)
    # Its parameters are one per digit, and `partner` an index: nothing to show.
    assert "distortion_breakdown" not in evaluation.evaluate(model, summed, tmp_path / "sum")
    assert len(seen) == 1
    cluttered = load_dataset("digits", distortion="cluttered", val_size=20)
    model, seen = _recording_model(10, cluttered.image_shape)
    breakdown = evaluation.evaluate(model, cluttered, tmp_path / "clutter")["distortion_breakdown"]
    assert list(breakdown["by_parameter"]) == ["position_x", "position_y"]
    assert breakdown["undistorted"]["errors"] == int(np.sum(cluttered.y_test != 0))


def test_evaluate_of_an_undistorted_data_set_has_no_breakdown(tmp_path, dataset):
    metrics = evaluation.evaluate(_constant_model(3), dataset, tmp_path / "eval")
    assert "distortion_breakdown" not in metrics
    assert "Errors by" not in evaluation.format_report(metrics, dataset.class_names)
    # A hand-built distorted data set records no parameters: no breakdown.
    hand_built = tiny_distorted_dataset()
    metrics = evaluation.evaluate(
        _constant_model(3, hand_built.image_shape), hand_built, tmp_path / "hand"
    )
    assert "distortion_breakdown" not in metrics
