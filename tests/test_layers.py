"""The layering rules of docs/design.md, enforced.

- ``cfactor._core`` imports only ``cfactor.errors``, ``cfactor.abc`` and itself, and
  nothing of ZeroMQ, msgpack or etcd.
- Runtime code reads time and randomness only through the Clock and the seeded
  random source (``cfactor/_core/clock.py``), so a simulation can replay it: no
  ``time``, and no waiting on asyncio's (or anyio's) own timers either
  (``asyncio.sleep`` other than ``sleep(0)``, ``wait_for``, ``timeout``, ``wait(timeout=)``,
  ``loop.time()``, ``loop.call_later``), in every layer and the transports.
- ``import cfactor`` loads no transport or membership library, and not the flow layer
  (loaded when first used), its HTTP endpoint or ctypes.
- The flow layer sends and matches only the message classes of
  ``cfactor/flow/messages.py``: no string, and no string-tagged tuple, as a message.
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
    # are not part of the runtime a simulation replays; nor are the shipped conformance
    # suites (_check_*.py), which drive a real backend from outside in real time; nor
    # the simulator (testing/sim/), which *is* the clock and the randomness of a run.
    def is_runtime(path: Path) -> bool:
        relative = path.relative_to(RUNTIME)
        return (
            path.name not in {"clock.py", "cli.py"}
            and not path.name.startswith("_check_")
            and relative.parts[0] != "tools"
            and relative.parts[:2] != ("testing", "sim")
        )

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


# -- errors (issue 11, item 7) ----------------------------------------------------------

CODE_DIRS = ("cfactor", "transports", "examples", "benchmarks")


def code_files() -> list[Path]:
    return sorted(p for top in CODE_DIRS for p in (ROOT / top).rglob("*.py"))


def error_names() -> set[str]:
    import cfactor.errors

    return {
        name
        for name, value in vars(cfactor.errors).items()
        if isinstance(value, type) and issubclass(value, cfactor.errors.CfactorError)
    }


def name_keyed_error_tables(source: str, names: set[str]) -> list[str]:
    """Each place in ``source`` that maps errors by name on its own: a dict keyed by
    ``cls.__name__``, a ``type(x).__name__ in ...`` test, or a collection of error
    names as strings (a module's ``__all__`` lists names, it maps nothing)."""
    found: list[str] = []
    tree = ast.parse(source)
    exported = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
    }
    for node in ast.walk(tree):
        if id(node) in exported:
            continue
        if isinstance(node, ast.DictComp) and isinstance(node.key, ast.Attribute):
            if node.key.attr == "__name__":
                found.append(f"line {node.lineno}: a dict keyed by __name__")
        elif isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute):
            if node.left.attr == "__name__" and any(
                isinstance(op, ast.In | ast.NotIn) for op in node.ops
            ):
                found.append(f"line {node.lineno}: a membership test on __name__")
        elif isinstance(node, ast.Set | ast.List | ast.Tuple | ast.Dict):
            items = node.keys if isinstance(node, ast.Dict) else node.elts
            named = [i.value for i in items if isinstance(i, ast.Constant) and i.value in names]
            if len(named) >= 2:
                found.append(f"line {node.lineno}: error names as strings {named}")
    return found


@pytest.mark.parametrize("path", code_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_errors_cross_the_wire_through_the_one_table(path: Path) -> None:
    # cfactor/errors.py owns it (register_wire_error, wire_error_name/_type).
    if path == RUNTIME / "errors.py":
        return
    assert not name_keyed_error_tables(path.read_text(), error_names())


def test_the_table_rule_catches_the_old_tables() -> None:
    names = error_names()
    old = (
        "T = {cls.__name__: cls for cls in (A, B)}\n"
        "if type(e).__name__ in T: pass\n"
        "LOST = frozenset({'MemberUnreachable', 'ActorStopped'})\n"
    )
    assert len(name_keyed_error_tables(old, names)) == 3


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
    [*code_files(), *(ROOT / "tests").rglob("*.py")],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_nothing_uses_the_deprecated_node_unreachable(path: Path) -> None:
    # A member is a process, a Node a dataflow step: the old name stays only as an
    # alias (and in the tests of that alias, and here).
    allowed = {
        RUNTIME / "errors.py",
        RUNTIME / "__init__.py",
        ROOT / "tests" / "core" / "test_errors.py",
        Path(__file__).resolve(),
    }
    if path in allowed:
        return
    assert "NodeUnreachable" not in path.read_text()


def modules_loaded_by(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"import sys; {code}; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return set(out.stdout.split())


def test_importing_cfactor_loads_no_flow_driver_http_or_ctypes() -> None:
    # 26 cfactor modules (170 in all) before the flow layer loaded lazily; 20 (150) after.
    loaded = modules_loaded_by("import cfactor")
    assert not {m for m in loaded if m.startswith("cfactor.flow")}
    assert not loaded & {"ctypes", "cfactor.autoscale.controller", "cfactor.cluster.runtime"}
    # The first use loads the model, not the driver: that waits for app.run().
    loaded = modules_loaded_by("import cfactor; cfactor.App")
    assert "cfactor.flow.model" in loaded
    assert not loaded & {"cfactor.flow.run", "cfactor.flow.http", "cfactor.flow.threads", "ctypes"}


def test_the_lazy_names_are_in_all_and_resolve() -> None:
    import cfactor

    for name in cfactor.__all__:
        assert getattr(cfactor, name) is not None, name
    assert set(cfactor.__all__) <= set(dir(cfactor))
    with pytest.raises(AttributeError):
        _ = cfactor.NoSuchName


def test_the_autoscaling_policy_imports_nothing_that_runs() -> None:
    # Sans-IO (docs/autoscale.md): depths in, counts out. The controller, which runs
    # on a clock and an event loop, is loaded by cf.Replicas.start (autoscale/config.py).
    policy = ROOT / "cfactor" / "autoscale" / "policy.py"
    allowed = {"__future__", "math", "dataclasses", "fractions", "typing"}
    allowed |= {"cfactor.autoscale.config", "cfactor.errors"}
    assert imports_of(policy) <= allowed, imports_of(policy) - allowed
    config = ROOT / "cfactor" / "autoscale" / "config.py"
    top_level = {
        alias.name if isinstance(node, ast.Import) else node.module
        for node in ast.parse(config.read_text()).body
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not top_level & {"asyncio", "cfactor.autoscale.controller"}
    loaded = modules_loaded_by("import cfactor.autoscale.policy")
    assert "cfactor.autoscale.controller" not in loaded


def test_the_per_peer_transport_state_is_sans_io() -> None:
    # docs/transport.md, "Module map": counts and time in, decisions out. Both the zmq
    # and the memory transport keep their per-peer protocol state in it, so it must not
    # pull in sockets, an event loop, a clock or a codec (nor the core that runs them).
    module = RUNTIME / "transport_state.py"
    allowed = {"__future__", "enum", "dataclasses", "typing", "cfactor.abc"}
    assert imports_of(module) <= allowed, imports_of(module) - allowed
    runtime_imports = {
        alias.name if isinstance(node, ast.Import) else node.module
        for node in ast.parse((RUNTIME / "abc.py").read_text()).body
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not runtime_imports & {"asyncio", "socket", "selectors", "zmq", "msgpack"}
    for user in (TRANSPORTS / "cfactor_zmq" / "_transport.py", RUNTIME / "testing" / "memory.py"):
        assert "cfactor.transport_state" in imports_of(user), f"{user.name} keeps its own"


@pytest.mark.parametrize(
    "path",
    # The simulator's event loop works on asyncio's own handles (``_run``, ``_when``), whose
    # names the core happens to use too; it reaches into nothing of the core's.
    sorted(
        p
        for p in RUNTIME.rglob("*.py")
        if CORE not in p.parents and p != RUNTIME / "testing" / "sim" / "loop.py"
    ),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_the_layers_above_use_the_hosting_api_not_the_cores_private_state(path: Path) -> None:
    # ruff's SLF001 covers most files; this also covers the files exempt from it (they
    # may use their own private names, never the core's) and names like ``ref._cell``.
    own = private_names_defined_in([path])
    reached = (private_reads_of_others(path) & CORE_PRIVATE) - own
    assert not reached, f"{path.name} reaches into the core: {sorted(reached)}; use system.hosting"


# -- each layer's own protocol in one module (issue 11 item 3) ----------------------------

FLOW = RUNTIME / "flow"
SENDS = {"ask", "tell", "tell_nowait"}


def _tagged(node: ast.AST) -> bool:
    """A string, or a tuple (or its pattern) that starts with one: protocol 1's tags."""
    if isinstance(node, ast.MatchValue):
        node = node.value
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.Tuple | ast.MatchSequence):
        items = node.elts if isinstance(node, ast.Tuple) else node.patterns
        return bool(items) and _tagged(items[0])
    return False


def string_tagged_messages(source: str) -> list[str]:
    """Each ``case`` arm, and each message sent with ask/tell, that is a string or a
    string-tagged tuple instead of a message class."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.match_case) and _tagged(node.pattern):
            found.append(f"line {node.pattern.lineno}: case {ast.unparse(node.pattern)}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in SENDS
            and node.args
            and _tagged(node.args[0])
        ):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("path", sorted(FLOW.glob("*.py")), ids=lambda p: p.name)
def test_the_flow_layer_speaks_only_the_messages_of_its_messages_module(path: Path) -> None:
    # cfactor/flow/messages.py declares the flow protocol (docs/flow.md, "Messages").
    found = string_tagged_messages(path.read_text())
    assert found == [], f"{path.name} uses string-tagged messages: {found}"


@pytest.mark.parametrize(
    "source",
    [
        "match m:\n    case ('progress', str(path), int(index)): pass",
        "match m:\n    case 'where': pass",
        "await ref.ask(('eos', sender), timeout=math.inf)",
        "await ref.tell('start')",
        "monitor.tell_nowait(('replicas', node, count))",
    ],
)
def test_the_flow_message_rule_catches(source: str) -> None:
    assert len(string_tagged_messages(source)) == 1


@pytest.mark.parametrize(
    "source",
    [
        "match m:\n    case Progress(path, index): pass",
        "match m:\n    case (1, 2): pass",
        "await ref.ask(EndOfStream(sender), timeout=math.inf)",
        "await ref.tell(Start())",
        "action = ('shell', command)",
    ],
)
def test_the_flow_message_rule_allows(source: str) -> None:
    assert string_tagged_messages(source) == []


CLUSTER = RUNTIME / "cluster"


def run_time_imports_of(path: Path) -> set[str]:
    """The modules ``path`` imports when it runs: at its top level, not under
    ``if TYPE_CHECKING:`` and not inside functions (a deliberate lazy import)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("name", ["policy.py", "outage.py", "messages.py"])
def test_the_clusters_pure_modules_import_nothing_that_runs(name: str) -> None:
    # Sans-IO, as autoscale/policy.py: the placement choice, the outage bookkeeping and
    # the protocol are values in, values out, tested without a member or a loop.
    allowed = {"__future__", "typing", "dataclasses", "cfactor.errors", "cfactor.wire"}
    allowed |= {"cfactor.cluster.messages"}
    found = run_time_imports_of(CLUSTER / name)
    assert found <= allowed, found - allowed


@pytest.mark.parametrize(
    "path",
    sorted(p for p in CLUSTER.glob("*.py") if p.name not in {"runtime.py", "__init__.py"}),
    ids=lambda p: p.name,
)
def test_the_cluster_parts_know_the_member_only_as_a_type(path: Path) -> None:
    # runtime.py wires the parts (docs/cluster.md, "Modules"); a part that imported it
    # would be wiring too, and an import cycle away from breaking.
    assert "cfactor.cluster.runtime" not in run_time_imports_of(path)


def test_the_cluster_rules_catch(tmp_path: Path) -> None:
    part = tmp_path / "part.py"
    part.write_text(
        "from typing import TYPE_CHECKING\nimport asyncio\n"
        "from cfactor.cluster.runtime import ClusterMember\n"
        "if TYPE_CHECKING:\n    from cfactor.abc import Clock\n"
        "def later():\n    import aetcd\n"
    )
    assert run_time_imports_of(part) == {"typing", "asyncio", "cfactor.cluster.runtime"}
