"""The layering rules of DESIGN.md, enforced.

- ``cfactor._core`` imports only ``cfactor.errors``, ``cfactor.abc`` and itself, and
  nothing of ZeroMQ, msgpack or etcd.
- Runtime code reads time and randomness only through the Clock and the seeded
  random source (``cfactor/_core/clock.py``), so a simulation can replay it: no
  ``time``, and no waiting on asyncio's (or anyio's) own timers either
  (``asyncio.sleep`` other than ``sleep(0)``, ``wait_for``, ``timeout``, ``wait(timeout=)``,
  ``loop.time()``, ``loop.call_later``), in every layer and the transports.
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
TRANSPORTS = ROOT / "transports"


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

    return sorted(
        [
            *(p for p in RUNTIME.rglob("*.py") if is_runtime(p)),
            *TRANSPORTS.rglob("*.py"),
        ]
    )


@pytest.mark.parametrize("path", runtime_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_runtime_code_reads_no_wall_clock_and_no_global_randomness(path: Path) -> None:
    names = imports_of(path)
    assert not names & {"time", "random", "uuid", "secrets"}, f"{path} imports {names}"


# What waits on real time behind the Clock's back. ``asyncio.sleep(0)`` only yields to
# the loop (no time passes) and ``asyncio.wait`` without a timeout waits on its futures
# alone: both stay allowed.
TIMED_ASYNCIO = {"sleep", "wait_for", "timeout", "timeout_at"}
TIMED_ANYIO = {"sleep", "sleep_until", "sleep_forever", "fail_after", "move_on_after"}
TIMED_ANYIO |= {"fail_at", "move_on_at", "current_time"}
LOOP_TIMERS = {"time", "call_later", "call_at"}


def _is_zero(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value == 0


def _is_loop(node: ast.expr) -> bool:
    """``loop``, ``self._loop``, ``self.system.loop``, ``asyncio.get_running_loop()``."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Name):
        return node.id.lstrip("_").endswith("loop")
    if isinstance(node, ast.Attribute):
        return node.attr.lstrip("_").endswith("loop")
    return False


def clock_bypasses(source: str) -> list[str]:
    """Each call in ``source`` that waits on or reads time without the Clock."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module in {"asyncio", "anyio"}:
            timed = TIMED_ASYNCIO if node.module == "asyncio" else TIMED_ANYIO
            found += [f"from {node.module} import {a.name}" for a in node.names if a.name in timed]
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        func, owner = node.func, node.func.value
        where = f"line {node.lineno}: {ast.unparse(node.func)}"
        if isinstance(owner, ast.Name) and owner.id == "asyncio":
            if func.attr == "sleep" and node.args and _is_zero(node.args[0]):
                continue
            if func.attr in TIMED_ASYNCIO or (
                func.attr == "wait" and any(k.arg == "timeout" for k in node.keywords)
            ):
                found.append(where)
        elif (isinstance(owner, ast.Name) and owner.id == "anyio" and func.attr in TIMED_ANYIO) or (
            func.attr in LOOP_TIMERS and _is_loop(owner)
        ):
            found.append(where)
    return found


@pytest.mark.parametrize("path", runtime_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_runtime_code_waits_only_through_the_clock(path: Path) -> None:
    assert clock_bypasses(path.read_text()) == [], f"{path} bypasses the Clock"


@pytest.mark.parametrize(
    "source",
    [
        "await asyncio.sleep(0.5)",
        "await asyncio.sleep(delay)",
        "await asyncio.wait_for(fut, 1.0)",
        "async with asyncio.timeout(1.0): pass",
        "async with asyncio.timeout_at(deadline): pass",
        "await asyncio.wait(tasks, timeout=0.1)",
        "deadline = loop.time() + 1.0",
        "now = asyncio.get_running_loop().time()",
        "self._loop.call_later(0.1, f)",
        "self.system.loop.call_at(when, f)",
        "from asyncio import sleep",
        "await anyio.sleep(1)",
        "with anyio.move_on_after(1): pass",
    ],
)
def test_the_clock_rule_catches(source: str) -> None:
    assert len(clock_bypasses(source)) == 1


@pytest.mark.parametrize(
    "source",
    [
        "await asyncio.sleep(0)",
        "await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)",
        "await clock.sleep(0.5)",
        "async with self.system.clock.timeout(1.0): pass",
        "clock.call_later(0.1, f)",
        "loop.call_soon(f)",
        "loop.create_task(coro)",
    ],
)
def test_the_clock_rule_allows(source: str) -> None:
    assert clock_bypasses(source) == []


def test_importing_cfactor_loads_no_transport_or_membership_library() -> None:
    code = (
        "import sys, cfactor; "
        "print(sorted(m for m in ('zmq', 'msgpack', 'aetcd', 'grpc') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
