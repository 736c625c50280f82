"""Starting stn_keras's command lines without TensorFlow's start-up chatter.

TensorFlow prints a dozen informational lines (oneDNN, CUDA stubs, CPU
instruction sets) to the process' stderr while it is imported, before its
logging is initialised, so neither ``TF_CPP_MIN_LOG_LEVEL`` nor Python's
logging can filter them. :func:`import_filtered` routes file descriptor 2
through a filter during the import that passes on every line except those
informational ones: real warnings and errors still show.

Rerouting a process' file descriptors is the business of the program that
owns the process, not of a library imported into it (a notebook, a server):
:func:`import_quietly` filters only when the process runs one of stn_keras's
own command lines (:func:`runs_a_command_line`), and is a plain import
everywhere else.
"""

import contextlib
import importlib
import os
import re
import sys
import threading

# absl's informational records ("I0000 00:00:...") and the notice it prints
# before its logging is initialised; the CPU-feature notice spans two lines;
# on a machine without a GPU driver, the CUDA stub logs its failed probe as
# an error although nothing is wrong.
INFORMATIONAL_LINE = re.compile(
    r"^(I\d{4} \d\d:\d\d:\d\d"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions: .*rebuild TensorFlow"
    r"|E\d{4} .*cuda_platform\.cc:\d+\] failed call to cuInit)"
)


def filter_start_up_lines(text):
    """``text`` without TensorFlow's informational start-up lines."""
    return "".join(
        line
        for line in text.splitlines(keepends=True)
        if not INFORMATIONAL_LINE.match(line)
    )


@contextlib.contextmanager
def _stderr_filtered():
    """Routes file descriptor 2 through a filter while the block runs.

    A pipe rather than a file: each kept line is passed on as it arrives,
    so what a crashing import prints (a fatal CUDA or CPU check) still
    reaches the terminal.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward():
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if not INFORMATIONAL_LINE.match(line.decode(errors="replace")):
                    os.write(saved, line)

    forwarder = threading.Thread(target=forward, name="stderr-filter", daemon=True)
    forwarder.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        # Closing the pipe's last write end ends the forwarder's loop.
        os.dup2(saved, 2)
        forwarder.join()
        os.close(saved)


# One import at a time: two threads swapping file descriptor 2 would mix up
# each other's stderr.
_IMPORT_LOCK = threading.Lock()


def runs_a_command_line():
    """Whether this process runs one of stn_keras's command lines.

    Those are ``python -m stn_keras.<module>`` and the scripts beside the
    package in the repository (``train.py``, ``evaluate.py``, ``serve.py``):
    programs whose file lies in the package or beside it. While Python
    locates the module of ``python -m`` it imports the module's packages
    with ``sys.argv[0]`` set to ``"-m"`` (see the documentation of ``-m``),
    so the module is then read from the original command line.
    """
    program = sys.argv[0] if sys.argv else ""
    if program == "-m":
        arguments = sys.orig_argv
        module = next(
            (after for flag, after in zip(arguments, arguments[1:]) if flag == "-m"), ""
        )
        return module.startswith("stn_keras.")
    if not program.endswith(".py"):
        return False
    package = os.path.dirname(os.path.abspath(__file__))
    folder = os.path.dirname(os.path.abspath(program))
    return folder == os.path.dirname(package) or os.path.commonpath([folder, package]) == package


def import_quietly(module_name):
    """Imports ``module_name``, filtered in stn_keras's command lines only.

    Returns the module: :func:`import_filtered` where
    :func:`runs_a_command_line`, a plain import elsewhere.
    """
    if runs_a_command_line():
        return import_filtered(module_name)
    return importlib.import_module(module_name)


def import_filtered(module_name):
    """Imports ``module_name`` with TensorFlow's start-up lines filtered.

    For command lines only: it reroutes file descriptor 2. Returns the
    module. Also sets ``TF_CPP_MIN_LOG_LEVEL=1`` unless set, so TensorFlow's
    later C++ informational lines stay quiet while its warnings show. A
    module already imported is returned as is.
    """
    with _IMPORT_LOCK:
        if module_name in sys.modules:
            return sys.modules[module_name]
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
        try:
            os.fstat(2)
        except OSError:
            # No stderr to capture (a daemon, some notebooks): nothing to hide.
            return importlib.import_module(module_name)
        with _stderr_filtered():
            module = importlib.import_module(module_name)
            if "tensorflow" in sys.modules:
                # TensorFlow probes for CUDA when it first lists devices, not
                # on import: do that now, inside the filter.
                sys.modules["tensorflow"].config.list_physical_devices()
            return module
