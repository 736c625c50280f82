"""`ServerProcess`: serve.py run as a subprocess on a free loopback port."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

SERVE_SCRIPT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "serve.py",
)


def free_port():
    """A TCP port free on 127.0.0.1 at the time of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """``serve.py`` run as a subprocess on a free loopback port.

    Starts ``serve.py`` with the given arguments, bound to 127.0.0.1 only,
    and waits until ``ready_model`` answers its status request. Used by the
    tests and the benchmark.

    Args:
        arguments: arguments of serve.py after ``--host`` and ``--port``.
        ready_model: a model name whose status URL answers once it is up.
        startup_timeout_s: how long to wait for it.
    """

    def __init__(self, arguments, ready_model, startup_timeout_s=120):
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile(mode="a+b")
        environment = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
        self.process = subprocess.Popen(
            [sys.executable, SERVE_SCRIPT,
             "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "warning", *arguments],
            cwd=os.path.dirname(SERVE_SCRIPT),
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
