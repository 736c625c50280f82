"""The package's layering: each part imports only the parts below it.

docs/ARCHITECTURE.md draws these layers; this test keeps the code to them.
"""

import ast
from pathlib import Path

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
    "ops": {"validation"},
    "layers": {"ops", "validation"},
    "models": {"layers", "ops", "validation"},
    "data": {"ops", "validation", "files", "netpbm"},
    "visualization": {"ops"},
    "callbacks": {"models", "visualization", "validation", "files", "runtime", "run_dir"},
    "export": {"models", "layers", "run_dir", "runtime", "validation", "files", "saving", "config", "data", "netpbm", "ops"},
    "run_dir": {"files"},
    "runtime": {"quiet_import"},
    "config": {"models", "data", "validation"},
    "training": {"config", "run_dir", "runtime", "data", "models", "callbacks", "export"},
    "evaluation": {
        "config", "run_dir", "runtime", "data", "models", "visualization", "export", "files",
        "saving",
    },
    "serving": {"export", "validation"},
    "pretrained": {"evaluation", "export"},
    "demo": {"config", "training", "evaluation"},
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
