"""Helpers shared by test_export.py and test_serving.py: tiny models, encoded images, a server process."""

import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

REPOSITORY_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


def random_images(count, shape, seed):
    return np.random.RandomState(seed).rand(count, *shape).astype("float32")


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


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """``serve.py`` run as a subprocess on a free loopback port.

    Args:
        arguments: arguments of serve.py after ``--host`` and ``--port``.
        ready_model: a model name whose status URL answers once it is up.
    """

    def __init__(self, arguments, ready_model, startup_timeout_s=120):
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile(mode="a+b")
        environment = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(REPOSITORY_ROOT, "serve.py"),
             "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "warning", *arguments],
            cwd=REPOSITORY_ROOT,
            env=environment,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError("serve.py exited while starting:\n" + self.output())
            try:
                if httpx.get(f"{self.url}/v1/models/{ready_model}", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"serve.py did not answer within {startup_timeout_s} s")
            time.sleep(0.2)

    def output(self):
        """What the server printed so far."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def terminate(self):
        """Sends SIGTERM."""
        self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout_s=30):
        """Terminates the server; returns whether it shut down cleanly.

        Uvicorn finishes the requests in flight, then re-raises SIGTERM, so
        a clean exit is code 0 or death by SIGTERM; a kill after
        ``timeout_s`` is not.
        """
        if self.process.poll() is None:
            self.terminate()
        try:
            return self.process.wait(timeout_s) in (0, -signal.SIGTERM)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return False
