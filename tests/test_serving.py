"""Tests of the TensorFlow Serving REST API server (serve.py, stn_keras.serving)."""

import asyncio
import concurrent.futures
import contextlib
import json
import threading
import time

import keras
import numpy as np
import pytest

from conftest import random_images
import serving_helpers
from serving_helpers import CLASS_NAMES
from serving_helpers import build_cnn
from serving_helpers import build_st_cnn
from serving_helpers import animated_gif
from serving_helpers import b64
from serving_helpers import encode_image
from serving_helpers import oversized_image
from serving_helpers import png_bomb
from server_process import ServerProcess

ATOL = 1e-6
MAX_BATCH_SIZE = 16
MAX_BODY_BYTES = 600_000
MAX_REQUEST_PIXELS = 4000


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from stn_keras.export import export_saved_model

    root = tmp_path_factory.mktemp("models")
    st_cnn, cnn = build_st_cnn(), build_cnn()
    export_saved_model(st_cnn, root / "st_cnn" / "1", class_names=CLASS_NAMES)
    export_saved_model(cnn, root / "cnn" / "3")
    return {"mnist": (st_cnn, root / "st_cnn"), "rgb": (cnn, root / "cnn")}


@pytest.fixture(scope="module")
def server(exported):
    arguments = []
    for name, (_, model_dir) in exported.items():
        arguments += ["--model-dir", str(model_dir), "--model-name", name]
    process = ServerProcess(
        arguments + ["--max-batch-size", str(MAX_BATCH_SIZE), "--batch-timeout-ms", "5",
                     "--max-body-bytes", str(MAX_BODY_BYTES),
                     "--max-request-pixels", str(MAX_REQUEST_PIXELS)],
        ready_model="mnist",
    )
    yield process
    assert process.stop(), process.output()


@pytest.fixture(scope="module")
def client(server):
    import httpx

    with httpx.Client(base_url=server.url, timeout=30) as session:
        yield session


def predict(client, body, model="mnist"):
    return client.post(f"/v1/models/{model}:predict", json=body)



def assert_good_request_succeeds(client, exported):
    serving_helpers.assert_good_request_succeeds(client, exported["mnist"][0], atol=ATOL)


@pytest.mark.tensorflow_only
def test_status_and_versions(client):
    expected = {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]}
    assert client.get("/v1/models/mnist").json() == expected
    assert client.get("/v1/models/mnist/versions/1").json() == expected
    assert client.get("/v1/models/rgb").json()["model_version_status"][0]["version"] == "3"
    answer = client.get("/v1/models/mnist/versions/2")
    assert answer.status_code == 404
    assert "Specific(mnist, 2)" in answer.json()["error"]


@pytest.mark.tensorflow_only
def test_metadata_matches_the_saved_model_signatures(client, exported):
    import tensorflow as tf

    metadata = client.get("/v1/models/mnist/metadata").json()
    assert metadata["model_spec"] == {"name": "mnist", "signature_name": "", "version": "1"}
    options = metadata["metadata"]["export_options"]
    assert options["max_image_pixels"] == 16777216 and options["class_names"] == CLASS_NAMES
    assert client.get("/v1/models/mnist/versions/1/metadata").json() == metadata
    served = metadata["metadata"]["signature_def"]["signature_def"]
    loaded = tf.saved_model.load(str(exported["mnist"][1] / "1"))
    assert set(loaded.signatures) <= set(served)
    for name, function in loaded.signatures.items():
        tensors = {
            "inputs": function.structured_input_signature[1],
            "outputs": function.structured_outputs,
        }
        assert served[name]["method_name"] == "tensorflow/serving/predict"
        for side, specs in tensors.items():
            assert set(served[name][side]) == set(specs)
            for tensor_name, spec in specs.items():
                info = served[name][side][tensor_name]
                assert info["dtype"] == "DT_" + {"float32": "FLOAT", "int64": "INT64", "string": "STRING"}[spec.dtype.name]
                sizes = [int(dim["size"]) for dim in info["tensor_shape"]["dim"]]
                assert sizes == [-1 if size is None else size for size in spec.shape.as_list()]


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("request_format", ["instances", "named_instances", "inputs", "named_inputs"])
def test_predict_equals_model_predict(client, exported, request_format):
    images = random_images((3, 28, 28, 1), seed=11)
    value = {
        "instances": images.tolist(),
        "named_instances": [{"images": image.tolist()} for image in images],
        "inputs": images.tolist(),
        "named_inputs": {"images": images.tolist()},
    }[request_format]
    key = "instances" if "instances" in request_format else "inputs"
    answer = predict(client, {key: value})
    assert answer.status_code == 200, answer.text
    expected = exported["mnist"][0].predict(images, verbose=0)
    result = answer.json()["predictions" if key == "instances" else "outputs"]
    np.testing.assert_allclose(result, expected, atol=ATOL)


@pytest.mark.tensorflow_only
def test_second_model_is_served(client, exported):
    images = random_images((2, 16, 16, 3), seed=12)
    answer = predict(client, {"inputs": images.tolist()}, model="rgb")
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(answer.json()["outputs"], exported["rgb"][0].predict(images, verbose=0), atol=ATOL)


def encoded_images():
    return [
        encode_image((np.random.RandomState(seed).rand(*shape) * 255).astype(np.uint8), image_format)
        for seed, shape, image_format in (
            (1, (20, 13, 3), "PNG"), (2, (28, 28), "PPM"), (3, (30, 22, 3), "JPEG"), (4, (9, 9, 3), "BMP")
        )
    ]


@pytest.mark.tensorflow_only
def test_binary_inputs_row_and_columnar(client, exported):
    import tensorflow as tf

    encoded = encoded_images()
    loaded = tf.saved_model.load(str(exported["mnist"][1] / "1"))
    expected = loaded.signatures["predict_bytes"](image_bytes=tf.constant(encoded))
    row = predict(client, {"signature_name": "predict_bytes", "instances": [b64(data) for data in encoded]})
    assert row.status_code == 200, row.text
    predictions = row.json()["predictions"]
    np.testing.assert_allclose([p["probabilities"] for p in predictions], expected["probabilities"].numpy(), atol=ATOL)
    assert [p["class_ids"] for p in predictions] == expected["class_ids"].numpy().tolist()
    assert [p["class_names"] for p in predictions] == [CLASS_NAMES[i] for i in expected["class_ids"].numpy()]
    columnar = predict(
        client, {"signature_name": "predict_bytes", "inputs": {"image_bytes": [b64(data) for data in encoded]}}
    )
    assert columnar.status_code == 200, columnar.text
    outputs = columnar.json()["outputs"]
    assert sorted(outputs) == ["class_ids", "class_names", "probabilities"]
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"].numpy(), atol=ATOL)


@pytest.mark.tensorflow_only
def test_spatial_transforms_signature(client, exported):
    model = exported["mnist"][0]
    images = random_images((2, 28, 28, 1), seed=13)
    answer = predict(client, {"signature_name": "spatial_transforms", "inputs": images.tolist()})
    assert answer.status_code == 200, answer.text
    expected_images, expected_theta = keras.Model(
        model.inputs, model.get_layer("spatial_transformer").output
    ).predict(images, verbose=0)
    outputs = answer.json()["outputs"]
    np.testing.assert_allclose(outputs["spatial_transformer_theta"], expected_theta, atol=ATOL)
    # The SavedModel samples with plain ops, Keras' predict with compiled
    # stages: pixel coordinates round differently by an ulp (~2e-6).
    np.testing.assert_allclose(outputs["spatial_transformer_images"], expected_images, atol=1e-5)


def image_list(shape=(28, 28, 1), count=1):
    return random_images((count, *shape), seed=0).tolist()


BAD_REQUESTS = {
    "invalid JSON": (b'{"instances": [1, 2', 400, "JSON Parse error"),
    "not UTF-8": (b'{"instances": "\xff"}', 400, "not UTF-8"),
    "not an object": (b"[1, 2]", 400, "must be a JSON object"),
    "missing field": ({"signature_name": "serving_default"}, 400, "Missing 'inputs' or 'instances'"),
    "unknown field": ({"instances": image_list(), "instance": 1}, 400, "Unknown field(s) ['instance']"),
    "both formats": ({"instances": image_list(), "inputs": image_list()}, 400, "both 'instances' and 'inputs'"),
    "instances not a list": ({"instances": 3}, 400, "'instances' must be a list"),
    "instance with wrong keys": ({"instances": [{"pixels": 1}]}, 400, "keys ['pixels']; signature 'serving_default' expects the input names ['images']"),
    "inputs with wrong keys": ({"inputs": {"pixels": 1}}, 400, "'inputs' is an object with keys ['pixels']"),
    "wrong rank": ({"instances": image_list((28, 28))}, 400, "expects a DT_FLOAT tensor of shape (-1, 28, 28, 1) (-1: any size); received shape (1, 28, 28)"),
    "wrong shape": ({"inputs": image_list((27, 28, 1))}, 400, "received shape (1, 27, 28, 1)"),
    "ragged": ({"instances": [image_list()[0], image_list((27, 28, 1))[0]]}, 400, "ragged"),
    "strings for floats": ({"instances": [[["a"] * 28] * 28]}, 400, "expects DT_FLOAT values; received strings"),
    "booleans for floats": ({"instances": [[[[True]] * 28] * 28]}, 400, "received booleans"),
    "null for floats": ({"instances": [[[[None]] * 28] * 28]}, 400, "received null, objects or a mix of types"),
    "a boolean among floats": ({"instances": [[[[0.5]] * 27 + [[True]]] * 28]}, 400, "expects DT_FLOAT values; received booleans among the numbers"),
    "an integer beyond float32": ({"instances": [[[[0.5]] * 27 + [[10**39]]] * 28]}, 400, "non-finite number (NaN, Infinity or beyond the DT_FLOAT range) at index (0, 0, 27, 0)"),
    "an integer beyond float64": ({"instances": [[[[0.5]] * 27 + [[-(10**400)]]] * 28]}, 400, "non-finite number (NaN, Infinity or beyond the DT_FLOAT range) at index (0, 0, 27, 0)"),
    "an integer beyond 2**64 among strings": ({"instances": [[[["a"]] * 27 + [[10**30]]] * 28]}, 400, "received null, objects or a mix of types"),
    "NaN": (json.dumps({"instances": [[[[float("nan")]] * 28] * 28]}).encode(), 400, "non-finite number (NaN, Infinity or beyond the DT_FLOAT range) at index (0, 0, 0, 0)"),
    "beyond float32": ({"instances": [[[[0.0]] * 27 + [[1e39]]] * 28]}, 400, "non-finite number"),
    "empty batch": ({"instances": []}, 400, "Empty batch"),
    "empty columnar batch": ({"inputs": []}, 400, "Empty batch"),
    "batch over the limit": ({"instances": image_list(count=MAX_BATCH_SIZE + 1)}, 400, f"batch of {MAX_BATCH_SIZE + 1} instances exceeds the maximum batch size of {MAX_BATCH_SIZE}"),
    "body over the limit": (b" " * (MAX_BODY_BYTES + 1), 413, f"exceeds the limit of {MAX_BODY_BYTES} bytes"),
    "undecodable image": ({"signature_name": "predict_bytes", "instances": [b64(b"no image here")]}, 400, "Unsupported image format: the file is none of PNG, JPEG, GIF, BMP, WebP and binary PPM (P6) / PGM (P5)"),
    "truncated PPM": ({"signature_name": "predict_bytes", "instances": [b64(b"P6\n8 8\n255\n" + bytes(100))]}, 400, "Truncated PPM/PGM"),
    "PNG bomb": ({"signature_name": "predict_bytes", "instances": [b64(png_bomb(20000, 20000))]}, 400, "The image declares 20000 x 20000 pixels (height x width) and 1 frame(s), over the limit of 16777216 decoded pixels per image"),
    "JPEG bomb": ({"signature_name": "predict_bytes", "instances": [b64(oversized_image("JPEG", 60000, 60000))]}, 400, "declares 60000 x 60000 pixels"),
    "GIF bomb": ({"signature_name": "predict_bytes", "inputs": [b64(oversized_image("GIF", 5000, 4000))]}, 400, "declares 5000 x 4000 pixels"),
    "BMP bomb": ({"signature_name": "predict_bytes", "instances": [b64(oversized_image("BMP", 20000, 20000))]}, 400, "declares 20000 x 20000 pixels"),
    "PPM bomb": ({"signature_name": "predict_bytes", "instances": [b64(oversized_image("PPM", 20000, 20000))]}, 400, "declares 20000 x 20000 pixels"),
    "images over the request pixel limit": ({"signature_name": "predict_bytes", "instances": [b64(encode_image(np.zeros((28, 28), np.uint8), "PNG"))] * 6}, 400, f"declare 4704 decoded pixels or more together, over the limit of {MAX_REQUEST_PIXELS} per request"),
    "GIF frames over the request pixel limit": ({"signature_name": "predict_bytes", "instances": [b64(animated_gif(frames=40, shape=(10, 11)))]}, 400, "declare 4400 decoded pixels"),
    "invalid base64": ({"signature_name": "predict_bytes", "instances": [{"b64": "@@@"}]}, 400, "invalid base64"),
    "numbers for bytes": ({"signature_name": "predict_bytes", "instances": [1.0]}, 400, "expects strings or {\"b64\": \"...\"} objects (DT_STRING); received a JSON number"),
    "unknown signature": ({"signature_name": "classify", "instances": image_list()}, 400, "Serving signature name: 'classify' not found in model 'mnist'"),
    "signature name not a string": ({"signature_name": 1, "instances": image_list()}, 400, "'signature_name' must be a string"),
}


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_is_refused_and_server_keeps_answering(client, exported, case):
    body, status, message = BAD_REQUESTS[case]
    if isinstance(body, bytes):
        answer = client.post("/v1/models/mnist:predict", content=body,
                             headers={"content-type": "application/json"})
    else:
        answer = predict(client, body)
    assert answer.status_code == status, answer.text
    assert list(answer.json()) == ["error"]
    assert message in answer.json()["error"]
    assert_good_request_succeeds(client, exported)


@pytest.mark.tensorflow_only
@pytest.mark.parametrize(
    "method, path, status, message",
    [
        ("POST", "/v1/models/lenet:predict", 404, "Servable not found for request: Latest(lenet)"),
        ("GET", "/v1/models/lenet", 404, "Servable not found"),
        ("GET", "/v1/models/lenet/metadata", 404, "Servable not found"),
        ("POST", "/v1/models/mnist/versions/7:predict", 404, "Specific(mnist, 7)"),
        ("POST", "/v1/models/mnist:classify", 404, "Unsupported request path /v1/models/mnist:classify"),
        ("GET", "/v2/models", 404, "Not Found"),
        ("DELETE", "/v1/models/mnist", 405, "DELETE /v1/models/mnist: model status and metadata answer GET only"),
        ("POST", "/v1/models/mnist/metadata", 405, "answer GET only"),
        ("GET", "/v1/models/mnist:predict", 405, "GET /v1/models/mnist:predict: a predict request must be a POST"),
        ("GET", "/v1/models/mnist/versions/1:predict", 405, "must be a POST"),
        ("PUT", "/v1/models/lenet:predict", 405, "must be a POST"),
        ("GET", "/v1/models/mnist/versions/1/extra", 404, "Unsupported request path"),
        ("GET", "/docs", 404, "Not Found"),
    ],
)
def test_bad_url_is_refused(client, exported, method, path, status, message):
    answer = client.request(method, path, json={"instances": image_list()})
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]
    if status == 405:
        assert answer.headers["allow"] in ("GET", "POST")
    assert_good_request_succeeds(client, exported)


@pytest.mark.tensorflow_only
@pytest.mark.parametrize(
    "path, allowed",
    [
        ("/v1/models/mnist", "GET"),
        ("/v1/models/mnist/versions/1/metadata", "GET"),
        ("/v1/models/mnist:predict", "POST"),
    ],
)
def test_head_is_refused_with_the_allow_header(client, path, allowed):
    answer = client.head(path)
    assert answer.status_code == 405
    assert answer.headers["allow"] == allowed
    assert answer.content == b""


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("value, spelling", [(10**30, "1e30"), (3, "3.0")])
def test_integer_literals_are_the_numbers_their_float_spelling_is(client, value, spelling):
    pixels = [[[0.25]] * 28] * 27 + [[[0.25]] * 27 + [["PIXEL"]]]
    template = json.dumps({"instances": [pixels]})
    answers = [
        client.post("/v1/models/mnist:predict", content=template.replace('"PIXEL"', text),
                    headers={"content-type": "application/json"})
        for text in (str(value), spelling)
    ]
    assert [answer.status_code for answer in answers] == [200, 200], answers[0].text
    assert answers[0].json() == answers[1].json()


@pytest.mark.tensorflow_only
def test_dot_dot_path_is_not_found(server, client, exported):
    import http.client

    # Sent as is: HTTP clients would resolve the dot segments first.
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("GET", "/v1/models/../../etc/passwd")
    answer = connection.getresponse()
    assert answer.status == 404
    assert "Unsupported request path /v1/models/../../etc/passwd" in json.loads(answer.read())["error"]
    connection.close()
    assert_good_request_succeeds(client, exported)


@pytest.mark.tensorflow_only
def test_versioned_predict_url(client, exported):
    images = random_images((1, 28, 28, 1), seed=14)
    answer = client.post("/v1/models/mnist/versions/1:predict", json={"instances": images.tolist()})
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(answer.json()["predictions"], exported["mnist"][0].predict(images, verbose=0), atol=ATOL)


@pytest.mark.tensorflow_only
def test_openapi_is_served_without_a_docs_page(client):
    # /docs would load Swagger UI from a CDN: blank offline, so not served.
    assert client.get("/docs").status_code == 404
    paths = client.get("/openapi.json").json()["paths"]
    assert "/v1/models/{name}:predict" in paths
    assert "/v1/models/{name}/metadata" in paths


@pytest.mark.tensorflow_only
def test_concurrent_burst_has_no_error_and_no_mismatch(server, exported):
    import httpx

    count, threads = 200, 16
    images = random_images((count, 28, 28, 1), seed=15)
    expected = exported["mnist"][0].predict(images, verbose=0)
    local = threading.local()

    def send(index):
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=server.url, timeout=60)
        key = "instances" if index % 2 else "inputs"
        answer = local.client.post("/v1/models/mnist:predict", json={key: images[index : index + 1].tolist()})
        return index, answer.status_code, answer.json()

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(send, range(count)))
    for index, status, body in results:
        assert status == 200, body
        result = body["predictions" if index % 2 else "outputs"]
        np.testing.assert_allclose(result, expected[index : index + 1], atol=ATOL)


@pytest.mark.tensorflow_only
def test_bad_image_among_concurrent_requests_fails_alone(server, exported):
    import httpx
    import tensorflow as tf

    encoded = encoded_images() * 3
    bad_index = 5
    encoded[bad_index] = b"not an image"
    loaded = tf.saved_model.load(str(exported["mnist"][1] / "1"))

    def send(index):
        with httpx.Client(base_url=server.url, timeout=60) as session:
            return session.post(
                "/v1/models/mnist:predict",
                json={"signature_name": "predict_bytes", "instances": [b64(encoded[index])]},
            )

    with concurrent.futures.ThreadPoolExecutor(len(encoded)) as pool:
        answers = list(pool.map(send, range(len(encoded))))
    for index, answer in enumerate(answers):
        if index == bad_index:
            assert answer.status_code == 400
            assert "Unsupported image format" in answer.json()["error"]
            continue
        assert answer.status_code == 200, answer.text
        expected = loaded.signatures["predict_bytes"](image_bytes=tf.constant(encoded[index : index + 1]))
        np.testing.assert_allclose(
            answer.json()["predictions"][0]["probabilities"], expected["probabilities"].numpy()[0], atol=ATOL
        )


@pytest.mark.tensorflow_only
def test_sigterm_finishes_the_request_in_flight(exported):
    import httpx

    # A long batch timeout keeps the request waiting in the server.
    process = ServerProcess(
        ["--model-dir", str(exported["mnist"][1]), "--batch-timeout-ms", "2000"], ready_model="st_cnn"
    )
    images = random_images((1, 28, 28, 1), seed=16)
    answers = []
    sender = threading.Thread(
        target=lambda: answers.append(
            httpx.post(f"{process.url}/v1/models/st_cnn:predict", json={"instances": images.tolist()}, timeout=60)
        )
    )
    sender.start()
    time.sleep(0.7)
    process.terminate()
    sender.join(60)
    assert process.stop(), process.output()
    assert answers and answers[0].status_code == 200, answers
    np.testing.assert_allclose(answers[0].json()["predictions"], exported["mnist"][0].predict(images, verbose=0), atol=ATOL)


class FakeModel:
    """Records the batch sizes of its calls; fails on a negative input."""

    def __init__(self):
        self.calls = []

    def __call__(self, inputs):
        self.calls.append(len(inputs["x"]))
        if (inputs["x"] < 0).any():
            raise ValueError("negative input")
        return {"y": inputs["x"] * 2.0}


def run_batcher(requests, max_batch_size=8, batch_timeout_s=0.05, model=None, max_concurrent_batches=1):
    from stn_keras.serving.batcher import Batcher

    model = model or FakeModel()

    async def main():
        with concurrent.futures.ThreadPoolExecutor(2) as executor:
            batcher = Batcher(model, max_batch_size, batch_timeout_s, executor, max_concurrent_batches)
            results = await asyncio.gather(
                *(batcher.submit({"x": x}, len(x)) for x in requests), return_exceptions=True
            )
            await batcher.close()
            return results

    return model.calls, asyncio.run(main())


def test_batcher_merges_concurrent_requests_and_splits_answers():
    requests = [np.full((size, 2), index, "float32") for index, size in enumerate([1, 3, 2, 1])]
    calls, results = run_batcher(requests)
    assert calls == [7]
    for request, result in zip(requests, results):
        np.testing.assert_array_equal(result["y"], request * 2.0)


def test_batcher_respects_max_batch_size():
    requests = [np.full((3, 1), index, "float32") for index in range(5)]
    calls, results = run_batcher(requests, max_batch_size=7)
    assert calls == [6, 6, 3]
    for request, result in zip(requests, results):
        np.testing.assert_array_equal(result["y"], request * 2.0)


def test_batcher_isolates_a_failing_request():
    requests = [np.ones((1, 1), "float32"), -np.ones((1, 1), "float32"), np.full((2, 1), 3.0, "float32")]
    calls, results = run_batcher(requests)
    assert calls == [4, 1, 1, 2]
    assert isinstance(results[1], ValueError)
    np.testing.assert_array_equal(results[0]["y"], [[2.0]])
    np.testing.assert_array_equal(results[2]["y"], [[6.0], [6.0]])


class SlowModel(FakeModel):
    """Takes 0.2 s per call and records how many calls overlap."""

    def __init__(self):
        super().__init__()
        self.running = 0
        self.most_running = 0
        self.lock = threading.Lock()

    def __call__(self, inputs):
        with self.lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        time.sleep(0.2)
        with self.lock:
            self.running -= 1
        return super().__call__(inputs)


@pytest.mark.parametrize("max_concurrent_batches", [1, 2])
def test_batcher_runs_at_most_the_allowed_batches_at_once(max_concurrent_batches):
    model = SlowModel()
    requests = [np.full((4, 1), index, "float32") for index in range(4)]
    calls, results = run_batcher(
        requests, max_batch_size=4, batch_timeout_s=0.0, model=model,
        max_concurrent_batches=max_concurrent_batches,
    )
    assert calls == [4, 4, 4, 4]
    assert model.most_running == max_concurrent_batches
    for request, result in zip(requests, results):
        np.testing.assert_array_equal(result["y"], request * 2.0)


def test_batcher_without_wait_runs_requests_as_they_come():
    calls, results = run_batcher([np.ones((1, 1), "float32")] * 3, batch_timeout_s=0.0)
    assert sum(calls) == 3
    assert all(result["y"][0, 0] == 2.0 for result in results)


def test_model_names_from_arguments():
    from stn_keras.serving import cli as serve

    assert serve.models_from_arguments(["runs/a/saved_model", "models/b/1"], None) == {
        "a": "runs/a/saved_model", "b": "models/b/1"
    }
    assert serve.models_from_arguments(["x"], ["mnist"]) == {"mnist": "x"}
    with pytest.raises(ValueError, match="one --model-name per --model-dir"):
        serve.models_from_arguments(["x", "y"], ["mnist"])
    with pytest.raises(ValueError, match=r"\['a'\] name several directories"):
        serve.models_from_arguments(["one/a", "two/a"], None)


@pytest.mark.tensorflow_only
def test_missing_saved_model_is_reported(tmp_path):
    from stn_keras.serving import ServedModel

    with pytest.raises(ValueError, match="No SavedModel found in"):
        ServedModel("empty", tmp_path)
    with pytest.raises(ValueError, match="A model name may hold"):
        ServedModel("a/b", tmp_path)


@pytest.mark.tensorflow_only
def test_parallel_bombs_are_refused_in_bounded_memory(server, client, exported):
    pytest.importorskip("psutil")
    serving_helpers.assert_parallel_bombs_refused_in_bounded_memory(
        server, client, exported["mnist"][0]
    )


def corrupt_copy(source, destination, damage):
    """Copies the SavedModel ``source`` to ``destination`` and damages it."""
    import shutil

    shutil.copytree(source, destination)
    damage(destination)
    return destination


def truncate(path, size):
    with open(path, "r+b") as file:
        file.truncate(size)


DAMAGES = {
    "truncated graph": (lambda d: truncate(d / "saved_model.pb", 100), "Cannot read the SavedModel graph '{}/saved_model.pb': the file is truncated or corrupt"),
    "empty graph": (lambda d: truncate(d / "saved_model.pb", 0), "holds no graph: the file is truncated or corrupt"),
    "truncated variables": (lambda d: truncate(next((d / "variables").glob("variables.data*")), 10), "Cannot load the SavedModel in '{}'"),
    "missing variables": (lambda d: __import__("shutil").rmtree(d / "variables"), "Cannot load the SavedModel in '{}'"),
    "corrupt export options": (lambda d: (d / "assets.extra" / "export_options.json").write_text("{"), "Cannot read '{}/assets.extra/export_options.json'"),
}


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_saved_model_gives_one_clear_error(exported, tmp_path, damage):
    from stn_keras.serving import ServedModel

    function, message = DAMAGES[damage]
    path = corrupt_copy(exported["rgb"][1] / "3", tmp_path / "1", function)
    with pytest.raises(ValueError) as error:
        ServedModel("rgb", path)
    assert message.format(path) in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.tensorflow_only
def test_server_started_on_a_damaged_saved_model_prints_one_line(exported, tmp_path):
    import subprocess
    import sys

    path = corrupt_copy(exported["rgb"][1] / "3", tmp_path / "1", lambda d: truncate(d / "saved_model.pb", 100))
    finished = subprocess.run(
        [sys.executable, "-m", "stn_keras.serving", "--model-dir", str(path)],
        capture_output=True, text=True, timeout=120,
        env=dict(__import__("os").environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert finished.returncode == 1
    lines = [line for line in finished.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(f"serve: error: Cannot read the SavedModel graph '{path}/saved_model.pb'")
    assert "Traceback" not in finished.stderr


class FloatImagesModel:
    """A stand-in `ServedModel` with one signature taking float32 images."""

    def __init__(self, shape):
        from stn_keras.serving.served_model import Signature
        from stn_keras.serving.served_model import TensorInfo

        images = TensorInfo("images", np.dtype("float32"), "DT_FLOAT", (None, *shape))
        self.served = Signature("serving_default", (images,), ())

    def signature(self, signature_name):
        return self.served


def repeated_instances_body(count, seed):
    """``{"instances": [...]}`` of ``count`` copies of one random 42x42x1 image."""
    image = np.round(np.random.RandomState(seed).rand(42, 42, 1), 4)
    instance = json.dumps(image.tolist())
    return image, ('{"instances": [' + ", ".join([instance] * count) + "]}").encode()


@contextlib.contextmanager
def allocations_traced():
    """Yields a function giving ``(held, peak)``: the bytes of Python and
    numpy allocations held now and at most since entry, beyond what was held
    on entry. Leaves tracing as it found it (on under ``-X tracemalloc``)."""
    import tracemalloc

    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    held_on_entry, _ = tracemalloc.get_traced_memory()
    try:
        yield lambda: tuple(value - held_on_entry for value in tracemalloc.get_traced_memory())
    finally:
        if started:
            tracemalloc.stop()


def test_a_large_numeric_body_is_read_into_numpy_without_python_numbers():
    from stn_keras.serving.request_parsing import parse_predict_request

    image, body = repeated_instances_body(100, seed=0)
    with allocations_traced() as traced:
        parsed = parse_predict_request(body, FloatImagesModel((42, 42, 1)), 1000)
        _, peak = traced()
    np.testing.assert_array_equal(parsed.inputs["images"], np.repeat(image[None], 100, 0).astype("float32"))
    assert parsed.batch_size == 100 and parsed.row_format
    # The decoded text, one float64 batch and its float32 copy: under 3.5
    # bytes per body byte (json.loads alone holds about 12, in Python floats
    # and lists).
    assert peak < 3.5 * len(body), (peak, len(body))


def test_a_large_body_leaves_no_memory_held_after_it_is_parsed():
    import gc

    from stn_keras.serving.request_parsing import parse_predict_request

    model = FloatImagesModel((42, 42, 1))
    _, body = repeated_instances_body(400, seed=1)
    parse_predict_request(body, model, 1000)
    gc.collect()
    # tracemalloc counts Python and numpy allocations only, so unlike the
    # process's RSS it does not move with what other threads or the
    # allocator's free lists do; a leak of one parsed batch (2.8 MB) or of
    # the decoded text (7 MB) would show here.
    with allocations_traced() as traced:
        for _ in range(2):
            parse_predict_request(body, model, 1000)
        gc.collect()
        held, _ = traced()
    assert held < 0.02 * len(body), (held, len(body))


@pytest.mark.parametrize(
    "text",
    [
        '{"instances": [[1, 2], [3, 4.5]]}',
        '{"inputs": [[1, 2]], "signature_name": "serving_default"}',
        ' { "instances" : [ [ 1 , 2 ] , [ 3 , 4 ] ] } ',
        '{"instances": [[1], [2, 3]]}',
        '{"instances": [[0.5, true]]}',
        '{"instances": [[1],]}',
        '{"instances": [[1] [2]]}',
        '{"instances": [[1]], "instances": [[2, 3]]}',
        '{"x\\"instances": [[9, 9]], "instances": [[7, 7]]}',
        '{"instances": [[100000000000000000000000000000, 1]]}',
        '{"instances": [[1, 2]]',
        '{"instances": []}',
    ],
)
def test_numeric_batches_read_into_numpy_parse_as_json_loads_does(text, monkeypatch):
    from stn_keras.serving import request_parsing

    model = FloatImagesModel((2,))

    def outcome():
        try:
            parsed = request_parsing.parse_predict_request(text.encode(), model, 10)
        except request_parsing.ServingError as error:
            return error.status_code, error.message
        return parsed.inputs["images"].tolist(), parsed.batch_size, parsed.row_format

    received = outcome()
    # Without the numpy reader, everything goes through json.loads.
    monkeypatch.setattr(request_parsing, "_numeric_batch", lambda text, start: None)
    assert received == outcome()
