"""What a run executes on: backend, devices, precision policy, distribution.

Each Keras backend lists its devices, and distributes training, its own
way; this module gives the rest of the library one vocabulary for all of
them.
"""

import contextlib
import dataclasses
import importlib.metadata
import importlib.util
import os
import platform

import keras
import numpy as np

import stn_keras
from stn_keras.quiet_import import import_quietly

# The package each backend's version is read from.
BACKEND_PACKAGES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
    """The devices a backend computes on.

    Attributes:
        backend: the Keras backend name.
        kind: ``"gpu"``, ``"tpu"`` or ``"cpu"``, the kind training runs on.
        names: the backend's names of those devices.
    """

    backend: str
    kind: str
    names: tuple

    @property
    def has_accelerator(self):
        return self.kind != "cpu"

    def describe(self):
        """One line, e.g. ``jax: 1 gpu (NVIDIA H100 80GB HBM3)``."""
        if not self.has_accelerator:
            return f"{self.backend}: CPU ({os.cpu_count()} cores; no GPU visible)"
        return f"{self.backend}: {len(self.names)} {self.kind} ({', '.join(self.names)})"

    def as_record(self):
        return {
            "backend": self.backend,
            "kind": self.kind,
            "names": list(self.names),
            "description": self.describe(),
        }


def _tensorflow_devices():
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return "gpu", tuple(device.name for device in gpus)
    return "cpu", tuple(device.name for device in tf.config.list_logical_devices("CPU"))


def _jax_devices():
    import jax

    devices = jax.devices()
    kind = devices[0].platform
    return kind, tuple(
        f"{device.device_kind} #{device.id}" if kind != "cpu" else str(device)
        for device in devices
    )


def _torch_devices():
    import torch

    if torch.cuda.is_available():
        return "gpu", tuple(
            torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())
        )
    return "cpu", ("cpu",)


def describe_devices():
    """The :class:`DeviceInfo` of the active Keras backend."""
    backend = keras.backend.backend()
    listers = {
        "tensorflow": _tensorflow_devices,
        "jax": _jax_devices,
        "torch": _torch_devices,
    }
    if backend not in listers:
        return DeviceInfo(backend, "cpu", ("cpu",))
    kind, names = listers[backend]()
    return DeviceInfo(backend, kind, names)


def _version_of(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def library_versions():
    """Versions of what a run depends on, for ``config.json``."""
    versions = {
        "python": platform.python_version(),
        "stn_keras": stn_keras.__version__,
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "numpy": np.__version__,
    }
    for package in sorted(set(BACKEND_PACKAGES.values())):
        version = _version_of(package)
        if version is not None:
            versions[package] = version
    return versions


def tensorflow_available():
    """Whether TensorFlow can be imported (SavedModel, TensorBoard need it)."""
    return importlib.util.find_spec("tensorflow") is not None


def import_tensorflow():
    """Imports TensorFlow, also under another Keras backend, without its
    start-up chatter (see ``stn_keras.quiet_import``)."""
    return import_quietly("tensorflow")


def set_random_seed(seed):
    """Seeds Python, numpy and the backend (``keras.utils.set_random_seed``).

    Keras also seeds TensorFlow whenever it is installed, importing it under
    any backend: import it quietly first.
    """
    if tensorflow_available():
        import_tensorflow()
    keras.utils.set_random_seed(seed)


def mixed_precision_policy(setting, devices):
    """The Keras dtype policy for the ``mixed_precision`` setting.

    ``"auto"`` computes in float16 on a GPU and in bfloat16 elsewhere (CPU
    float16 is slow and loses range); ``"off"`` is float32.
    """
    if setting == "off":
        return "float32"
    if setting == "auto":
        setting = "float16" if devices.kind == "gpu" else "bfloat16"
    return f"mixed_{setting}"


@dataclasses.dataclass(frozen=True)
class Distribution:
    """How a run spreads over devices.

    Attributes:
        name: the ``strategy`` setting.
        num_replicas: model copies that each take a share of every batch.
        scope: a context manager to build and compile the model in.
    """

    name: str
    num_replicas: int
    scope: object


def _check_backend(strategy, backend, needed):
    if backend != needed:
        raise ValueError(
            f"Strategy {strategy!r} needs the {needed} backend; this run uses "
            f"{backend!r}. Run with KERAS_BACKEND={needed}, or choose "
            "strategy='default'. Received: strategy="
            f"{strategy!r}"
        )


def _mirrored_strategy():
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    # Without GPUs MirroredStrategy would use CPU:0 alone; use every logical
    # CPU device instead (see tf.config.set_logical_device_configuration).
    cpus = [device.name for device in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=cpus)


@contextlib.contextmanager
def _keras_distribution(distribution):
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(distribution)
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


def make_distribution(strategy):
    """The :class:`Distribution` for the ``strategy`` setting.

    ``default``: one device (with TensorFlow, its default strategy, which is
    also what a ``TF_CONFIG`` multi-worker set-up replaces); ``mirrored``:
    ``tf.distribute.MirroredStrategy`` (TensorFlow only); ``data_parallel``:
    ``keras.distribution.DataParallel`` over all local devices (JAX only).

    Raises:
        ValueError: the strategy does not exist on the active backend.
    """
    backend = keras.backend.backend()
    if strategy == "mirrored":
        _check_backend(strategy, backend, "tensorflow")
        mirrored = _mirrored_strategy()
        return Distribution(strategy, mirrored.num_replicas_in_sync, mirrored.scope)
    if strategy == "data_parallel":
        _check_backend(strategy, backend, "jax")
        devices = keras.distribution.list_devices()
        data_parallel = keras.distribution.DataParallel(devices=devices)
        return Distribution(
            strategy, len(devices), lambda: _keras_distribution(data_parallel)
        )
    if backend == "tensorflow":
        import tensorflow as tf

        default = tf.distribute.get_strategy()
        return Distribution(strategy, default.num_replicas_in_sync, default.scope)
    return Distribution(strategy, 1, contextlib.nullcontext)
