"""Tests of stn_keras.pretrained and predict.py: loading by name or path, the
same probabilities as the SavedModel's predict_bytes, every kind of input,
bad files named and the others still answered."""

import io
import json
import os

import numpy as np
import pytest

from serving_helpers import CLASS_NAMES
from serving_helpers import build_st_cnn
from serving_helpers import encode_image

ROOT = os.path.join(os.path.dirname(__file__), "..")
SHIPPED = ("cluttered_mnist_st_cnn", "gtsrb_st_cnn", "rts_mnist_st_cnn")


def pixels(height, width, channels, seed):
    shape = (height, width) if channels == 1 else (height, width, channels)
    return (np.random.RandomState(seed).rand(*shape) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A saved_models/-style folder of the tiny ST-CNN (28x28x1, three classes)."""
    directory = tmp_path_factory.mktemp("pretrained") / "tiny_st_cnn"
    directory.mkdir()
    build_st_cnn().save(directory / "model.keras")
    (directory / "config.json").write_text(
        json.dumps({"config": {"dataset": "mnist"}, "class_names": CLASS_NAMES})
    )
    return directory


@pytest.fixture(scope="module")
def classifier(run_dir):
    from stn_keras import pretrained

    return pretrained.load(run_dir)


@pytest.fixture(scope="module")
def encoded():
    """The same kinds of files predict_bytes takes, of other sizes than the model's."""
    return [
        encode_image(pixels(40, 31, 3, seed=1), "PNG"),
        encode_image(pixels(17, 22, 1, seed=2), "JPEG"),
        encode_image(pixels(28, 28, 3, seed=3), "BMP"),
        encode_image(pixels(50, 60, 1, seed=4), "PPM"),
    ]


def test_available_models_are_the_shipped_folders():
    from stn_keras import pretrained

    assert set(SHIPPED) <= set(pretrained.available_models())
    assert pretrained.saved_models_directory().samefile(os.path.join(ROOT, "saved_models"))


def test_unknown_name_lists_the_available_models():
    from stn_keras import pretrained

    with pytest.raises(ValueError) as raised:
        pretrained.load("no_such_model")
    message = str(raised.value)
    assert message.startswith("Unknown model 'no_such_model': no such file or folder")
    assert "(available: " + ", ".join(pretrained.available_models()) + ")." in message


def test_loads_by_name_offline():
    from stn_keras import pretrained

    classifier = pretrained.load("rts_mnist_st_cnn")
    assert classifier.input_shape == (42, 42, 1)
    assert classifier.class_names == [str(digit) for digit in range(10)]
    assert classifier.model is not None


@pytest.mark.tensorflow_only
def test_probabilities_equal_predict_bytes_on_the_same_bytes(tmp_path, run_dir, classifier, encoded):
    import tensorflow as tf

    from stn_keras import pretrained
    from stn_keras.export import export_model

    export_dir, _ = export_model(run_dir, "saved_model", tmp_path / "saved_model")
    answer = tf.saved_model.load(str(export_dir)).signatures["predict_bytes"](
        image_bytes=tf.constant(encoded)
    )
    expected = answer["probabilities"].numpy()
    # The same decoding and model; only Keras' eager call vs the traced graph differ.
    np.testing.assert_allclose(classifier.predict_probabilities(encoded), expected, atol=1e-6)
    results = classifier.predict(encoded, top_k=2)
    assert [result["class_id"] for result in results] == answer["class_ids"].numpy().tolist()
    assert [result["class_name"].encode() for result in results] == answer["class_names"].numpy().tolist()
    # Loaded from the SavedModel itself: its class names and decoding options.
    from_export = pretrained.load(export_dir)
    assert from_export.model is None and from_export.class_names == CLASS_NAMES
    np.testing.assert_allclose(from_export.predict_probabilities(encoded), expected, atol=1e-6)


def test_every_kind_of_input_gives_the_same_answer(tmp_path, classifier):
    from PIL import Image

    image = pixels(35, 23, 3, seed=7)
    png = encode_image(image, "PNG")
    path = tmp_path / "image.png"
    path.write_bytes(png)
    inputs = [str(path), path, png, Image.fromarray(image), image]
    probabilities = classifier.predict_probabilities(inputs)
    for row in probabilities[1:]:
        np.testing.assert_array_equal(row, probabilities[0])
    # A float array of the model's input shape is the model input itself.
    batch = classifier.preprocess([png])
    assert batch.shape == (1, 28, 28, 1) and batch.dtype == np.float32
    np.testing.assert_allclose(classifier.predict_probabilities([batch[0]]), probabilities[:1], atol=1e-6)
    np.testing.assert_allclose(
        classifier.predict_probabilities(batch[:1]),
        classifier.model.predict(batch, verbose=0), atol=1e-6,
    )


def test_predict_ranks_classes_by_probability(classifier, encoded):
    probabilities = classifier.predict_probabilities(encoded[:1])[0]
    (result,) = classifier.predict(encoded[:1], top_k=3)
    order = np.argsort(-probabilities)
    assert [entry["class_id"] for entry in result["top_k"]] == order.tolist()
    assert [entry["class_name"] for entry in result["top_k"]] == [CLASS_NAMES[i] for i in order]
    assert result["class_id"] == order[0] and result["class_name"] == CLASS_NAMES[order[0]]
    assert result["probability"] == pytest.approx(float(probabilities[order[0]]))
    assert len(classifier.predict(encoded[:1], top_k=1)[0]["top_k"]) == 1


@pytest.mark.parametrize("top_k", [0, -1, True, 2.0])
def test_bad_top_k_is_refused(classifier, encoded, top_k):
    with pytest.raises(ValueError, match=rf"`top_k` must be an int >= 1. Received: top_k={top_k!r}"):
        classifier.predict(encoded[:1], top_k=top_k)


@pytest.mark.parametrize(
    "image, message",
    [
        (b"not an image", "Cannot decode image 1 (bytes): Unsupported image format: the file is none of PNG, JPEG, GIF, BMP, WebP and binary PPM (P6) / PGM (P5) (read from its first bytes); send one of those."),
        (b"P6\n10 10\n255\nabc", "Cannot decode image 1 (bytes): Truncated PPM/PGM: the raster is shorter"),
        (np.zeros((5, 5, 2), np.uint8), "Cannot use image 1 (ndarray): a numpy array must be uint8 pixels"),
        (np.zeros((9, 9), np.float32), "Cannot use image 1 (ndarray): a numpy array must be uint8 pixels"),
        (3, "Cannot use image 1 (int): expected a file path, encoded image bytes, a PIL image"),
    ],
)
def test_a_bad_image_is_named_and_the_others_answered(classifier, encoded, image, message):
    answers = classifier.predict_each([encoded[0], image, encoded[1]])
    (first, no_error), (missing, error), (last, _) = answers
    assert no_error is None and missing is None and error.startswith(message)
    assert first == classifier.predict(encoded[:1])[0]
    assert last == classifier.predict(encoded[1:2])[0]


def test_decoder_error_message_keeps_the_decoders_words():
    from stn_keras.pretrained.image_inputs import decoder_error_message

    framed = (
        "in user code:\n\n    File \"x.py\", line 1, in decode  *\n\n"
        "    InvalidArgumentError: {{function_node __wrapped__DecodeImage_device_/job:"
        "localhost/replica:0/task:0/device:CPU:0}} Invalid PNG data, size 200 [Op:DecodeImage] name: \n"
    )
    assert decoder_error_message(framed) == "Invalid PNG data, size 200"
    asserted = (
        "InvalidArgumentError: Expected 'tf.Tensor(False, shape=(), dtype=bool)' to be true. "
        "Summarized data: b'The image declares 9 x 9 pixels; send a smaller image.'"
    )
    assert decoder_error_message(asserted) == "The image declares 9 x 9 pixels; send a smaller image."
    assert decoder_error_message("plain message\n") == "plain message"


def test_transform_returns_each_transformers_output_and_theta(classifier, encoded):
    (view,) = classifier.transform(encoded)
    assert view.transform == "affine"
    assert view.theta.shape == (len(encoded), 6)
    assert view.images.shape[0] == len(encoded)
    assert not np.allclose(view.theta, [1, 0, 0, 0, 1, 0], atol=1e-3)


def run_predict(capsys, *arguments):
    """predict.py's main in this process: ``(exit status, stdout, stderr)``."""
    import predict

    try:
        status = predict.main(list(arguments))
    except SystemExit as exit:
        status = exit.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_predict_cli_answers_good_files_and_names_bad_ones(tmp_path, capsys, run_dir, classifier, encoded):
    good = tmp_path / "good.png"
    good.write_bytes(encoded[0])
    other = tmp_path / "other.jpg"
    other.write_bytes(encoded[1])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    figure = tmp_path / "where.png"
    status, out, err = run_predict(
        capsys, "--model", str(run_dir), "--json", "--top-k", "2", "--show-transform", str(figure),
        str(good), str(broken), str(other), str(tmp_path / "missing.png"),
    )
    assert status == 1
    records = json.loads(out)
    expected = classifier.predict(encoded[:2], top_k=2)
    assert [record["file"] for record in records] == [str(good), str(other)]
    for record, answer in zip(records, expected):
        assert set(record) == {"file", "class_id", "class_name", "probability", "top_k"}
        assert record["class_id"] == answer["class_id"]
        assert record["probability"] == pytest.approx(answer["probability"], abs=1e-6)
        assert [entry["class_name"] for entry in record["top_k"]] == [
            entry["class_name"] for entry in answer["top_k"]
        ]
    errors = [line for line in err.splitlines() if line.startswith("predict.py: error:")]
    assert errors == [
        f"predict.py: error: Cannot decode '{broken}': Unsupported image format: the file "
        "is none of PNG, JPEG, GIF, BMP, WebP and binary PPM (P6) / PGM (P5) (read from its "
        "first bytes); send one of those.",
        f"predict.py: error: Cannot use '{tmp_path / 'missing.png'}': cannot read the file "
        "(No such file or directory)",
    ]
    assert figure.read_bytes().startswith(b"\x89PNG")


def test_predict_cli_prints_the_ranked_classes(tmp_path, capsys, run_dir, classifier, encoded):
    good = tmp_path / "good.bmp"
    good.write_bytes(encoded[2])
    status, out, err = run_predict(
        capsys, "--model", str(run_dir / "model.keras"), "--top-k", "3", str(good)
    )
    assert status == 0, err
    (answer,) = classifier.predict(encoded[2:3], top_k=3)
    lines = out.splitlines()
    assert lines[0] == f"{good}: {answer['class_name']} ({100 * answer['probability']:.2f}%)"
    assert [line.split()[-1] for line in lines[1:]] == [e["class_name"] for e in answer["top_k"]]


def test_predict_cli_refuses_an_unknown_model(capsys):
    status, _, err = run_predict(capsys, "--model", "no_such_model", "image.png")
    assert status == 2
    assert err.startswith("predict.py: error: Unknown model 'no_such_model'")


@pytest.mark.real_data
def test_shipped_gtsrb_model_names_a_real_sign(tmp_path, data_dir):
    """A validation sign of class 14 (Stop), saved at another size as PNG."""
    from PIL import Image

    from stn_keras import pretrained
    from stn_keras.run_dir import RunDirectory
    from stn_keras.settings import data_settings
    from stn_keras.settings import load_data

    classifier = pretrained.load("gtsrb_st_cnn")
    settings = data_settings(RunDirectory(classifier.source).read_config())
    settings["data_dir"] = data_dir
    images, labels = load_data(settings).split("val")
    stops = images[labels == 14][:5]
    files = []
    for index, image in enumerate(stops):
        buffer = io.BytesIO()
        Image.fromarray(image).resize((61, 57)).save(buffer, format="PNG")
        files.append(buffer.getvalue())
    names = [result["class_name"] for result in classifier.predict(files)]
    assert names.count("Stop") >= 4, names


def test_predict_cli_refuses_a_bad_top_k(capsys):
    status, _, err = run_predict(capsys, "--model", "gtsrb_st_cnn", "--top-k", "0", "image.png")
    assert status == 2
    assert "predict.py: error: --top-k must be >= 1. Received: 0" in err
