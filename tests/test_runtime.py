"""Devices, precision policies, distribution and quiet start-up on every backend."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from stn_keras import quiet_import
from stn_keras import runtime

ROOT = Path(__file__).resolve().parents[1]
BACKEND = keras.backend.backend()


def test_devices_of_the_active_backend():
    devices = runtime.describe_devices()
    assert devices.backend == BACKEND
    assert devices.kind == "cpu" and not devices.has_accelerator and devices.names
    assert devices.describe().startswith(f"{BACKEND}: CPU (")
    assert devices.as_record()["description"] == devices.describe()


def test_gpu_description_names_each_device():
    devices = runtime.DeviceInfo("jax", "gpu", ("NVIDIA H100 #0", "NVIDIA H100 #1"))
    assert devices.has_accelerator
    assert devices.describe() == "jax: 2 gpu (NVIDIA H100 #0, NVIDIA H100 #1)"


@pytest.mark.parametrize(
    "setting, kind, policy",
    [
        ("off", "gpu", "float32"),
        ("auto", "gpu", "mixed_float16"),
        ("auto", "cpu", "mixed_bfloat16"),
        ("auto", "tpu", "mixed_bfloat16"),
        ("float16", "cpu", "mixed_float16"),
        ("bfloat16", "gpu", "mixed_bfloat16"),
    ],
)
def test_mixed_precision_policy(setting, kind, policy):
    devices = runtime.DeviceInfo(BACKEND, kind, ("device",))
    assert runtime.mixed_precision_policy(setting, devices) == policy


def test_library_versions_name_the_backend_and_its_package():
    versions = runtime.library_versions()
    assert versions["keras_backend"] == BACKEND
    assert versions[BACKEND] and versions["keras"] == keras.__version__


def test_default_distribution_is_one_replica():
    distribution = runtime.make_distribution("default")
    assert distribution.num_replicas == 1
    with distribution.scope():
        pass


@pytest.mark.parametrize("strategy", ["mirrored", "data_parallel"])
def test_distribution_of_another_backend_says_which_backend(strategy):
    needed = {"mirrored": "tensorflow", "data_parallel": "jax"}[strategy]
    if BACKEND == needed:
        pytest.skip(f"{strategy} runs on {BACKEND}")
    with pytest.raises(ValueError) as error:
        runtime.make_distribution(strategy)
    assert f"Strategy '{strategy}' needs the {needed} backend; this run uses '{BACKEND}'" in str(
        error.value
    )
    assert f"KERAS_BACKEND={needed}" in str(error.value)


def test_start_up_filter_drops_information_and_keeps_problems():
    text = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1795899795.183112    3872 port.cc:153] oneDNN custom operations are on.\n"
        "I0000 00:00:1795899795.183933    3872 cudart_stub.cc:31] Could not find cuda drivers\n"
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild "
        "TensorFlow with the appropriate compiler flags.\n"
        "E0000 00:00:1795900025.576901    7389 cuda_platform.cc:52] failed call to cuInit: "
        "INTERNAL: CUDA error\n"
        "W0000 00:00:1795900025.576901    7389 some.cc:1] a real warning\n"
        "E0000 00:00:1795900025.576901    7389 other.cc:9] a real error\n"
        "Traceback (most recent call last):\n"
    )
    assert quiet_import.filter_start_up_lines(text) == (
        "W0000 00:00:1795900025.576901    7389 some.cc:1] a real warning\n"
        "E0000 00:00:1795900025.576901    7389 other.cc:9] a real error\n"
        "Traceback (most recent call last):\n"
    )


@pytest.mark.parametrize(
    "argv,orig_argv,expected",
    [
        (["-m"], ["python", "-m", "stn_keras.demo"], True),
        (["-m"], ["python", "-W", "ignore", "-m", "stn_keras.export", "runs/a"], True),
        (["-m"], ["python", "-m", "pytest", "tests"], False),
        ([str(ROOT / "train.py"), "--help"], None, True),
        (["serve.py"], None, True),
        ([str(ROOT / "stn_keras" / "export" / "__main__.py")], None, True),
        ([str(ROOT / "bench" / "bench_sampler.py")], None, False),
        (["/usr/lib/python3/site-packages/pytest/__main__.py"], None, False),
        (["-c"], ["python", "-c", "import stn_keras"], False),
        ([""], ["python"], False),
        ([], ["python"], False),
    ],
)
def test_only_stn_keras_command_lines_import_filtered(monkeypatch, argv, orig_argv, expected):
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(sys, "orig_argv", orig_argv or ["python", *argv])
    assert quiet_import.runs_a_command_line() is expected


def test_a_command_line_starts_quietly_and_still_shows_its_errors():
    completed = subprocess.run(
        [sys.executable, "evaluate.py", "--model", "model.keras", "--batch-size", "0"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "KERAS_BACKEND": BACKEND},
    )
    assert completed.returncode == 2
    assert completed.stderr.startswith("usage: evaluate.py"), completed.stderr
    assert "error: --batch-size and --num-samples must be >= 1" in completed.stderr


@pytest.mark.skipif(BACKEND != "tensorflow", reason="reads a JAX-trained model on TensorFlow")
def test_a_model_trained_on_jax_evaluates_the_same_on_tensorflow(tmp_path):
    """train.py on JAX, then evaluate.py on JAX and on TensorFlow: same numbers."""
    environment = {**os.environ, "KERAS_BACKEND": "jax"}
    run_dir = tmp_path / "jax-run"
    train = subprocess.run(
        [sys.executable, "train.py", "--epochs", "1", "--model", "cnn", "--verbose", "0",
         "--output-dir", str(run_dir)],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env=environment,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    assert "Device: jax: CPU" in train.stdout
    assert "python -m stn_keras.export" in train.stderr
    assert not (run_dir / "saved_model").exists()
    assert json.loads((run_dir / "config.json").read_text())["versions"]["keras_backend"] == "jax"
    results = {}
    for backend in ("jax", "tensorflow"):
        output = tmp_path / f"evaluation-{backend}"
        evaluated = subprocess.run(
            [sys.executable, "evaluate.py", "--model", str(run_dir / "model.keras"),
             "--output-dir", str(output)],
            capture_output=True, text=True, timeout=600, cwd=ROOT,
            env={**os.environ, "KERAS_BACKEND": backend},
        )
        assert evaluated.returncode == 0, evaluated.stderr[-3000:]
        results[backend] = json.loads((output / "metrics.json").read_text())
    assert results["jax"]["num_correct"] == results["tensorflow"]["num_correct"]
    assert results["jax"]["loss"] == pytest.approx(results["tensorflow"]["loss"], rel=1e-4)
    assert results["jax"]["accuracy"] > 0.5  # one epoch of the defaults learns


def test_a_failing_import_still_shows_its_warnings_and_error(tmp_path):
    (tmp_path / "noisy_module.py").write_text(
        "import os\n"
        "os.write(2, b'I0000 00:00:1795899795.1 1 port.cc:153] an informational line\\n')\n"
        "os.write(2, b'W0000 00:00:1795899795.2 1 some.cc:1] a real warning\\n')\n"
        "raise ImportError('the library is broken')\n"
    )
    script = "from stn_keras.quiet_import import import_filtered\nimport_filtered('noisy_module')\n"
    completed = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "KERAS_BACKEND": BACKEND, "PYTHONPATH": f"{tmp_path}:{ROOT}"},
    )
    assert completed.returncode == 1
    assert "a real warning" in completed.stderr
    assert "an informational line" not in completed.stderr
    assert "ImportError: the library is broken" in completed.stderr
