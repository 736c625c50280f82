"""The server under hostile input: image bombs refused by the graph, fuzzed
requests, slow and silent connections, the connection cap.

The model here is exported without its options file, as another exporter
would write it: the server then knows no per-image limit, and with a huge
--max-request-pixels the bombs reach the graph's own header check.
"""

import json
import socket
import time

import numpy as np
import pytest

import serving_helpers
from serving_helpers import b64
from serving_helpers import build_st_cnn
from serving_helpers import encode_image
from serving_helpers import oversized_image
from serving_helpers import png_bomb
from conftest import random_images
from server_process import ServerProcess

pytestmark = pytest.mark.tensorflow_only

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.5
MAX_CONNECTIONS = 60
MAX_BATCH_SIZE = 8
SIGNATURES = ("serving_default", "predict_bytes", "spatial_transforms")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from stn_keras.export import EXPORT_METADATA
    from stn_keras.export import export_saved_model

    model = build_st_cnn()
    export_dir = tmp_path_factory.mktemp("hardening") / "mnist" / "1"
    export_saved_model(model, export_dir)
    (export_dir / EXPORT_METADATA).unlink()
    return model, export_dir.parent


@pytest.fixture(scope="module")
def server(exported):
    process = ServerProcess(
        ["--model-dir", str(exported[1]), "--max-request-pixels", str(10**12),
         "--max-batch-size", str(MAX_BATCH_SIZE),
         "--header-timeout-s", str(HEADER_TIMEOUT_S), "--keep-alive-timeout-s", "1",
         "--body-timeout-s", str(BODY_TIMEOUT_S),
         "--max-connections", str(MAX_CONNECTIONS)],
        ready_model="mnist",
    )
    yield process
    assert process.stop(), process.output()


@pytest.fixture(scope="module")
def client(server):
    import httpx

    with httpx.Client(base_url=server.url, timeout=60) as session:
        yield session



def assert_good_request_succeeds(client, exported):
    serving_helpers.assert_good_request_succeeds(client, exported[0], seed=5)


def test_metadata_has_no_export_options(client):
    assert client.get("/v1/models/mnist/metadata").json()["metadata"]["export_options"] == {}


@pytest.mark.parametrize(
    "encoded, declared",
    [
        (png_bomb(20000, 20000), "20000 x 20000"),
        (oversized_image("JPEG", 60000, 60000), "60000 x 60000"),
        (oversized_image("GIF", 30000, 30000), "30000 x 30000"),
    ],
    ids=["PNG", "JPEG", "GIF"],
)
def test_bombs_are_refused_by_the_graph(client, exported, encoded, declared):
    answer = client.post(
        "/v1/models/mnist:predict",
        json={"signature_name": "predict_bytes", "instances": [b64(encoded)]},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == (
        f"Invalid input: The image declares {declared} pixels (height x width) and 1 "
        "frame(s), over the limit of 16777216 decoded pixels per image "
        "(max_image_pixels of the export); send a smaller image."
    )
    assert_good_request_succeeds(client, exported)


def test_parallel_bombs_in_the_graph_keep_memory_bounded(server, client, exported):
    pytest.importorskip("psutil")
    serving_helpers.assert_parallel_bombs_refused_in_bounded_memory(server, client, exported[0])


def is_closed(connection, timeout_s=3.0):
    """Whether the server closed ``connection`` (EOF or reset) within ``timeout_s``."""
    connection.settimeout(timeout_s)
    try:
        return connection.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_slow_header_and_silent_connections_are_closed(server, client, exported):
    address = ("127.0.0.1", server.port)
    slow = [socket.create_connection(address) for _ in range(50)]
    silent = [socket.create_connection(address) for _ in range(20)]
    request_head = b"POST /v1/models/mnist:predict HTTP/1.1\r\nHost: x\r\n"
    # Sent a byte at a time, the head is never complete within the timeout.
    deadline = time.monotonic() + 2 * HEADER_TIMEOUT_S
    for index in range(len(request_head)):
        if time.monotonic() > deadline:
            break
        for connection in slow:
            try:
                connection.send(request_head[index : index + 1])
            except OSError:
                pass
        time.sleep(0.1)
    assert all(is_closed(connection) for connection in slow + silent)
    for connection in slow + silent:
        connection.close()
    assert_good_request_succeeds(client, exported)


def test_a_body_that_never_ends_is_cut_off(server, client, exported):
    connection = socket.create_connection(("127.0.0.1", server.port))
    connection.sendall(
        b"POST /v1/models/mnist:predict HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"instances\": ["
    )
    started = time.monotonic()
    # The head arrived in time; the body trickles in, a byte a second.
    for _ in range(int(BODY_TIMEOUT_S) + 1):
        time.sleep(1.0)
        try:
            connection.send(b"0")
        except OSError:
            break
    assert is_closed(connection, timeout_s=3 * BODY_TIMEOUT_S)
    assert time.monotonic() - started < 5 * BODY_TIMEOUT_S
    connection.close()
    assert_good_request_succeeds(client, exported)


def test_idle_keep_alive_connection_is_closed(server):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("GET", "/v1/models/mnist")
    answer = connection.getresponse()
    assert answer.status == 200 and answer.read()
    started = time.monotonic()
    # The keep-alive timeout is 1 s.
    assert is_closed(connection.sock, timeout_s=5)
    assert time.monotonic() - started < 3
    connection.close()


def test_connections_beyond_the_cap_get_503(server, client, exported):
    import http.client

    address = ("127.0.0.1", server.port)
    held = [socket.create_connection(address) for _ in range(MAX_CONNECTIONS)]
    try:
        connection = http.client.HTTPConnection(*address, timeout=30)
        connection.request("GET", "/v1/models/mnist")
        assert connection.getresponse().status == 503
        connection.close()
    finally:
        for each in held:
            each.close()
    # The server notices the closed connections within moments.
    deadline = time.monotonic() + 10
    while client.get("/v1/models/mnist").status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert_good_request_succeeds(client, exported)


def json_values():
    from hypothesis import strategies as st

    leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    return st.recursive(
        leaves,
        lambda children: st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=3),
        max_leaves=12,
    )


def tensor_values():
    """Nested lists of numbers of plausible and implausible shapes."""
    from hypothesis import strategies as st

    shapes = st.sampled_from(
        [(), (0,), (1,), (1, 28, 28, 1), (2, 28, 28, 1), (MAX_BATCH_SIZE + 1, 28, 28, 1),
         (28, 28, 1), (1, 28, 28), (1, 28, 28, 3), (3, 2)]
    )
    fills = st.sampled_from(["uniform", "integers", "huge", "negative"])
    return st.builds(
        lambda shape, fill, seed: _filled(shape, fill, seed), shapes, fills, st.integers(0, 2**16)
    )


def _filled(shape, fill, seed):
    generator = np.random.RandomState(seed)
    values = {
        "uniform": generator.rand(*shape),
        "integers": generator.randint(-3, 300, shape),
        "huge": generator.rand(*shape) * 1e38,
        "negative": -generator.rand(*shape),
    }[fill]
    return np.asarray(values).tolist()


def binary_values():
    from hypothesis import strategies as st

    image = st.builds(
        lambda shape, image_format: encode_image(np.zeros(shape, np.uint8), image_format),
        st.sampled_from([(5, 7), (9, 4, 3), (1, 1)]),
        st.sampled_from(["PNG", "JPEG", "BMP", "GIF", "PPM"]),
    )
    encoded = st.binary(max_size=64) | image | image.map(lambda data: data[: len(data) // 2])
    b64_object = encoded.map(b64) | st.builds(lambda text: {"b64": text}, st.text(max_size=12))
    return st.lists(b64_object | st.text(max_size=8), max_size=MAX_BATCH_SIZE + 1)


def predict_bodies():
    from hypothesis import strategies as st

    values = json_values() | tensor_values() | binary_values()
    names = st.sampled_from(SIGNATURES) | st.text(max_size=10) | json_values()
    named = st.dictionaries(st.sampled_from(["images", "image_bytes", "x"]), values, max_size=2)
    row = st.fixed_dictionaries({"instances": values | st.lists(named, max_size=3)})
    columnar = st.fixed_dictionaries({"inputs": values | named})
    body = (row | columnar).flatmap(
        lambda base: st.fixed_dictionaries(
            {key: st.just(value) for key, value in base.items()},
            optional={"signature_name": names, "extra": json_values()},
        )
    )
    return body.map(json.dumps).map(str.encode) | st.binary(max_size=40) | json_values().map(
        lambda value: json.dumps(value).encode()
    )


def test_fuzzed_requests_get_200_or_a_4xx_error(server, client, exported):
    from hypothesis import HealthCheck
    from hypothesis import given
    from hypothesis import settings

    answers = []

    @settings(
        max_examples=150, deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(body=predict_bodies())
    def check(body):
        answer = client.post(
            "/v1/models/mnist:predict", content=body, headers={"content-type": "application/json"}
        )
        answers.append(answer.status_code)
        assert answer.status_code == 200 or 400 <= answer.status_code < 500, (body[:300], answer.text)
        if answer.status_code != 200:
            assert list(answer.json()) == ["error"] and isinstance(answer.json()["error"], str)

    check()
    # Some fuzzed requests are valid, most are not.
    assert 200 in answers and 400 in answers
    assert_good_request_succeeds(client, exported)
