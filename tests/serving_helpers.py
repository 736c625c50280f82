"""Helpers shared by the export and serving tests and bench/soak_serving.py: tiny models, encoded images, image bombs."""

import functools
import io

import numpy as np

CLASS_NAMES = ["zero", "one", "two"]


def build_st_cnn(input_shape=(28, 28, 1), num_classes=3, seed=0, nested=False):
    """A tiny ST-CNN with random, non-identity transformer weights.

    With ``nested=True`` the transformer sits, without ``return_theta``,
    inside a functional sub-model after a rescaling layer.
    """
    import keras

    from stn_keras.layers import SpatialTransformer

    keras.utils.set_random_seed(seed)
    localization_net = keras.Sequential(
        [
            keras.layers.Conv2D(4, 5, strides=2, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(8, activation="relu"),
        ]
    )
    transformer = SpatialTransformer(
        localization_net, return_theta=not nested, name="spatial_transformer"
    )
    inputs = keras.Input(input_shape)
    if nested:
        inner_inputs = keras.Input(input_shape)
        inner = keras.Model(
            inner_inputs, transformer(inner_inputs), name="transformer_block"
        )
        transformed = inner(keras.layers.Rescaling(0.5, offset=0.25)(inputs))
    else:
        transformed, _ = transformer(inputs)
    features = keras.layers.Conv2D(4, 3, activation="relu")(transformed)
    features = keras.layers.Flatten()(features)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(features)
    model = keras.Model(inputs, outputs)
    kernel = transformer.regression.kernel
    # Non-zero regression weights so that theta depends on the image.
    kernel.assign(np.random.RandomState(seed).normal(0, 0.05, kernel.shape))
    return model


def build_cnn(input_shape=(16, 16, 3), num_classes=4, seed=1):
    """A tiny CNN without a transformer."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape)
    features = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    features = keras.layers.Flatten()(features)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(features)
    return keras.Model(inputs, outputs)


def encode_image(pixels, image_format):
    """Encodes uint8 ``(height, width[, channels])`` pixels as PNG, JPEG, BMP, GIF or PPM/PGM bytes."""
    from PIL import Image

    if image_format == "PPM":
        magic = b"P6" if pixels.ndim == 3 else b"P5"
        height, width = pixels.shape[:2]
        header = b"%s\n# written by a test\n%d %d\n255\n" % (magic, width, height)
        return header + pixels.astype(np.uint8).tobytes()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, image_format)
    return buffer.getvalue()


@functools.lru_cache(maxsize=4)
def png_bomb(height=20000, width=20000):
    """A valid grey PNG of ``height x width`` zeros: a few hundred KB that decode to gigabytes."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = bytes(width + 1)  # Filter byte 0, then the row's samples.
    compressed = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", compressed)
            + chunk(b"IEND", b""))


def oversized_image(image_format, height=20000, width=20000):
    """A small image whose header declares ``height x width`` pixels (JPEG, GIF, BMP, PPM)."""
    import struct

    pixels = (np.random.RandomState(0).rand(20, 13, 3) * 255).astype(np.uint8)
    if image_format == "PPM":
        return b"P6\n%d %d\n255\n" % (width, height) + pixels.tobytes()
    encoded = encode_image(pixels[..., 0] if image_format == "GIF" else pixels, image_format)
    if image_format == "JPEG":
        offset, layout, values = encoded.index(b"\xff\xc0") + 5, ">HH", (height, width)
    elif image_format == "GIF":
        offset, layout, values = 6, "<HH", (width, height)
    elif image_format == "BMP":
        offset, layout, values = 18, "<ii", (width, -height)
    else:
        raise ValueError(f"Unknown image_format. Received: image_format={image_format!r}")
    size = struct.calcsize(layout)
    return encoded[:offset] + struct.pack(layout, *values) + encoded[offset + size:]


def animated_gif(frames, shape=(12, 10)):
    """A GIF of ``frames`` different grey frames of ``shape``."""
    from PIL import Image

    images = [
        Image.fromarray((np.random.RandomState(seed).rand(*shape) * 255).astype(np.uint8))
        for seed in range(frames)
    ]
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:], duration=50)
    return buffer.getvalue()


def b64(data):
    """A binary value of a TensorFlow Serving JSON request."""
    import base64

    return {"b64": base64.b64encode(data).decode("ascii")}


def send_bombs_in_parallel(server, count=8, model="mnist"):
    """Sends ``count`` 20000 x 20000 PNG bombs to ``predict_bytes`` at once.

    Returns:
        ``(answers, rss_growth)``: the httpx responses and how much the
        server's resident memory grew meanwhile, in bytes.
    """
    import concurrent.futures

    import httpx
    import psutil

    process = psutil.Process(server.process.pid)
    body = {"signature_name": "predict_bytes", "instances": [b64(png_bomb(20000, 20000))]}
    before = process.memory_info().rss

    def send(_):
        return httpx.post(f"{server.url}/v1/models/{model}:predict", json=body, timeout=60)

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        answers = list(pool.map(send, range(count)))
    return answers, process.memory_info().rss - before


def assert_good_request_succeeds(client, model, atol=1e-6, name="mnist", seed=99):
    """A float request to ``name`` answers ``model.predict``'s probabilities."""
    import numpy as np
    from conftest import random_images

    images = random_images((2, *model.input_shape[1:]), seed=seed)
    answer = client.post(f"/v1/models/{name}:predict", json={"instances": images.tolist()})
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(
        answer.json()["predictions"], model.predict(images, verbose=0), atol=atol
    )


def assert_parallel_bombs_refused_in_bounded_memory(server, client, model):
    """8 PNG bombs at once: each a 400 naming its size, RSS growth < 300 MB,
    and a good request answered before and after."""
    assert_good_request_succeeds(client, model)
    answers, rss_growth = send_bombs_in_parallel(server)
    assert [answer.status_code for answer in answers] == [400] * 8
    assert all("20000 x 20000" in answer.json()["error"] for answer in answers)
    # Decoding one of them would take 400 MB (8 bits x 20000 x 20000) or more.
    assert rss_growth < 300 * 2**20
    assert_good_request_succeeds(client, model)
