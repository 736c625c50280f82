"""`ServerProcess`: the server run as a subprocess on a free loopback port.

Test and benchmark scaffolding (tests/test_serving*.py, bench/bench_serving.py,
bench/soak_serving.py); not part of the package.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import stn_keras


def free_port():
    """A TCP port free on 127.0.0.1 at the time of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """``python -m stn_keras.serving`` run as a subprocess on a free loopback port.

    Starts the server with the given arguments, bound to 127.0.0.1 only,
    and waits until ``ready_model`` answers its status request. Used by the
    tests and the benchmark.

    Args:
        arguments: command-line arguments of the server after ``--host`` and
            ``--port``.
        ready_model: a model name whose status URL answers once it is up.
        startup_timeout_s: how long to wait for it.
    """

    def __init__(self, arguments, ready_model, startup_timeout_s=120):
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile(mode="a+b")
        # The subprocess imports the stn_keras this process imported, from a
        # checkout or an installation alike.
        package_root = os.path.dirname(os.path.dirname(stn_keras.__file__))
        search_path = os.pathsep.join(
            filter(None, [package_root, os.environ.get("PYTHONPATH")])
        )
        environment = dict(
            os.environ,
            KERAS_BACKEND="tensorflow",
            TF_CPP_MIN_LOG_LEVEL="3",
            PYTHONPATH=search_path,
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stn_keras.serving",
             "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "warning", *arguments],
            env=environment,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError("The server exited while starting:\n" + self.output())
            try:
                if httpx.get(f"{self.url}/v1/models/{ready_model}", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"The server did not answer within {startup_timeout_s} s")
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
