"""Cluster benchmark: placement and re-placement on a real local cluster, same run as baselines.

Run it as ``.venv/bin/python benchmarks/cluster.py`` (``--quick`` for a smoke run under a
minute, ``--json PATH`` to also write the figures). It starts one etcd
(``EtcdServer(fast=False)``: etcd's default raft timings and fsync on, as a real
deployment) on loopback, and for each cluster three worker members, each a
``python -m cfactor.cli cluster join ... --label role=worker`` process in a process group
of its own. This process then joins as one more member (no labels, so label placement
never picks it), after the workers, so that a worker leads placement.

- **spawn via placement**: N named actors spawned from this process with
  ``await system.spawn(Counter, name=..., placement=cf.Labels(role="worker"))``, one after
  the other, and again with several concurrent spawner tasks; actors/s. Every actor is
  then asked once (not timed) and removed again before the next run. The sequential runs
  are repeated after 2,000 more actors have been placed and left running (does a
  placement cost grow with the cluster's size?). Baseline: the same N named spawns on a
  plain ``cf.ActorSystem()`` in this process (no cluster).
- **re-placement after SIGKILL**: a fresh cluster of three workers with a short lease
  TTL; N actors placed with ``cf.Pin(address)`` on one worker that does not lead
  placement (killing the leader would add an election); each actor is told
  ``("add", 1)``. Then that worker's process group gets SIGKILL and the clock runs until
  every one of the N names answers an ask again (each name polled by its own task with
  short asks), split into kill -> lease expiry seen here (the member's "left" event) ->
  every new activation seen here -> every name answers. A pin binds the first placement
  only, so the new activations may land on any member, this process included. They are
  fresh instances (their count is 0 again; checked). Baseline: the lease TTL etcd
  granted, the floor of detection.

``Counter`` lives in this file: members load it from the script's path (a class of a
script's ``__main__`` is loaded from its file, see ``cfactor.cluster.spec``), so nothing
needs installing. Every measurement runs ``--repeat`` times (3 by default); the table
reports the median, a second table every run. Every loop is bounded by its count and a
deadline; every child process (etcd, members) is stopped on exit, also on an error or
Ctrl-C (members by process group: SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import urllib.request
from collections import Counter as Tally
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

import harness
from harness import progress

import cfactor as cf
from cfactor.tools.local_cluster import join_command

if TYPE_CHECKING:
    import argparse
    from collections.abc import AsyncIterator, Callable

    from cfactor.tools.etcd_server import EtcdServer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKERS = cf.Labels(role="worker")
#: How long a member process may take to print "listening on".
JOIN_TIMEOUT_S = 30.0
#: The timeout of each polling ask after the kill, and the pause after a failed one. An
#: ask still pending when its name's new activation appears is dropped and sent again.
POLL_ASK_S = 0.1
POLL_GAP_S = 0.01


@dataclass(frozen=True)
class Sizes:
    spawn: int  # actors per spawn run
    spawners: int  # concurrent spawner tasks
    preplaced: int  # actors placed before the spawn runs are repeated
    replace: int  # actors pinned to the worker that is killed, then re-placed
    workers: int
    spawn_ttl_s: float  # the lease of the spawn cluster's members
    replace_ttl_s: float  # the lease in the re-placement clusters
    deadline_s: float  # wall-clock bound of one measurement


FULL = Sizes(
    spawn=200,
    spawners=16,
    preplaced=2000,
    replace=100,
    workers=3,
    spawn_ttl_s=5.0,
    replace_ttl_s=2.0,
    deadline_s=60.0,
)
QUICK = Sizes(
    spawn=50,
    spawners=16,
    preplaced=300,
    replace=50,
    workers=3,
    spawn_ttl_s=5.0,
    replace_ttl_s=2.0,
    deadline_s=30.0,
)


class BenchmarkError(Exception):
    """The cluster did not do what the measurement needs (the message says what)."""


# -- the actor (members load it from this file) ----------------------------------------------


class Counter(cf.Actor):
    def __init__(self) -> None:
        self.n = 0

    async def receive(self, message: Any) -> Any:
        match message:
            case ("add", int(k)):
                self.n += k
                return self.n
            case "get":
                return self.n
            case "where":
                return self.system.address
        raise ValueError(f"unknown message {message!r:.100}")


# -- child processes --------------------------------------------------------------------------

#: Process groups of every member started and not yet reaped; killed at exit at the latest.
_GROUPS: set[int] = set()
_ETCD: list[EtcdServer] = []


def _kill_leftovers() -> None:
    """Last resort (atexit): SIGKILL every member group still there, stop etcd."""
    for pgid in list(_GROUPS):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        _GROUPS.discard(pgid)
    for etcd in _ETCD:
        etcd.close()
    _ETCD.clear()


atexit.register(_kill_leftovers)


@dataclass
class Member:
    """A ``cfactor cluster join`` process."""

    process: asyncio.subprocess.Process
    log: Path
    member_id: str = ""
    address: str = ""

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    def signal(self, signum: int) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


async def start_member(endpoint: str, cluster: str, ttl_s: float, log: Path) -> Member:
    env = dict(os.environ)
    # `import harness` (this file imports it) must work when a member loads this file.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *join_command(endpoint, cluster, ttl_s, ("role=worker",)),
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,  # its own process group: SIGKILL takes all of it
        )
    _GROUPS.add(process.pid)
    return Member(process, log)


async def wait_listening(member: Member) -> None:
    """Read the member's stdout until it prints "member <id> listening on <address>"."""
    assert member.process.stdout is not None
    try:
        async with asyncio.timeout(JOIN_TIMEOUT_S):
            while True:
                line = (await member.process.stdout.readline()).decode(errors="replace")
                if not line:
                    break
                if " listening on " in line:
                    member.member_id = line.split()[1]
                    member.address = line.split(" listening on ")[1].split()[0]
                    return
    except TimeoutError:
        pass
    raise BenchmarkError(
        f"a member did not join within {JOIN_TIMEOUT_S:g} s "
        f"(exit code {member.process.returncode}):\n{member.log_tail()}"
    )


async def stop_members(members: list[Member], grace_s: float = 10.0) -> None:
    """SIGTERM every member's group (they leave the cluster), SIGKILL what lingers."""
    for member in members:
        member.signal(signal.SIGTERM)
    for member in members:
        try:
            async with asyncio.timeout(grace_s):
                await member.process.wait()
        except TimeoutError:
            member.signal(signal.SIGKILL)
            await member.process.wait()
        _GROUPS.discard(member.process.pid)


# -- a cluster --------------------------------------------------------------------------------


@dataclass
class ClusterRun:
    name: str
    etcd: str
    system: cf.ActorSystem
    members: list[Member]
    leader: Member
    started_s: float

    @property
    def runtime(self) -> Any:
        return self.system.cluster


async def wait_leader_key(etcd: str, cluster: str, timeout_s: float) -> None:
    """Wait until a member holds the placement leadership in etcd."""
    key = f"/cfactor/{cluster}/leaders/placement".encode()
    async with etcd_client(etcd) as client:
        async with asyncio.timeout(timeout_s):
            while True:  # a key in etcd: nothing here to wait on but the next look
                if await client.get(key) is not None:
                    return
                await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def etcd_client(endpoint: str) -> AsyncIterator[Any]:
    import aetcd

    host, _, port = endpoint.removeprefix("http://").partition(":")
    client = aetcd.Client(host=host, port=int(port), timeout=5)
    try:
        yield client
    finally:
        await client.close()
        await asyncio.sleep(0.05)  # gRPC hands back cancelled calls a little later


async def granted_ttl(endpoint: str, cluster: str, member_id: str) -> float:
    """The TTL etcd granted the lease of ``member_id``'s key."""
    key = f"/cfactor/{cluster}/members/{member_id}".encode()
    async with etcd_client(endpoint) as client:
        found = await client.get(key)
        if found is None:
            raise BenchmarkError(f"no member key {key!r}")
        info = await client.get_lease_info(found.lease)
        return float(info.grantedTTL)


@contextlib.asynccontextmanager
async def cluster(
    etcd: str, name: str, workers: int, ttl_s: float, log_dir: Path
) -> AsyncIterator[ClusterRun]:
    """``workers`` member processes, then this process as one more member."""
    members: list[Member] = []
    system: cf.ActorSystem | None = None
    t0 = perf_counter()
    try:
        for i in range(workers):
            log = log_dir / f"{name}-w{i}.log"
            members.append(await start_member(etcd, name, ttl_s, log))
        await asyncio.gather(*(wait_listening(m) for m in members))
        await wait_leader_key(etcd, name, JOIN_TIMEOUT_S)
        system = cf.ActorSystem(
            listen="tcp://127.0.0.1:0",
            cluster=cf.Cluster(etcd=etcd, name=name, ttl_s=ttl_s),
        )
        await system.start()
        runtime: Any = system.cluster
        leader_id = runtime.membership.leader("placement")
        leader = next((m for m in members if m.member_id == leader_id), None)
        if leader is None:
            raise BenchmarkError(f"placement is led by {leader_id!r}, not by a worker")
        yield ClusterRun(name, etcd, system, members, leader, perf_counter() - t0)
    finally:
        if system is not None:
            await system.aclose()
        await stop_members(members)


async def where(system: cf.ActorSystem, names: list[str], timeout: float) -> Tally[str]:
    """Ask every name where it lives; the count per address."""
    homes = await asyncio.gather(*(system.ref(n).ask("where", timeout=timeout) for n in names))
    return Tally(homes)


# -- 1. spawn through the placement actor ----------------------------------------------------


@dataclass
class SpawnRun:
    rate: float
    done: int
    latencies_ms: list[float] = field(default_factory=list)
    homes: list[int] = field(default_factory=list)
    remove_rate: float = math.nan
    phases_s: dict[str, float] = field(default_factory=dict)  # untimed parts, for the JSON


async def spawn_names(
    system: cf.ActorSystem, names: list[str], spawners: int, deadline: float
) -> tuple[float, dict[str, cf.ActorRef], list[float]]:
    """Spawn ``names`` with ``spawners`` concurrent tasks; (seconds, refs, latencies ms)."""
    refs: dict[str, cf.ActorRef] = {}
    latencies: list[float] = []
    todo = iter(names)

    async def spawner() -> None:
        for name in todo:
            if perf_counter() > deadline:
                return
            t = perf_counter()
            refs[name] = await system.spawn(Counter, name=name, placement=WORKERS)
            latencies.append((perf_counter() - t) * 1000)

    t0 = perf_counter()
    async with asyncio.timeout(max(0.001, deadline - t0) + 20):
        await asyncio.gather(*(spawner() for _ in range(spawners)))
    return perf_counter() - t0, refs, latencies


async def cluster_spawn_run(
    c: ClusterRun, prefix: str, n: int, spawners: int, deadline_s: float
) -> SpawnRun:
    names = [f"{prefix}{i}" for i in range(n)]
    elapsed, refs, latencies = await spawn_names(
        c.system, names, spawners, perf_counter() + deadline_s
    )
    done = list(refs)
    t_check = perf_counter()
    # Not timed: every placed actor answers, and on which worker it landed.
    values = await asyncio.gather(*(ref.ask("get", timeout=10) for ref in refs.values()))
    if any(v != 0 for v in values):
        raise BenchmarkError("a freshly placed counter did not answer 0")
    homes = await where(c.system, done, 10)
    # Not part of the rate: remove them again so every run starts from the same cluster.
    t0 = perf_counter()
    gate = asyncio.Semaphore(spawners)

    async def remove(ref: cf.ActorRef) -> None:
        async with gate:
            await ref.stop()

    await asyncio.gather(*(remove(ref) for ref in refs.values()))
    removed = perf_counter() - t0
    await wait_until(lambda: not set(done) & set(c.runtime.membership.activations()), 30)
    phases = {
        "spawn": elapsed,
        "check": t0 - t_check,
        "remove": removed,
        "gone": perf_counter() - t0 - removed,
    }
    return SpawnRun(
        rate=len(refs) / elapsed,
        done=len(refs),
        latencies_ms=latencies,
        homes=sorted(homes.values(), reverse=True),
        remove_rate=len(refs) / removed,
        phases_s=phases,
    )


async def local_spawn_run(prefix: str, n: int, deadline_s: float) -> float:
    """The baseline: the same named spawns on an embedded system (no cluster)."""
    deadline = perf_counter() + deadline_s
    async with cf.ActorSystem() as system:
        t0 = perf_counter()
        done = 0
        for i in range(n):
            await system.spawn(Counter, name=f"{prefix}{i}")
            done += 1
            if perf_counter() > deadline:
                break
        return done / (perf_counter() - t0)


async def wait_until(check: Callable[[], bool], timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while True:  # the membership view has no event for "these names are gone"
            if check():
                return
            await asyncio.sleep(0.01)


# -- 2. re-placement after a SIGKILL ---------------------------------------------------------


@dataclass
class ReplaceRun:
    ttl_s: float
    kill_to_left_s: float  # the member's "left" event seen by this member
    kill_to_placed_s: float  # every name has a new activation in this member's view
    kill_to_answer_s: float  # every name answers an ask
    first_answer_s: float
    answered: int
    fresh: int  # answered with count 0 (a new instance)
    homes: dict[str, int]  # where the new activations live: "this process", "worker N"
    setup_s: float
    errors: dict[str, int]


async def replace_run(
    etcd: str, name: str, sizes: Sizes, log_dir: Path, deadline_s: float
) -> ReplaceRun:
    n = sizes.replace
    async with cluster(etcd, name, sizes.workers, sizes.replace_ttl_s, log_dir) as c:
        t_setup = perf_counter()
        system, membership = c.system, c.runtime.membership
        # Not the leader: killing it would add an election to what is measured.
        victim = next(m for m in c.members if m is not c.leader)
        ttl_granted = await granted_ttl(etcd, name, victim.member_id)
        gate = asyncio.Semaphore(sizes.spawners)
        pin = cf.Pin(victim.address)

        async def place(actor: str) -> cf.ActorRef:
            async with gate:
                return await system.spawn(Counter, name=actor, placement=pin)

        names = [f"r{i}" for i in range(n)]
        refs = await asyncio.gather(*(place(a) for a in names))
        homes = await where(system, names, 10)
        if homes != Tally({victim.address: n}):
            raise BenchmarkError(f"the {n} pinned actors are not all on one worker: {homes}")
        counts = await asyncio.gather(*(ref.ask(("add", 1), timeout=10) for ref in refs))
        if any(v != 1 for v in counts):
            raise BenchmarkError("a counter did not count to 1 before the kill")
        epochs = {a: membership.activations()[a].epoch for a in names}
        setup_s = perf_counter() - t_setup

        left_at: list[float] = []
        placed_at: dict[str, float] = {}
        moved = {a: asyncio.Event() for a in names}

        def member_event(event: Any) -> None:
            if event.kind == "left" and event.member.member_id == victim.member_id:
                left_at.append(perf_counter())

        def activation_event(actor: str, activation: Any) -> None:
            if activation is not None and activation.epoch > epochs.get(actor, math.inf):
                placed_at.setdefault(actor, perf_counter())
                moved[actor].set()

        unsubscribe = [
            membership.subscribe(member_event),
            membership.subscribe_activations(activation_event),
        ]
        errors: Tally[str] = Tally()
        deadline = perf_counter() + deadline_s

        async def until_answers(actor: str) -> tuple[float, Any] | None:
            ref = system.ref(actor)
            while perf_counter() < deadline:
                ask = asyncio.ensure_future(ref.ask("get", timeout=POLL_ASK_S))
                if not moved[actor].is_set():
                    # An ask sent before the new activation appeared went to the dead
                    # member: drop it and ask again at once, so the polling interval
                    # does not add to what is measured.
                    appeared = asyncio.ensure_future(moved[actor].wait())
                    await asyncio.wait({ask, appeared}, return_when=asyncio.FIRST_COMPLETED)
                    appeared.cancel()
                    if not ask.done():
                        ask.cancel()
                        await asyncio.wait({ask})
                        errors["dropped when re-placed"] += 1
                        continue
                try:
                    value = await ask
                except cf.CfactorError as exc:
                    errors[type(exc).__name__] += 1
                    await asyncio.sleep(POLL_GAP_S)
                    continue
                return perf_counter(), value
            return None

        killed_at = perf_counter()
        victim.signal(signal.SIGKILL)
        try:
            async with asyncio.timeout(deadline_s + 10):
                answers = await asyncio.gather(*(until_answers(a) for a in names))
        finally:
            for undo in unsubscribe:
                undo()
        await victim.process.wait()
        _GROUPS.discard(victim.process.pid)
        got = [a for a in answers if a is not None]
        after = [a for a, answer in zip(names, answers, strict=True) if answer is not None]
        new_homes = await where(system, after, 10) if after else Tally()
        if victim.address in new_homes:
            raise BenchmarkError("an actor still answers from the killed member")
        workers = {m.address: f"worker {i + 1}" for i, m in enumerate(c.members)}
        return ReplaceRun(
            ttl_s=ttl_granted,
            kill_to_left_s=(left_at[0] - killed_at) if left_at else math.nan,
            kill_to_placed_s=(
                max(placed_at.values()) - killed_at if len(placed_at) == n else math.nan
            ),
            kill_to_answer_s=(max(t for t, _ in got) - killed_at) if len(got) == n else math.nan,
            first_answer_s=min(t for t, _ in got) - killed_at if got else math.nan,
            answered=len(got),
            fresh=sum(1 for _, value in got if value == 0),
            homes=dict(
                sorted(
                    (("this process" if home == system.address else workers.get(home, home)), k)
                    for home, k in new_homes.items()
                )
            ),
            setup_s=setup_s,
            errors=dict(errors),
        )


# -- the table --------------------------------------------------------------------------------


@dataclass
class Metric(harness.Figures):
    label: str
    unit: str  # "rate" (actors/s), "s" (seconds), "ms"
    target: str = "-"
    cf_runs: list[float] = field(default_factory=list)
    base_runs: list[float] = field(default_factory=list)
    error: str | None = None


def fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "n/a"
    if unit == "rate":
        return f"{value / 1e3:.1f} k/s" if value >= 10_000 else f"{value:,.0f} /s"
    if unit == "ms":
        return f"{value:.1f} ms"
    return f"{value:.2f} s"


def main_table(metrics: list[Metric]) -> str:
    rows = []
    for m in metrics:
        label = m.label + (f" [error: {m.error}]" if m.error else "")
        ratio = harness.fmt_ratio(m.ratio, m.unit, fine=True)
        rows.append([label, fmt(m.cf, m.unit), fmt(m.base, m.unit), ratio, m.target, "-"])
    return harness.results_table(rows)


def percentile(samples: list[float], p: float) -> float:
    if not samples:
        return math.nan
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


# -- reference figures: what one placement is made of ----------------------------------------


async def etcd_round_trips(endpoint: str, n: int) -> dict[str, float]:
    """p50 of a plain put and of a create-if-absent transaction (what `claim` sends), ms."""
    async with etcd_client(endpoint) as client:
        tx = client.transactions
        puts: list[float] = []
        txns: list[float] = []
        for i in range(n):
            key = f"/bench/put/{i}".encode()
            t = perf_counter()
            await client.put(key, b"x" * 100)
            puts.append((perf_counter() - t) * 1000)
            key = f"/bench/txn/{i}".encode()
            t = perf_counter()
            await client.transaction(
                compare=[tx.create(key) == 0],
                success=[tx.put(key, b"x" * 100), tx.get(key)],
                failure=[],
            )
            txns.append((perf_counter() - t) * 1000)
        await client.delete_prefix(b"/bench/")
    return {"put_p50_ms": percentile(puts, 50), "txn_p50_ms": percentile(txns, 50)}


async def remote_ask_ms(c: ClusterRun, n: int) -> float:
    """p50 of an ask from here to a placed actor on a worker (after one warm-up ask)."""
    ref = await c.system.spawn(Counter, name="ping", placement=WORKERS)
    await ref.ask("get", timeout=10)
    samples = []
    for _ in range(n):
        t = perf_counter()
        await ref.ask("get", timeout=10)
        samples.append((perf_counter() - t) * 1000)
    await ref.stop()
    return percentile(samples, 50)


# -- the benchmark ----------------------------------------------------------------------------


class CpuShare:
    """How busy the rest of the machine was: every core's busy time less the CPU time of
    this process and of its children (etcd, the members), as a share of one core."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self.t0 = perf_counter()
        self.machine0 = self._busy()
        self.own0 = self._own()

    def _busy(self) -> float:
        times = self._psutil.cpu_times()
        idle = times.idle + getattr(times, "iowait", 0.0)
        counted_twice = getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
        return sum(times) - idle - counted_twice

    def _own(self) -> float:
        t = os.times()
        live = 0.0  # children still running (etcd): not in os.times() until reaped
        for child in self._psutil.Process().children(recursive=True):
            with contextlib.suppress(self._psutil.Error):
                c = child.cpu_times()
                live += c.user + c.system
        return t.user + t.system + t.children_user + t.children_system + live

    def others(self) -> float:
        machine = self._busy() - self.machine0
        own = self._own() - self.own0
        return max(0.0, machine - own) / (perf_counter() - self.t0)


def etcd_version(endpoint: str) -> str:
    try:
        with urllib.request.urlopen(f"{endpoint}/version", timeout=2) as reply:
            return str(json.loads(reply.read())["etcdserver"])
    except (OSError, ValueError, KeyError):
        return "unknown"


async def benchmark(
    sizes: Sizes, repeat: int, log_dir: Path, source: str
) -> tuple[int, dict[str, Any]]:
    from importlib.metadata import version

    from cfactor.tools.etcd_server import EtcdServer

    etcd = EtcdServer(fast=False)
    _ETCD.append(etcd)
    progress("starting etcd ...")
    await etcd.astart()
    try:
        facts = harness.machine_facts(asyncio.get_running_loop(), source)
        facts["etcd"] = (
            f"{etcd_version(etcd.endpoint)} (EtcdServer(fast=False): 100 ms heartbeat, "
            f"1000 ms election, fsync on; data dir under {tempfile.gettempdir()})"
        )
        facts["aetcd / grpcio / pyzmq"] = (
            f"{version('aetcd')} / {version('grpcio')} / {version('pyzmq')}"
        )
        return await measure(etcd.endpoint, sizes, repeat, log_dir, facts)
    finally:
        await asyncio.to_thread(etcd.close)
        _ETCD.remove(etcd)


async def measure(
    endpoint: str, sizes: Sizes, repeat: int, log_dir: Path, facts: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    busy = CpuShare()
    harness.print_header("cfactor cluster benchmark", facts)
    print(
        f"- sizes: spawn {sizes.spawn} actors per run ({sizes.spawners} concurrent spawners "
        f"in the concurrent runs; again with {sizes.preplaced:,} actors placed first); "
        f"re-place {sizes.replace} actors; {sizes.workers} worker "
        f"members + this process; lease TTL {sizes.spawn_ttl_s:g} s (spawn cluster), "
        f"{sizes.replace_ttl_s:g} s (re-placement clusters); {repeat} runs each, median "
        f"reported; {sizes.deadline_s:g} s deadline per measurement"
    )
    print(flush=True)
    d = sizes.deadline_s

    seq = Metric("spawn via placement, sequential (actors/s)", "rate")
    conc = Metric(f"spawn via placement, {sizes.spawners} concurrent spawners (actors/s)", "rate")
    big = Metric(
        f"spawn via placement, sequential, {sizes.preplaced:,} actors already placed", "rate"
    )
    n = sizes.replace
    total = Metric(f"re-place {n} actors after SIGKILL: kill -> all {n} answer (s)", "s")
    detect = Metric("  kill -> lease expiry seen here (member left)", "s")
    placed = Metric(f"  kill -> all {n} new activations seen here", "s")
    after = Metric(f"  lease expiry -> all {n} answer", "s")
    # Diagnostics.
    seq_p50 = Metric("placement latency, sequential, p50", "ms")
    seq_p99 = Metric("placement latency, sequential, p99", "ms")
    big_p50 = Metric(f"placement latency, sequential, {sizes.preplaced:,} placed, p50", "ms")
    conc_p50 = Metric(f"placement latency, {sizes.spawners} concurrent, p50", "ms")
    remove = Metric("remove via placement (ref.stop()), concurrent (actors/s)", "rate")
    rate_after = Metric(f"re-placement rate after expiry ({n} actors / time) (actors/s)", "rate")
    first = Metric("  kill -> first re-placed actor answers", "s")
    put_ms = Metric("etcd put round trip (aetcd, from this process), p50", "ms")
    txn_ms = Metric("etcd create-if-absent txn round trip (as claim), p50", "ms")
    ask_ms = Metric("ask round trip to a placed actor on a worker, p50", "ms")

    details: dict[str, Any] = {"spawn": [], "replace": []}
    # -- 1. spawn --
    try:
        progress(f"spawn: cluster of {sizes.workers} workers (TTL {sizes.spawn_ttl_s:g} s) ...")
        async with cluster(endpoint, "spawn", sizes.workers, sizes.spawn_ttl_s, log_dir) as c:
            details["spawn_cluster_start_s"] = c.started_s
            # Warm up: every worker loads this file and every connection exists.
            warm = await cluster_spawn_run(c, "warm", sizes.workers * 3, sizes.spawners, d)
            await local_spawn_run("warm", sizes.spawn, d)
            for r in range(repeat):
                progress(f"spawn run {r + 1}/{repeat} ...")
                sides = ["cluster", "local"] if r % 2 == 0 else ["local", "cluster"]
                for side in sides:
                    if side == "local":
                        t_local = perf_counter()
                        seq.base_runs.append(await local_spawn_run(f"l{r}-", sizes.spawn, d))
                        wall = details.setdefault("local_spawn_wall_s", [])
                        wall.append(perf_counter() - t_local)
                        conc.base_runs.append(seq.base_runs[-1])
                        continue
                    s = await cluster_spawn_run(c, f"s{r}-", sizes.spawn, 1, d)
                    seq.cf_runs.append(s.rate)
                    seq_p50.cf_runs.append(percentile(s.latencies_ms, 50))
                    seq_p99.cf_runs.append(percentile(s.latencies_ms, 99))
                    k = await cluster_spawn_run(c, f"c{r}-", sizes.spawn, sizes.spawners, d)
                    conc.cf_runs.append(k.rate)
                    conc_p50.cf_runs.append(percentile(k.latencies_ms, 50))
                    remove.cf_runs += [s.remove_rate, k.remove_rate]
                    details["spawn"].append(
                        {
                            "sequential": {"rate": s.rate, "homes": s.homes, **s.phases_s},
                            "concurrent": {"rate": k.rate, "homes": k.homes, **k.phases_s},
                        }
                    )
                    for run, metric in ((s, seq), (k, conc)):
                        if run.done < sizes.spawn:
                            metric.error = f"cut short: {run.done} of {sizes.spawn} placed"
            details["warm_homes"] = warm.homes
            progress("reference round trips ...")
            for _ in range(repeat):
                trips = await etcd_round_trips(endpoint, 50)
                put_ms.cf_runs.append(trips["put_p50_ms"])
                txn_ms.cf_runs.append(trips["txn_p50_ms"])
                ask_ms.cf_runs.append(await remote_ask_ms(c, 200))
            progress(f"placing {sizes.preplaced:,} more actors, then spawn runs again ...")
            bulk = [f"bulk{i}" for i in range(sizes.preplaced)]
            t0 = perf_counter()
            _, placed_bulk, _ = await spawn_names(c.system, bulk, sizes.spawners, t0 + 4 * d)
            details["preplaced"] = {
                "done": len(placed_bulk),
                "rate": len(placed_bulk) / (perf_counter() - t0),
            }
            if len(placed_bulk) < sizes.preplaced:
                big.error = f"cut short: {len(placed_bulk)} of {sizes.preplaced:,} placed first"
            for r in range(repeat):
                b = await cluster_spawn_run(c, f"big{r}-", sizes.spawn, 1, d)
                big.cf_runs.append(b.rate)
                big_p50.cf_runs.append(percentile(b.latencies_ms, 50))
            big.base_runs = list(seq.base_runs)
    except (BenchmarkError, TimeoutError) as exc:  # the table says so; go on
        seq.error = f"spawn section: {exc or 'timed out'}"

    # -- 2. re-placement --
    for r in range(repeat):
        progress(
            f"re-placement run {r + 1}/{repeat}: fresh cluster, {n} actors on one worker, "
            "SIGKILL ..."
        )
        try:
            run = await replace_run(endpoint, f"replace{r}", sizes, log_dir, d)
        except (BenchmarkError, TimeoutError) as exc:
            total.error = f"run {r + 1}: {exc or 'timed out'}"
            break
        for metric in (total, detect, placed):
            metric.base_runs.append(run.ttl_s)
        total.cf_runs.append(run.kill_to_answer_s)
        detect.cf_runs.append(run.kill_to_left_s)
        placed.cf_runs.append(run.kill_to_placed_s)
        after.cf_runs.append(run.kill_to_answer_s - run.kill_to_left_s)
        rate_after.cf_runs.append(n / (run.kill_to_placed_s - run.kill_to_left_s))
        first.cf_runs.append(run.first_answer_s)
        details["replace"].append(
            {
                "ttl_granted_s": run.ttl_s,
                "kill_to_left_s": run.kill_to_left_s,
                "kill_to_placed_s": run.kill_to_placed_s,
                "kill_to_answer_s": run.kill_to_answer_s,
                "first_answer_s": run.first_answer_s,
                "answered": run.answered,
                "fresh_instances": run.fresh,
                "homes_after": run.homes,
                "setup_s": run.setup_s,
                "poll_errors": run.errors,
            }
        )
        if run.answered < n:
            total.error = f"run {r + 1}: only {run.answered} of {n} answered in {d:g} s"
        if run.fresh != run.answered:
            total.error = f"run {r + 1}: {run.answered - run.fresh} answers were not fresh"

    metrics = [seq, conc, big, total, detect, placed, after]
    diagnostics = [
        seq_p50,
        seq_p99,
        big_p50,
        conc_p50,
        remove,
        rate_after,
        first,
        put_ms,
        txn_ms,
        ask_ms,
    ]
    harness.print_section(harness.RESULTS, main_table(metrics))
    harness.print_section(harness.EVERY_RUN, harness.runs_table(metrics + diagnostics, fmt))
    harness.print_section(
        "Diagnostics (cfactor only; what a placement is made of)", main_table(diagnostics)
    )
    rows = [
        [
            str(i + 1),
            f"{run['ttl_granted_s']:g} s",
            f"{run['answered']}/{n}",
            f"{run['fresh_instances']}/{run['answered']}",
            ", ".join(f"{k} {v}" for k, v in run["homes_after"].items()),
            f"{run['setup_s']:.1f} s",
            ", ".join(f"{k} {v}" for k, v in sorted(run["poll_errors"].items())) or "-",
        ]
        for i, run in enumerate(details["replace"])
    ]
    header = [
        "run",
        "TTL granted",
        "answered",
        "fresh (count 0)",
        "new homes (the pin binds the first placement only)",
        "placing + checking before the kill",
        "failed polling asks",
    ]
    harness.print_section("Re-placement runs", harness.markdown_table(header, rows, right=set()))
    print(
        "Baselines: spawn = the same named spawns on an embedded cf.ActorSystem() in this "
        "process (no cluster), one after the other, for both spawn rows; re-placement = the "
        "lease TTL etcd granted (nothing is re-placed before the lease is seen to expire; "
        "the lease can end up to TTL/3 earlier than TTL after the kill, since the last "
        "keepalive was sent up to TTL/3 before it). Re-placed actors are fresh instances: "
        "their count starts at 0 again (each was told ('add', 1) before the kill). Each name "
        f"is polled with {POLL_ASK_S:g} s asks ({POLL_GAP_S:g} s apart after a failure); an "
        "ask still in flight (to the dead member) when the name's new activation appears "
        "here is dropped and sent again at once."
    )
    print()
    others = busy.others()
    print(
        f"Other processes on this machine used {others:.0%} of one core on average during "
        f"the run (machine busy time less this benchmark's, etcd's and the members'; "
        f"{os.cpu_count()} cores); load average at the end "
        "{:.2f} {:.2f} {:.2f}.".format(*os.getloadavg())
    )
    print(flush=True)
    details["other_processes_core_share"] = others
    document = {
        "facts": facts,
        "sizes": sizes.__dict__,
        "repeat": repeat,
        "metrics": [metric_json(m) for m in metrics],
        "diagnostics": [metric_json(m) for m in diagnostics],
        "details": details,
    }
    failed = any(m.error for m in metrics)
    return (2 if failed else 0), document


def metric_json(m: Metric) -> dict[str, Any]:
    clean = harness.clean
    return {
        "label": m.label.strip(),
        "unit": {"rate": "per_second", "s": "seconds", "ms": "milliseconds"}[m.unit],
        "cfactor": clean(m.cf),
        "baseline": clean(m.base),
        "ratio": clean(m.ratio),
        "cfactor_runs": [clean(v) for v in m.cf_runs],
        "baseline_runs": m.base_runs,
        "target": m.target,
        "error": m.error,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = harness.parser(
        "Measure cfactor's cluster on a real local cluster (an etcd and member processes "
        "on loopback): the spawn rate through the placement actor, next to local spawns, "
        "and the time to re-place actors after their member is killed, next to the "
        "lease TTL. Prints a table; exits 2 when a measurement failed.",
        "small sizes: a smoke run under a minute",
    )
    parser.add_argument(
        "--logs",
        type=Path,
        metavar="DIR",
        help="keep the members' stderr logs here (default: a temporary directory, removed)",
    )
    return harness.parse(parser, argv)


async def run_main(args: argparse.Namespace, log_dir: Path) -> tuple[int, dict[str, Any]]:
    # SIGTERM ends the run like Ctrl-C: the finally blocks stop every child.
    harness.cancel_on_sigterm()
    sizes = QUICK if args.quick else FULL
    return await benchmark(sizes, args.repeat, log_dir, harness.source_version())


def main() -> int:
    args = parse_args()
    # gRPC (etcd's client) logs an info line each time this process starts a member while
    # its threads run ("skipping fork() handlers"): harmless, the child execs at once.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    log_dir = args.logs or Path(tempfile.mkdtemp(prefix="cfactor-cluster-bench-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        status, document = cf.run(run_main(args, log_dir))
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("interrupted (every child process is stopped)")
        return 130
    finally:
        _kill_leftovers()
        if args.logs is None:
            shutil.rmtree(log_dir, ignore_errors=True)
    harness.finish(args.json, document)
    return status


if __name__ == "__main__":
    sys.exit(main())
