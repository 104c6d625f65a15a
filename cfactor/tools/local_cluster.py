"""``cfactor cluster start|join|stop`` and ``cfactor status``: the work behind the CLI.

A local cluster is an etcd (started from the installed binary unless one is given)
and N member processes, each ``cfactor cluster join``. ``cluster start`` supervises
them and writes a state file, so ``cluster stop`` and ``status`` find them by the
cluster's name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cfactor as cf
from cfactor.errors import CfactorError
from cfactor.tools.etcd_server import EtcdServer

JOIN_TIMEOUT_S = 20.0


class ToolError(Exception):
    """A problem the user can fix; the CLI prints it as one line."""


def state_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"cfactor-{os.getuid()}"


def state_file(name: str) -> Path:
    return state_dir() / f"cluster-{name}.json"


def parse_labels(items: list[str]) -> dict[str, str]:
    labels = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ToolError(f"labels look like key=value, got {item!r}")
        labels[key] = value
    return labels


def check_url(what: str, url: str, schemes: tuple[str, ...]) -> None:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in schemes or not rest:
        raise ToolError(f"{what} must look like {schemes[0]}://HOST:PORT, got {url!r}")


# -- join -------------------------------------------------------------------------------------

#: The GIL switch interval of the processes cfactor's CLI runs (members, `cfactor run`).
#: Sync Node functions run in worker threads; at Python's default 5 ms, the threads of a
#: busy member hand the GIL to each other 200 times a second; benchmarks/switch_interval.py
#: ran an embedded wordcount at 22.8 MB/s at 5 ms and 25.9 MB/s at 50 ms (5 runs each;
#: docs/flow.md). The event loop then waits at most 50 ms for the GIL behind a busy
#: thread: far inside the 2 s heartbeat timeout.
SWITCH_INTERVAL_S = 0.05


def run_node_functions_well() -> None:
    """Set this process's GIL switch interval for running Node functions in threads."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)


async def _serve_member(
    etcd: str, listen: str, name: str, labels: dict[str, str], ttl_s: float
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    cluster = cf.Cluster(etcd=etcd, name=name, labels=labels, ttl_s=ttl_s)
    async with cf.ActorSystem(listen=listen, cluster=cluster) as system:
        runtime: Any = system.cluster
        print(
            f"member {runtime.member_id} listening on {system.address} in cluster {name!r}",
            flush=True,
        )
        await stop.wait()
        print(f"member {runtime.member_id} leaving", flush=True)


def join(etcd: str, listen: str, name: str, labels: list[str], ttl_s: float) -> int:
    """Run one member until SIGTERM or Ctrl-C; leave the cluster cleanly.

    Raises:
        ToolError: Bad arguments, or etcd cannot be reached.
    """
    check_url("--etcd", etcd, ("http", "etcd"))
    check_url("--listen", listen, ("tcp", "ipc"))
    parsed = parse_labels(labels)
    run_node_functions_well()
    try:
        cf.run(_serve_member(etcd, listen, name, parsed, ttl_s))
    except cf.MembershipUnavailable as exc:
        raise ToolError(f"cannot reach etcd at {etcd}: {exc}") from exc
    except cf.ConfigError as exc:
        raise ToolError(str(exc)) from exc
    return 0


# -- start / stop -----------------------------------------------------------------------------


@dataclass
class Started:
    etcd: EtcdServer | None
    endpoint: str
    members: list[subprocess.Popen[str]]
    addresses: list[str]


def join_command(
    etcd: str,
    name: str,
    ttl_s: float,
    labels: tuple[str, ...] = (),
    listen: str = "tcp://127.0.0.1:0",
) -> list[str]:
    """The command line of one ``cfactor cluster join`` member process."""
    command = [sys.executable, "-m", "cfactor.cli", "cluster", "join", "--etcd", etcd]
    command += ["--listen", listen, "--name", name, "--ttl", str(ttl_s)]
    for label in labels:
        command += ["--label", label]
    return command


def _start_member(endpoint: str, name: str, ttl_s: float) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - this interpreter running this package
        join_command(endpoint, name, ttl_s),
        stdout=subprocess.PIPE,
        stderr=None,  # members' warnings reach the terminal of `cluster start`
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # Ctrl-C reaches the supervisor, which stops members in order
    )


def _wait_joined(process: subprocess.Popen[str], index: int = 0) -> str:
    """The member's address, from its first line; its later output is copied to ours.

    A thread reads the member's stdout for as long as it runs: a member whose output
    nobody read would block on a full pipe and stop answering.

    Raises:
        ToolError: It printed no address within JOIN_TIMEOUT_S (it is killed).
    """
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, name=f"member-{index}-stdout", daemon=True).start()
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            break
        if line is None:
            break
        if " listening on " in line:
            threading.Thread(target=_forward, args=(lines, index), daemon=True).start()
            return line.split(" listening on ")[1].split()[0]
    process.kill()
    raise ToolError(
        f"a member did not join within {JOIN_TIMEOUT_S:g} s (exit code {process.poll()})"
    )


def _forward(lines: queue.Queue[str | None], index: int) -> None:
    while (line := lines.get()) is not None:
        print(f"[member {index}] {line}", end="", flush=True)


def start(members: int, etcd: str | None, name: str, ttl_s: float) -> int:
    """Start etcd (unless given) and ``members`` member processes; supervise them.

    Raises:
        ToolError: Bad arguments, a cluster of that name already running here, or a
            process that did not start.
    """
    if members < 1:
        raise ToolError(f"--members must be at least 1, got {members}")
    if etcd is not None:
        check_url("--etcd", etcd, ("http", "etcd"))
    path = state_file(name)
    if path.exists() and _alive(json.loads(path.read_text()).get("supervisor", 0)):
        raise ToolError(
            f"cluster {name!r} is already running here (cfactor cluster stop --name {name})"
        )
    started = Started(None, etcd or "", [], [])
    stopping = False

    def request_stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        if etcd is None:
            print("starting etcd ...", flush=True)
            started.etcd = EtcdServer(fast=False)
            try:
                started.etcd.start()
            except (RuntimeError, FileNotFoundError) as exc:
                raise ToolError(f"cannot start etcd: {exc}") from exc
            started.endpoint = started.etcd.endpoint
            print(
                f"etcd          {started.endpoint}  (data in {started.etcd.data_dir})", flush=True
            )
        for _ in range(members):
            started.members.append(_start_member(started.endpoint, name, ttl_s))
        for index, process in enumerate(started.members, 1):
            address = _wait_joined(process, index)
            started.addresses.append(address)
            print(f"member {index}      {address}  (pid {process.pid})", flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(
                {
                    "name": name,
                    "etcd": started.endpoint,
                    "supervisor": os.getpid(),
                    "members": [p.pid for p in started.members],
                    "addresses": started.addresses,
                }
            )
        )
        print(
            f"cluster {name!r} is up: {members} members. "
            f"`cfactor status --name {name}` shows it; "
            f"Ctrl-C or `cfactor cluster stop --name {name}` stops it.",
            flush=True,
        )
        while not stopping:
            if all(p.poll() is not None for p in started.members):
                print("every member has exited", flush=True)
                break
            time.sleep(0.2)
    finally:
        _stop_all(started)
        with contextlib.suppress(OSError):
            path.unlink()
    print(f"cluster {name!r} stopped", flush=True)
    return 0


def _stop_all(started: Started) -> None:
    for process in started.members:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # members leave: their leases are revoked
    for process in started.members:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    if started.etcd is not None:
        started.etcd.close()


def _alive(pid: int) -> bool:
    """True if ``pid`` runs; an exited process its parent has not reaped yet (a zombie)
    counts as gone."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] != "Z"
    return True


def stop(name: str) -> int:
    """Stop the local cluster started by ``cluster start --name NAME``.

    Raises:
        ToolError: No such cluster is running here.
    """
    path = state_file(name)
    if not path.exists():
        raise ToolError(f"no local cluster named {name!r} is running (no {path})")
    state = json.loads(path.read_text())
    supervisor = int(state.get("supervisor", 0))
    if not _alive(supervisor):
        for pid in state.get("members", []):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)
        path.unlink()
        print(f"cluster {name!r}: its supervisor was gone; signalled its members")
        return 0
    os.kill(supervisor, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while _alive(supervisor) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(supervisor):
        raise ToolError(f"cluster {name!r} did not stop within 30 s (pid {supervisor})")
    print(f"cluster {name!r} stopped")
    return 0


# -- status -----------------------------------------------------------------------------------


async def _status(etcd: str, name: str, timeout_s: float) -> dict[str, Any]:
    from cfactor.membership.etcd import EtcdMembership  # noqa: PLC0415 - loads grpc

    membership = EtcdMembership(etcd, cluster=name, request_timeout_s=timeout_s)
    try:
        await membership.observe()
        members = membership.members()
        activations = membership.activations()
        leader = membership.leader("placement")
    finally:
        await membership.aclose()
    now = time.time()
    report: dict[str, Any] = {
        "cluster": name,
        "etcd": etcd,
        "members": [],
        "actors": [],
        "groups": [],
        "leader": None,
    }
    async with cf.ActorSystem(listen="tcp://127.0.0.1:0", ask_timeout_s=timeout_s) as probe:

        async def stats_of(address: str) -> dict[str, Any] | None:
            try:
                reply: dict[str, Any] = await probe.ref("$cluster", at=address).ask("stats")
            except CfactorError:
                return None
            return reply

        replies = await asyncio.gather(*(stats_of(m.address) for m in members.values()))
    by_member: dict[str, dict[str, Any]] = {}
    for member, stats in zip(members.values(), replies, strict=True):
        entry = {
            "id": member.member_id,
            "address": member.address,
            "uptime_s": round(now - member.joined_at, 1) if member.joined_at else None,
            "labels": dict(member.labels),
            "reachable": stats is not None,
            "actors": stats["actors"] if stats else None,
            "depth": stats["depth"] if stats else None,
        }
        report["members"].append(entry)
        for named in (stats or {}).get("named", []):
            by_member[named["name"]] = named
        for group in (stats or {}).get("groups", []):
            report["groups"].append(
                {**group, "member": member.member_id, "address": member.address}
            )
    for act_name, activation in sorted(activations.items()):
        named = by_member.get(act_name, {})
        report["actors"].append(
            {
                "name": act_name,
                "member": activation.member_id,
                "address": activation.address,
                "epoch": activation.epoch,
                "depth": named.get("depth"),
                "restarts": named.get("restarts"),
            }
        )
    if leader is not None and leader in members:
        report["leader"] = {"id": leader, "address": members[leader].address}
    return report


def status(etcd: str | None, name: str, as_json: bool, timeout_s: float = 1.0) -> int:
    """Print the cluster's members, actors, replicated actors (with their autoscaler's
    last decision) and placement leader.

    Raises:
        ToolError: No etcd given and no local cluster of that name, or etcd unreachable.
    """
    if etcd is None:
        path = state_file(name)
        if not path.exists():
            raise ToolError(f"no --etcd given and no local cluster named {name!r} is running")
        etcd = str(json.loads(path.read_text())["etcd"])
    check_url("--etcd", etcd, ("http", "etcd"))
    try:
        report = cf.run(_status(etcd, name, timeout_s))
    except cf.MembershipUnavailable as exc:
        raise ToolError(f"cannot reach etcd at {etcd}: {exc}") from exc
    if as_json:
        print(json.dumps(report))
        return 0
    leader = report["leader"]
    where = leader["address"] if leader else "none"
    print(f"cluster {name!r} on {etcd}: {len(report['members'])} members, placement leader {where}")
    print(f"{'MEMBER':<24} {'ADDRESS':<24} {'UPTIME':>8} {'ACTORS':>7} {'DEPTH':>6}")
    for m in report["members"]:
        uptime = f"{m['uptime_s']:.0f}s" if m["uptime_s"] is not None else "-"
        actors = m["actors"] if m["reachable"] else "unreachable"
        depth = m["depth"] if m["reachable"] else "-"
        print(f"{m['id']:<24} {m['address']:<24} {uptime:>8} {actors!s:>7} {depth!s:>6}")
    if report["actors"]:
        print(f"\n{'ACTOR':<24} {'MEMBER':<24} {'EPOCH':>6} {'DEPTH':>6} {'RESTARTS':>9}")
        for a in report["actors"]:
            depth, restarts = a["depth"], a["restarts"]
            print(f"{a['name']:<24} {a['member']:<24} {a['epoch']:>6} {depth!s:>6} {restarts!s:>9}")
    if report["groups"]:
        print(f"\n{'GROUP':<24} {'MEMBER':<24} {'REPLICAS':>8} {'BACKLOG':>8} {'DEPTH':>6}  LAST")
        for g in report["groups"]:
            replicas = f"{g['replicas']}" + (f"+{g['draining']}d" if g["draining"] else "")
            print(
                f"{g['name']:<24} {g['member']:<24} {replicas:>8} {g['backlog']:>8} "
                f"{g['depth']:>6}  {describe_decision(g['last'])}"
            )
            where = g.get("where") or {}
            if set(where) - {g["address"]}:  # some replicas run on other members
                spread = ", ".join(f"{address} x{n}" for address, n in sorted(where.items()))
                print(f"{'':<24} replicas on {spread}")
            change = g["last_change"]
            if change is not None and change != g["last"]:
                print(f"{'':<24} last change: {describe_decision(change)}")
    return 0


def describe_decision(decision: dict[str, Any] | None) -> str:
    """One autoscaler decision as a line: what, to how many, how long ago, why."""
    if decision is None:
        return "-"
    return (
        f"{decision['direction']} -> {decision['replicas']} "
        f"({decision['age_s']:.1f}s ago): {decision['reason']}"
    )
