"""The package's layering: each part imports only the parts below it.

docs/ARCHITECTURE.md draws these layers; this test keeps the code to them.
Importing a part has no side effects on the process (file descriptors,
matplotlib's backend) and pulls in no part it does not need.
"""

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "stn_keras"

# Each part of the package and the parts it may import. A part is a
# sub-package or a top-level module of stn_keras.
ALLOWED = {
    "validation": set(),
    "quiet_import": set(),
    "files": set(),
    "saving": set(),
    "netpbm": set(),
    "extras": set(),
    "ops": {"validation"},
    "layers": {"ops", "validation"},
    "losses": {"validation"},
    "models": {"layers", "ops", "validation"},
    "data": {"ops", "validation", "files", "netpbm"},
    "visualization": {"ops"},
    "callbacks": {"models", "visualization", "validation", "files", "runtime", "run_dir"},
    "export": {"models", "layers", "run_dir", "runtime", "validation", "files", "saving", "settings", "data", "netpbm", "ops"},
    "run_dir": {"files"},
    "runtime": {"quiet_import"},
    "settings": {"models", "data", "validation", "run_dir"},
    "setting_flags": {"models", "ops"},
    "training": {"settings", "run_dir", "runtime", "data", "models", "callbacks", "losses"},
    "evaluation": {
        "settings", "run_dir", "runtime", "data", "models", "visualization", "export", "files",
        "saving", "validation",
    },
    "serving": {"export", "validation", "extras"},
    "pretrained": {"evaluation", "export"},
    "demo": {"settings", "training", "evaluation", "export"},
    "campaign": {"data", "files", "run_dir"},
}


def part_of(path):
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def imported_parts(path):
    """The stn_keras parts that the module at ``path`` imports."""
    parts = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            pieces = name.split(".")
            if pieces[0] == "stn_keras" and len(pieces) > 1 and pieces[1] in ALLOWED:
                parts.add(pieces[1])
    return parts


MODULES = sorted(
    path for path in PACKAGE.rglob("*.py") if path.name != "__init__.py" or path.parent != PACKAGE
)


def test_every_part_has_a_place_in_the_layers():
    parts = {part_of(path) for path in MODULES}
    assert parts == set(ALLOWED), "add new parts of the package to ALLOWED and the picture"


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_module_imports_only_the_layers_below(path):
    part = part_of(path)
    forbidden = imported_parts(path) - ALLOWED[part] - {part}
    assert not forbidden, f"{path.relative_to(PACKAGE)} ({part}) imports {sorted(forbidden)}"


# Within data: the placement geometry and the sampling stand below the
# distortions and the augmentation, which share them and not each other;
# the batch streams stand on both, and their settings on no stream.
DATA_MODULES = {
    "placement": set(),
    "warping": set(),
    "placement_distortions": {"placement", "warping"},
    "deformation_distortions": {"warping"},
    "distortions": {
        "placement_distortions", "deformation_distortions", "warping", "distortion_result",
    },
    "augmentation": {"placement", "warping"},
    "batch_settings": {"augmentation", "distortions"},
    "batch_sequence": {"batch_settings", "augmentation", "distortions", "images"},
    "pipeline": {"batch_settings", "batch_sequence"},
}


def imported_data_modules(path):
    """The modules of stn_keras.data that the module at ``path`` imports."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            pieces = node.module.split(".")
            if pieces[:2] == ["stn_keras", "data"] and len(pieces) > 2:
                modules.add(pieces[2])
    return modules


@pytest.mark.parametrize("module", sorted(DATA_MODULES))
def test_data_module_imports_only_the_modules_below(module):
    forbidden = imported_data_modules(PACKAGE / "data" / f"{module}.py") - DATA_MODULES[module]
    assert not forbidden, f"data/{module}.py imports {sorted(forbidden)}"


def run_python(script, **environment):
    """Runs ``script`` in a fresh interpreter; returns its stdout."""
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True, text=True, timeout=120, cwd=PACKAGE.parent,
        env={**os.environ, "KERAS_BACKEND": keras.backend.backend(), **environment},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


# The modules of stn_keras/evaluation/ and the ones of it each may import:
# one job a module, and only `evaluate` (evaluate_model) runs them together.
EVALUATION_MODULES = {
    "trained_model": set(),
    "transformer_view": set(),
    "loading": {"trained_model", "transformer_view"},
    "model_run": set(),
    "metrics": set(),
    "paired_comparison": set(),
    "error_overlap": set(),
    "error_breakdown": set(),
    "reports": {"error_breakdown"},
    "sample_picking": set(),
    "transformer_pictures": {"sample_picking"},
    "evaluate_model": {
        "error_breakdown", "loading", "metrics", "paired_comparison", "reports",
        "trained_model", "transformer_pictures",
    },
}


def evaluation_modules_imported(path):
    """The modules of stn_keras.evaluation that the module at ``path`` imports."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            pieces = node.module.split(".")
            if pieces[:2] == ["stn_keras", "evaluation"] and len(pieces) > 2:
                modules.add(pieces[2])
    return modules


def test_every_evaluation_module_has_one_job_listed():
    found = {path.stem for path in (PACKAGE / "evaluation").glob("*.py")} - {"__init__"}
    assert found == set(EVALUATION_MODULES), "add new modules of evaluation/ to EVALUATION_MODULES"


@pytest.mark.parametrize("name", sorted(EVALUATION_MODULES))
def test_evaluation_module_imports_only_the_ones_it_builds_on(name):
    imported = evaluation_modules_imported(PACKAGE / "evaluation" / f"{name}.py")
    assert imported <= EVALUATION_MODULES[name], (
        f"evaluation/{name}.py imports {sorted(imported - EVALUATION_MODULES[name])}"
    )


def test_importing_and_drawing_leave_the_process_alone(tmp_path):
    """A library imported into a notebook or a server must not reroute its
    stderr (the command lines filter TensorFlow's start-up lines themselves)
    nor switch the plotting backend its user chose. TensorFlow is imported
    too, as the library does under every backend."""
    path = tmp_path / "confusion_matrix.png"
    output = run_python(
        f"""
        import os
        calls = []
        for name in ("dup", "dup2"):
            def recorded(*arguments, real=getattr(os, name), name=name):
                calls.append(name)
                return real(*arguments)
            setattr(os, name, recorded)
        before = os.fstat(2)
        import matplotlib
        from stn_keras import runtime
        from stn_keras import visualization
        runtime.import_tensorflow()
        visualization.plot_confusion_matrix([[3, 1], [0, 2]], ["a", "b"], {str(path)!r})
        after = os.fstat(2)
        print(calls, (before.st_dev, before.st_ino) == (after.st_dev, after.st_ino))
        print(matplotlib.get_backend())
        """,
        MPLBACKEND="svg",
    )
    assert output.splitlines() == ["[] True", "svg"]
    assert path.read_bytes().startswith(b"\x89PNG")


APPLICATION_PARTS = ("training", "callbacks", "models", "visualization")


def test_serving_and_export_import_no_training_models_or_pictures():
    output = run_python(
        f"""
        import sys
        for module in ("stn_keras.export", "stn_keras.serving"):
            __import__(module)
            parts = [name for name in {APPLICATION_PARTS!r} if "stn_keras." + name in sys.modules]
            print(module, parts)
        """
    )
    assert output.splitlines() == ["stn_keras.export []", "stn_keras.serving []"]
