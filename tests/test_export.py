"""Tests of stn_keras.export: signatures, equality with model.predict, in-graph
decoding, image size limits read from headers, atomic export."""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from conftest import random_images
from serving_helpers import CLASS_NAMES
from serving_helpers import animated_gif
from serving_helpers import build_cnn
from serving_helpers import build_st_cnn
from serving_helpers import encode_image
from serving_helpers import oversized_image
from serving_helpers import png_bomb

pytestmark = pytest.mark.tensorflow_only

# float32 results of the same graph on the same inputs, batched differently.
ATOL = 1e-6
# Sampled pixels: the SavedModel runs the sampler as plain ops, Keras' predict
# as compiled stages, whose pixel coordinates (up to ~28 here) round
# differently by an ulp, about 2e-6.
SAMPLED_ATOL = 1e-5


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from stn_keras.export import export_saved_model

    model = build_st_cnn()
    export_dir = str(tmp_path_factory.mktemp("export") / "st_cnn" / "1")
    signatures = export_saved_model(model, export_dir, class_names=CLASS_NAMES)
    return model, export_dir, signatures


@pytest.fixture(scope="module")
def loaded(exported):
    import tensorflow as tf

    return tf.saved_model.load(exported[1])


def test_saved_model_cli_lists_the_signatures(exported):
    model, export_dir, signatures = exported
    assert signatures == ["serving_default", "predict_bytes", "spatial_transforms"]
    command = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run(
        [command, "show", "--dir", export_dir, "--all"],
        capture_output=True, text=True, check=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    ).stdout
    for expected in (
        "signature_def['serving_default']",
        "inputs['images'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 28, 28, 1)",
        "outputs['probabilities'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 3)",
        "signature_def['predict_bytes']",
        "inputs['image_bytes'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1)",
        "outputs['class_names'] tensor_info:\n        dtype: DT_STRING",
        "outputs['class_ids'] tensor_info:\n        dtype: DT_INT64",
        "signature_def['spatial_transforms']",
        "outputs['spatial_transformer_theta'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 6)",
        "outputs['spatial_transformer_images'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 28, 28, 1)",
        "Method name is: tensorflow/serving/predict",
    ):
        assert expected in shown


@pytest.mark.parametrize("batch_size", [1, 5])
def test_serving_default_equals_predict_after_reload(exported, loaded, batch_size):
    import tensorflow as tf

    model, export_dir, _ = exported
    images = random_images((batch_size, 28, 28, 1), seed=batch_size)
    expected = model.predict(images, verbose=0)
    signature = loaded.signatures["serving_default"]
    np.testing.assert_allclose(
        signature(images=tf.constant(images))["probabilities"].numpy(), expected, atol=ATOL
    )
    layer = keras.layers.TFSMLayer(export_dir, call_endpoint="serving_default")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(images)["probabilities"]), expected, atol=ATOL
    )


def test_spatial_transforms_return_theta_and_images(exported, loaded):
    import tensorflow as tf

    model, _, _ = exported
    images = random_images((4, 28, 28, 1), seed=7)
    transformer = model.get_layer("spatial_transformer")
    expected_images, expected_theta = keras.Model(model.inputs, transformer.output).predict(
        images, verbose=0
    )
    outputs = loaded.signatures["spatial_transforms"](images=tf.constant(images))
    np.testing.assert_allclose(outputs["spatial_transformer_theta"].numpy(), expected_theta, atol=ATOL)
    np.testing.assert_allclose(outputs["spatial_transformer_images"].numpy(), expected_images, atol=SAMPLED_ATOL)
    # The weights make theta depend on the image, so this is no identity.
    assert np.abs(expected_theta - [1, 0, 0, 0, 1, 0]).max() > 1e-3


def test_nested_transformer_without_theta_output_is_found(tmp_path):
    import tensorflow as tf

    from stn_keras.export import export_saved_model

    model = build_st_cnn(nested=True)
    signatures = export_saved_model(model, tmp_path / "1")
    assert "spatial_transforms" in signatures
    images = random_images((3, 28, 28, 1), seed=3)
    block = model.get_layer("transformer_block")
    transformer = block.get_layer("spatial_transformer")
    # Reference: the same transformer asked for theta on its own input.
    transformer.return_theta = True
    expected_images, expected_theta = transformer(images * 0.5 + 0.25)
    transformer.return_theta = False
    outputs = tf.saved_model.load(str(tmp_path / "1")).signatures["spatial_transforms"](
        images=tf.constant(images)
    )
    np.testing.assert_allclose(outputs["spatial_transformer_theta"].numpy(), expected_theta, atol=ATOL)
    np.testing.assert_allclose(outputs["spatial_transformer_images"].numpy(), expected_images, atol=SAMPLED_ATOL)
    np.testing.assert_allclose(
        tf.saved_model.load(str(tmp_path / "1")).signatures["serving_default"](
            images=tf.constant(images)
        )["probabilities"].numpy(),
        model.predict(images, verbose=0),
        atol=ATOL,
    )


def reference_image(encoded, size, channels):
    """Decoding, grey conversion and bilinear resize in PIL and numpy."""
    from PIL import Image

    image = Image.open(__import__("io").BytesIO(encoded))
    image = image.convert("L" if image.mode in ("L", "LA") else "RGB")
    pixels = np.asarray(image).astype("float32") / 255.0
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if channels == 1 and pixels.shape[-1] == 3:
        pixels = pixels @ np.array([[0.2989], [0.5870], [0.1140]], "float32")
    if channels == 3 and pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    # PIL's bilinear filter on float images: half-pixel centres, clamped edges
    # when enlarging, a triangle filter over the footprint when shrinking
    # (tf.image.resize's antialias=True).
    planes = [
        np.asarray(Image.fromarray(pixels[..., c], mode="F").resize(size[::-1], Image.BILINEAR))
        for c in range(channels)
    ]
    return np.stack(planes, axis=-1)


@pytest.mark.parametrize(
    "image_format, shape, tolerance",
    [
        ("PNG", (20, 13, 3), 1e-5),
        ("PNG", (28, 28), 1e-6),
        ("PNG", (12, 16, 4), 1e-5),
        ("PNG", (15, 11, 2), 1e-5),
        ("BMP", (17, 21, 3), 1e-5),
        ("GIF", (19, 24), 1e-5),
        ("PPM", (22, 9, 3), 1e-5),
        ("PPM", (25, 14), 1e-5),
        # JPEG decoders differ in inverse-DCT rounding and chroma upsampling:
        # a few levels on single pixels of this noise image, under one on average.
        ("JPEG", (24, 20, 3), 6 / 255),
    ],
)
def test_decode_image_matches_pil_and_numpy(image_format, shape, tolerance):
    from stn_keras.export import decode_image

    pixels = (np.random.RandomState(sum(shape)).rand(*shape) * 255).astype(np.uint8)
    encoded = encode_image(pixels, image_format)
    for channels in (1, 3):
        decoded = decode_image(encoded, (28, 28), channels).numpy()
        reference = reference_image(encoded, (28, 28), channels)
        np.testing.assert_allclose(decoded, reference, atol=tolerance)
        assert np.abs(decoded - reference).mean() < min(tolerance, 1 / 255)


def test_decode_image_shrinks_like_pil_with_antialias_only():
    from stn_keras.export import decode_image

    pixels = (np.random.RandomState(5).rand(61, 47, 3) * 255).astype(np.uint8)
    encoded = encode_image(pixels, "PNG")
    reference = reference_image(encoded, (28, 28), 3)
    np.testing.assert_allclose(decode_image(encoded, (28, 28), 3).numpy(), reference, atol=1e-5)
    # Without antialiasing, shrinking samples the image instead of averaging.
    assert np.abs(decode_image(encoded, (28, 28), 3, antialias=False).numpy() - reference).max() > 0.05


def test_decode_netpbm_reads_16_bit_samples_and_comments():
    from stn_keras.export import decode_netpbm

    samples = np.array([[0, 1000], [40000, 65535]], dtype=">u2")
    encoded = b"P5 # grey\n2\t# width\n2\n# maxval follows\n65535\n" + samples.tobytes()
    np.testing.assert_allclose(
        decode_netpbm(encoded).numpy()[..., 0], samples.astype("float32") / 65535.0, atol=1e-7
    )


@pytest.mark.parametrize(
    "encoded, message",
    [
        (b"P6\n4 4\n255\n" + bytes(47), "Truncated PPM/PGM"),
        (b"P6\nfour 4\n255\n" + bytes(48), "Invalid PPM/PGM header"),
        (b"P5\n2 2\n0\n" + bytes(4), "maxval must be in [1, 65535]"),
    ],
)
def test_decode_netpbm_refuses_bad_files(encoded, message):
    import tensorflow as tf

    from stn_keras.export import decode_netpbm

    with pytest.raises(tf.errors.InvalidArgumentError, match=message.replace("[", r"\[")):
        decode_netpbm(encoded)


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "PPM"])
def test_bytes_signature_matches_model_on_reference_images(exported, loaded, image_format):
    import tensorflow as tf

    model, _, _ = exported
    encoded = [
        encode_image((np.random.RandomState(seed).rand(*shape) * 255).astype(np.uint8), image_format)
        # Enlarging, same size, shrinking, and both at once.
        for seed, shape in ((1, (20, 13, 3)), (2, (28, 28, 3)), (3, (40, 33, 3)), (4, (14, 50, 3)))
    ]
    references = np.stack([reference_image(data, (28, 28), 1) for data in encoded])
    outputs = loaded.signatures["predict_bytes"](image_bytes=tf.constant(encoded))
    expected = model.predict(references, verbose=0)
    tolerance = 1e-3 if image_format == "JPEG" else 1e-5
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=tolerance)
    class_ids = outputs["class_ids"].numpy()
    np.testing.assert_array_equal(class_ids, expected.argmax(axis=-1))
    assert [name.decode() for name in outputs["class_names"].numpy()] == [
        CLASS_NAMES[index] for index in class_ids
    ]


def test_bytes_signature_refuses_undecodable_bytes(loaded):
    import tensorflow as tf

    from stn_keras.export.image_headers import UNSUPPORTED_FORMAT_ERROR

    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        loaded.signatures["predict_bytes"](image_bytes=tf.constant([b"not an image"]))
    assert UNSUPPORTED_FORMAT_ERROR in error.value.message
    assert "none of PNG, JPEG, GIF, BMP, WebP and binary PPM (P6) / PGM (P5)" in UNSUPPORTED_FORMAT_ERROR


def test_model_without_transformer_has_no_transform_signature(tmp_path):
    import tensorflow as tf

    from stn_keras.export import export_saved_model

    model = build_cnn()
    assert export_saved_model(model, tmp_path / "1") == ["serving_default", "predict_bytes"]
    outputs = tf.saved_model.load(str(tmp_path / "1")).signatures["predict_bytes"](
        image_bytes=tf.constant([encode_image(np.zeros((16, 16), np.uint8), "PNG")])
    )
    # Default class names are the class indices.
    assert outputs["class_names"].numpy()[0].decode() == str(outputs["class_ids"].numpy()[0])


def test_input_range_maps_decoded_images(tmp_path):
    import tensorflow as tf

    from stn_keras.export import export_saved_model

    model = build_cnn(input_shape=(8, 8, 1))
    export_saved_model(model, tmp_path / "1", input_range=(-1.0, 1.0))
    pixels = (np.random.RandomState(0).rand(8, 8) * 255).astype(np.uint8)
    outputs = tf.saved_model.load(str(tmp_path / "1")).signatures["predict_bytes"](
        image_bytes=tf.constant([encode_image(pixels, "PNG")])
    )
    expected = model.predict((pixels[None, ..., None] / 255.0 * 2.0 - 1.0).astype("float32"), verbose=0)
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=1e-5)


def test_two_channel_model_exports_without_bytes_signature(tmp_path, caplog):
    from stn_keras.export import export_saved_model

    model = build_cnn(input_shape=(8, 8, 2))
    assert export_saved_model(model, tmp_path / "1") == ["serving_default"]
    assert "takes 2 channels" in caplog.text


def test_signature_functions_run_eagerly_as_the_saved_model_serves(exported, loaded):
    import json

    import tensorflow as tf

    from stn_keras.export import signatures
    from stn_keras.export.names import EXPORT_METADATA
    from stn_keras.models.introspection import spatial_transformer_layers
    from stn_keras.models.introspection import transformer_model

    model, export_dir, _ = exported
    options = json.loads((Path(export_dir) / EXPORT_METADATA).read_text())
    encoded = tf.constant([
        encode_image((np.random.RandomState(seed).rand(*shape) * 255).astype(np.uint8), "PNG")
        for seed, shape in ((5, (30, 20, 3)), (6, (28, 28)))
    ])
    images = tf.constant(random_images((2, 28, 28, 1), seed=5))
    transforms = transformer_model(model)
    transformers = spatial_transformer_layers(model)
    for eager, served in (
        (
            signatures.predict_bytes(model, 0, options, encoded),
            loaded.signatures["predict_bytes"](image_bytes=encoded),
        ),
        (
            signatures.spatial_transforms(transforms, transformers, images),
            loaded.signatures["spatial_transforms"](images=images),
        ),
        (signatures.serving_default(model, 0, images), loaded.signatures["serving_default"](images=images)),
    ):
        assert sorted(eager) == sorted(served)
        for name, value in served.items():
            if value.dtype in (tf.string, tf.int64):
                np.testing.assert_array_equal(eager[name].numpy(), value.numpy())
            else:
                np.testing.assert_allclose(eager[name].numpy(), value.numpy(), atol=SAMPLED_ATOL)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"class_names": ["a", "b"]}, "`class_names` must be 3 strings"),
        ({"input_range": (1.0, 0.0)}, "`input_range` must be two numbers"),
        ({"resize_method": "cubic"}, "Unknown resize_method"),
        ({"probabilities_output": 2}, "`probabilities_output` must be an int in [0, 0]"),
        ({"probabilities_output": "theta"}, "Unknown output name. Expected one of"),
        ({"max_image_pixels": 0}, "`max_image_pixels` must be an int >= 1"),
        ({"antialias": "yes"}, "`antialias` must be a bool"),
    ],
)
def test_bad_arguments_are_refused(tmp_path, arguments, message):
    from stn_keras.export import export_saved_model

    with pytest.raises(ValueError, match=__import__("re").escape(message)):
        export_saved_model(build_cnn(num_classes=3), tmp_path / "1", **arguments)


@pytest.mark.parametrize("probabilities_output", [1, "probabilities"])
def test_multi_output_model_exports_the_named_probabilities(tmp_path, probabilities_output):
    import tensorflow as tf

    from stn_keras.export import export_saved_model

    st_cnn = build_st_cnn()
    transformer = st_cnn.get_layer("spatial_transformer")
    probabilities = keras.layers.Identity(name="probabilities")(st_cnn.outputs[0])
    model = keras.Model(st_cnn.inputs, [transformer.output[1], probabilities])
    export_saved_model(model, tmp_path / "1", probabilities_output=probabilities_output)
    images = random_images((2, 28, 28, 1), seed=21)
    outputs = tf.saved_model.load(str(tmp_path / "1")).signatures["serving_default"](
        images=tf.constant(images)
    )
    np.testing.assert_allclose(outputs["probabilities"].numpy(), model.predict(images, verbose=0)[1], atol=ATOL)


def test_model_with_two_inputs_is_refused(tmp_path):
    from stn_keras.export import export_saved_model

    first, second = keras.Input((4, 4, 1)), keras.Input((4, 4, 1))
    model = keras.Model([first, second], keras.layers.Add()([first, second]))
    with pytest.raises(ValueError, match="exactly one image input"):
        export_saved_model(model, tmp_path / "1")


@pytest.fixture(scope="module")
def bombs():
    """Images declaring over 16777216 pixels, with the size in the expected message."""
    return {
        "PNG": (png_bomb(), "20000 x 20000 pixels (height x width) and 1 frame(s)"),
        "JPEG": (oversized_image("JPEG", 5000, 4000), "5000 x 4000 pixels"),
        "GIF": (oversized_image("GIF", 30000, 700), "30000 x 700 pixels"),
        "BMP": (oversized_image("BMP", 20000, 20000), "20000 x 20000 pixels"),
        "PPM": (oversized_image("PPM", 1, 2**31 + 5), "1 x 2147483653 pixels"),
    }


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "GIF", "BMP", "PPM"])
def test_bytes_signature_refuses_bombs_before_decoding(loaded, bombs, image_format):
    import tensorflow as tf

    encoded, declared = bombs[image_format]
    good = encode_image(np.zeros((28, 28), np.uint8), "PNG")
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        loaded.signatures["predict_bytes"](image_bytes=tf.constant([good, encoded]))
    assert f"The image declares {declared}" in error.value.message
    assert "over the limit of 16777216 decoded pixels per image (max_image_pixels" in error.value.message


def declared_sizes(encoded):
    from stn_keras.export.image_headers import declared_size
    from stn_keras.export.image_headers import read_declared_size

    return read_declared_size(encoded), tuple(declared_size(encoded).numpy().tolist())


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "GIF", "BMP", "PPM"])
def test_python_and_graph_read_the_same_header_sizes(image_format):
    pixels = (np.random.RandomState(2).rand(21, 17, 3) * 255).astype(np.uint8)
    encoded = encode_image(pixels[..., 0] if image_format == "GIF" else pixels, image_format)
    assert declared_sizes(encoded) == ((21, 17, 1), (21, 17, 1))
    assert declared_sizes(png_bomb(300, 200)) == ((300, 200, 1), (300, 200, 1))
    if image_format != "PNG":
        big = oversized_image(image_format, 40000, 30000)
        assert declared_sizes(big) == ((40000, 30000, 1), (40000, 30000, 1))


def test_gif_frames_count_against_the_limit(tmp_path):
    import tensorflow as tf

    from stn_keras.export import decode_image

    encoded = animated_gif(frames=5, shape=(12, 10))
    assert declared_sizes(encoded) == ((12, 10, 5), (12, 10, 5))
    # 5 frames of 120 pixels: within 600, over 599.
    assert decode_image(encoded, (8, 8), 1, max_image_pixels=600).shape == (8, 8, 1)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"12 x 10 pixels \(height x width\) and 5 frame\(s\), over the limit of 599"):
        decode_image(encoded, (8, 8), 1, max_image_pixels=599)


@pytest.mark.parametrize("encoded", [b"", b"x", b"\x89PNG", b"GIF8", b"BM", b"not an image"])
def test_unknown_or_truncated_headers_declare_no_pixels(encoded):
    python_size, graph_size = declared_sizes(encoded)
    assert python_size is None
    # Left to the decoder, which refuses them.
    assert np.prod(graph_size) == 0


def test_malformed_netpbm_header_is_refused_by_the_size_check():
    import tensorflow as tf

    from stn_keras.export.image_headers import read_declared_size

    assert read_declared_size(b"P6 12") is None
    with pytest.raises(tf.errors.InvalidArgumentError, match="Invalid PPM/PGM header"):
        declared_sizes(b"P6 12")


def test_max_image_pixels_is_an_export_option_recorded_in_the_metadata(tmp_path):
    import json

    import tensorflow as tf

    from stn_keras.export import EXPORT_METADATA
    from stn_keras.export import export_saved_model

    export_saved_model(build_cnn(input_shape=(8, 8, 1)), tmp_path / "1", max_image_pixels=300)
    options = json.loads((tmp_path / "1" / EXPORT_METADATA).read_text())
    assert options["max_image_pixels"] == 300
    assert options["class_names"] == ["0", "1", "2", "3"]
    predict_bytes = tf.saved_model.load(str(tmp_path / "1")).signatures["predict_bytes"]
    small = encode_image(np.zeros((20, 15), np.uint8), "PNG")
    assert predict_bytes(image_bytes=tf.constant([small]))["class_ids"].shape == (1,)
    with pytest.raises(tf.errors.InvalidArgumentError, match="20 x 16 pixels .* over the limit of 300"):
        predict_bytes(image_bytes=tf.constant([encode_image(np.zeros((20, 16), np.uint8), "PNG")]))


# Exports a model into the directory given as argv[1], killed with SIGKILL once
# the SavedModel's graph and variables are written, before its metadata.
INTERRUPTED_EXPORT = """
import os, signal, sys
sys.path.insert(0, "tests")
from serving_helpers import build_cnn
from stn_keras.export import export_saved_model
from stn_keras.export import signatures

def die(*arguments):
    os.kill(os.getpid(), signal.SIGKILL)

signatures._write_json = die
export_saved_model(build_cnn(seed=7), sys.argv[1])
"""


def test_export_killed_midway_leaves_the_previous_export_whole(tmp_path):
    import tensorflow as tf

    from stn_keras.export import export_saved_model
    from stn_keras.serving.served_model import resolve_version

    model = build_cnn()
    images = random_images((2, 16, 16, 3), seed=3)
    for existing in (False, True):
        export_dir = tmp_path / str(int(existing)) / "1"
        if existing:
            export_saved_model(model, export_dir)
        killed = subprocess.run(
            [sys.executable, "-c", INTERRUPTED_EXPORT, str(export_dir)],
            env=dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3"),
            capture_output=True,
        )
        assert killed.returncode == -9, killed.stderr.decode()
        leftovers = [path.name for path in export_dir.parent.iterdir()]
        partial = [name for name in leftovers if name.startswith(".1.partial-")]
        # The kill came after the SavedModel was written into the staging folder.
        assert len(partial) == 1 and (export_dir.parent / partial[0] / "saved_model.pb").is_file()
        if not existing:
            assert leftovers == partial
            with pytest.raises(ValueError, match="No SavedModel found"):
                resolve_version(export_dir.parent)
            continue
        assert resolve_version(export_dir.parent) == (1, str(export_dir))
        served = tf.saved_model.load(str(export_dir)).signatures["serving_default"]
        np.testing.assert_allclose(
            served(images=tf.constant(images))["probabilities"].numpy(),
            model.predict(images, verbose=0),
            atol=ATOL,
        )


def test_export_replaces_an_existing_directory(tmp_path):
    import tensorflow as tf

    from stn_keras.export import export_saved_model

    export_saved_model(build_cnn(seed=1), tmp_path / "1")
    model = build_cnn(seed=2)
    export_saved_model(model, tmp_path / "1")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["1"]
    images = random_images((2, 16, 16, 3), seed=4)
    served = tf.saved_model.load(str(tmp_path / "1")).signatures["serving_default"]
    np.testing.assert_allclose(
        served(images=tf.constant(images))["probabilities"].numpy(), model.predict(images, verbose=0), atol=ATOL
    )


def bmp_rows_flipped(encoded):
    """The same BMP stored top-down: negative height, rows in reverse order."""
    import struct

    offset, = struct.unpack("<I", encoded[10:14])
    width, height = struct.unpack("<ii", encoded[18:26])
    bits, = struct.unpack("<H", encoded[28:30])
    row_bytes = (bits * width + 31) // 32 * 4
    rows = [encoded[offset + row * row_bytes: offset + (row + 1) * row_bytes] for row in range(height)]
    return encoded[:22] + struct.pack("<i", -height) + encoded[26:offset] + b"".join(reversed(rows))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P"])
@pytest.mark.parametrize("height, width", [(1, 4), (4, 4), (7, 9), (64, 64)])
def test_top_down_bmp_decodes_to_the_pixels_of_the_bottom_up_one(mode, height, width):
    from PIL import Image

    from stn_keras.export.image_decoding import decode_unit_range
    from stn_keras.export.image_headers import check_image_header

    pixels = (np.random.RandomState(height).rand(height, width, 3) * 255).astype(np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    bottom_up = encode_image(np.asarray(image), "BMP") if mode in ("RGB", "RGBA", "L") else None
    if bottom_up is None:
        buffer = __import__("io").BytesIO()
        image.save(buffer, "BMP")
        bottom_up = buffer.getvalue()
    top_down = bmp_rows_flipped(bottom_up)
    assert top_down != bottom_up

    def decode(encoded):
        return decode_unit_range(*check_image_header(encoded, 2**24)).numpy()

    expected = np.asarray(image.convert("RGB")).astype("float32") / 255
    np.testing.assert_array_equal(decode(top_down), decode(bottom_up))
    np.testing.assert_allclose(decode(bottom_up), expected, atol=1e-7)


def test_bytes_signature_classifies_a_top_down_bmp(exported, loaded):
    """The 102-byte BMP of issue 18 that aborted the server."""
    import struct

    import tensorflow as tf

    model, _, _ = exported
    top_down = (
        b"BM" + struct.pack("<IHHI", 102, 0, 0, 54)
        + struct.pack("<IiiHHIIiiII", 40, 4, -4, 1, 24, 0, 48, 0, 0, 0, 0) + b"\x80" * 48
    )
    outputs = loaded.signatures["predict_bytes"](image_bytes=tf.constant([top_down]))
    # Grey 128 in all three channels, through rgb_to_grayscale's weights.
    grey = 128 / 255 * (0.2989 + 0.5870 + 0.1140)
    expected = model.predict(np.full((1, 28, 28, 1), grey, "float32"), verbose=0)
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=1e-5)


def pil_bytes(image, image_format, **options):
    import io

    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("options", [{}, {"lossless": True}, {"mode": "RGBA"}])
def test_webp_decodes_like_pil(options):
    from PIL import Image
    from PIL import features

    from stn_keras.export import decode_image

    if not features.check("webp"):
        pytest.skip("Pillow was built without WebP")
    options = dict(options)
    image = Image.fromarray((np.random.RandomState(3).rand(9, 14, 3) * 255).astype(np.uint8))
    image = image.convert(options.pop("mode", "RGB"))
    encoded = pil_bytes(image, "WEBP", **options)
    expected = np.asarray(Image.open(__import__("io").BytesIO(encoded)).convert("RGB")) / 255
    decoded = decode_image(encoded, (9, 14), 3, resize_method="nearest", antialias=False)
    np.testing.assert_allclose(decoded.numpy(), expected, atol=1e-6)


def unsupported_variants():
    """Files of an accepted format in a variant that is refused, with the message."""
    import struct

    from PIL import Image

    from image_fuzzing import bmp_bytes

    rgb = Image.fromarray((np.random.RandomState(4).rand(9, 11, 3) * 255).astype(np.uint8))
    frames = [rgb, rgb.rotate(90)]
    bmp = bmp_bytes(5, 6, 24)
    negative_width_bmp = bmp[:18] + struct.pack("<i", -6) + bmp[22:]
    variants = {
        "1-bit BMP": (bmp_bytes(5, 6, 1), "Unsupported BMP: 1 bits per pixel, compression 0, info header of 40 bytes, pixels at byte 62; predict_bytes reads uncompressed 8-bit (palette), 24-bit and 32-bit BMPs"),
        "RLE8 BMP": (bmp_bytes(5, 6, 8, compression=1), "Unsupported BMP: 8 bits per pixel, compression 1"),
        "RLE4 BMP": (bmp_bytes(5, 6, 4, compression=2), "Unsupported BMP: 4 bits per pixel, compression 2"),
        "16-bit bit-field BMP": (bmp_bytes(5, 6, 16, compression=3), "Unsupported BMP: 16 bits per pixel, compression 3"),
        "OS/2 BMP": (bmp_bytes(5, 6, 24, info_header=12), "Unsupported BMP: an info header of 12 bytes (OS/2 or older)"),
        "CMYK JPEG": (pil_bytes(rgb.convert("CMYK"), "JPEG"), "Unsupported JPEG: 4 colour components (CMYK or YCCK)"),
        "animated WebP": (pil_bytes(frames[0], "WEBP", save_all=True, append_images=frames[1:]), "Unsupported WebP: an animation"),
        "WebP without image chunk": (b"RIFF\x20\0\0\0WEBPVP8Q" + bytes(40), "Invalid WebP header: expected a VP8, VP8L or VP8X chunk at byte 12."),
        "zero-width PNG": (png_bomb(5, 0), "The image declares 5 x 0 pixels (height x width): an image needs at least one row and one column"),
        "negative-width BMP": (negative_width_bmp, "The image declares 5 x -6 pixels"),
        "PGM with maxval 0": (b"P5\n2 2\n0\n" + bytes(4), "Invalid PPM/PGM header: maxval must be in [1, 65535]"),
        "PGM with maxval 65536": (b"P5\n2 2\n65536\n" + bytes(8), "Invalid PPM/PGM header: maxval must be in [1, 65535]"),
        "JPEG XL": (b"\xff\x0a" + bytes(40), "Unsupported image format"),
        "empty file": (b"", "Unsupported image format"),
    }
    return variants


@pytest.mark.parametrize("variant", sorted(unsupported_variants()))
def test_unsupported_variants_are_refused_before_decoding(loaded, variant):
    import tensorflow as tf

    encoded, message = unsupported_variants()[variant]
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        loaded.signatures["predict_bytes"](image_bytes=tf.constant([encoded]))
    assert message in error.value.message


def test_fuzzed_images_decode_or_are_refused_without_crashing_the_process(exported):
    """A few hundred mutated images of every format, in a child process."""
    from image_fuzzing import DECODED
    from image_fuzzing import fuzz_cases
    from image_fuzzing import run_in_child

    cases = fuzz_cases(300, seed=18)
    returncode, outcomes, output = run_in_child(exported[1], cases, timeout_s=300)
    finished = len(outcomes)
    assert returncode == 0 and finished == len(cases), (
        f"The child exited with {returncode} after {finished} of {len(cases)} "
        f"cases; the next was {cases[min(finished, len(cases) - 1)][:2]}:\n{output[-2000:]}"
    )
    refusals = {outcome[1] for outcome in outcomes if outcome[0] != DECODED}
    assert refusals == {"InvalidArgumentError"}
    formats = {case[0] for case in cases}
    assert formats == {"PNG", "JPEG", "GIF", "BMP", "WebP", "PPM/PGM"}
    for image_format in formats:
        decoded = [o for o, case in zip(outcomes, cases) if case[0] == image_format and o[0] == DECODED]
        assert decoded, f"no {image_format} case decoded"
    # Every valid file of a supported variant decodes.
    for (image_format, description, _), outcome in zip(cases, outcomes):
        if description.endswith(": valid") and outcome[0] != DECODED:
            assert "Unsupported" in outcome[2], (description, outcome)


@pytest.mark.parametrize("options", [{}, {"lossless": True}, {"mode": "RGBA"}])
def test_python_and_graph_read_the_same_webp_sizes(options):
    from PIL import Image
    from PIL import features

    if not features.check("webp"):
        pytest.skip("Pillow was built without WebP")
    options = dict(options)
    image = Image.fromarray(np.zeros((21, 300, 3), np.uint8)).convert(options.pop("mode", "RGB"))
    assert declared_sizes(pil_bytes(image, "WEBP", **options)) == ((21, 300, 1), (21, 300, 1))
