"""The layering rules of DESIGN.md, enforced.

- ``cfactor._core`` imports only ``cfactor.errors``, ``cfactor.abc`` and itself, and
  nothing of ZeroMQ, msgpack or etcd.
- Runtime code reads time and randomness only through the Clock and the seeded
  random source (``cfactor/_core/clock.py``), so a simulation can replay it.
- ``import cfactor`` loads no transport or membership library.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "cfactor" / "_core"
RUNTIME = ROOT / "cfactor"


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_the_core_imports_only_errors_abc_and_itself(path: Path) -> None:
    allowed_cfactor = ("cfactor._core", "cfactor.errors", "cfactor.abc")
    for name in imports_of(path):
        top = name.split(".")[0]
        assert top not in {"zmq", "msgpack", "aetcd", "grpc", "transports", "cfactor_zmq"}, name
        if top == "cfactor":
            assert name.startswith(allowed_cfactor), f"{path.name} imports {name}"


def runtime_files() -> list[Path]:
    # clock.py is the one place that reads time and randomness; the command line and
    # its process management (cli.py, tools/) launch processes, wait and sleep, and
    # are not part of the runtime a simulation replays.
    def is_runtime(path: Path) -> bool:
        relative = path.relative_to(RUNTIME)
        return path.name not in {"clock.py", "cli.py"} and relative.parts[0] != "tools"

    return sorted(p for p in RUNTIME.rglob("*.py") if is_runtime(p))


@pytest.mark.parametrize("path", runtime_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_runtime_code_reads_no_wall_clock_and_no_global_randomness(path: Path) -> None:
    names = imports_of(path)
    assert not names & {"time", "random", "uuid", "secrets"}, f"{path} imports {names}"


def test_importing_cfactor_loads_no_transport_or_membership_library() -> None:
    code = (
        "import sys, cfactor; "
        "print(sorted(m for m in ('zmq', 'msgpack', 'aetcd', 'grpc') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def private_names_defined_in(paths: list[Path]) -> set[str]:
    """``_x`` attributes and methods the given modules define (``self._x = ...``,
    ``def _x``), not dunders."""
    found: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                name = node.name
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                name = node.attr
            else:
                continue
            if name.startswith("_") and not name.startswith("__"):
                found.add(name)
    return found


def private_reads_of_others(path: Path) -> set[str]:
    """``x._y`` where ``x`` is not ``self`` or ``cls``: reaching into another object."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"})
        ):
            found.add(node.attr)
    return found


CORE_PRIVATE = private_names_defined_in(sorted(CORE.glob("*.py")))


@pytest.mark.parametrize(
    "path",
    sorted(p for p in RUNTIME.rglob("*.py") if CORE not in p.parents),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_the_layers_above_use_the_hosting_api_not_the_cores_private_state(path: Path) -> None:
    # ruff's SLF001 covers most files; this also covers the files exempt from it (they
    # may use their own private names, never the core's) and names like ``ref._cell``.
    own = private_names_defined_in([path])
    reached = (private_reads_of_others(path) & CORE_PRIVATE) - own
    assert not reached, f"{path.name} reaches into the core: {sorted(reached)}; use system.hosting"
