"""``Simulation``: a whole cluster in one process, on virtual time, with seeded faults.

One seed decides everything: the order of every callback (``SimLoop``), which frames the
network drops, delays or repeats (``SimNetwork``), when members crash, pause or lose the
store, and the workload's choices. ``run_seed(seed)`` runs the mixed workload once and
returns a ``SeedResult``: the invariant that broke, if one did, and the trace hash (equal
for two runs of one seed, or the run was not deterministic).

The members are full ``ActorSystem``s with the real cluster, autoscale and flow layers,
on the memory transport and the memory store; only the wire and the clock are simulated.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import gc
import logging
import random
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import cfactor as cf
from cfactor.membership import MemoryStore
from cfactor.testing.memory import MemoryTransport
from cfactor.testing.sim.ledger import LEDGER, AskRecord, Ledger, Violation
from cfactor.testing.sim.loop import MEMBER, SimLoop, SimulationError
from cfactor.testing.sim.network import FaultRates, SimNetwork, Trace
from cfactor.testing.sim.workload import FLOW_EXPECTED, Doubler, Keeper, flow_app

if TYPE_CHECKING:
    from collections.abc import Coroutine

log = logging.getLogger("cfactor.sim")

FAULT_KINDS = (
    "crash",
    "pause",
    "partition",
    "one-way",
    "isolate",
    "store-outage",
    "store-slow",
    "store-ambiguous",
)


@dataclass
class SimConfig:
    """What one simulated run does. The defaults are the CI mix."""

    members: int = 5
    named: int = 6
    streams: int = 4
    tells_per_stream: int = 25
    asks: int = 30
    ask_timeout_s: float = 1.0
    #: Named actors spawned while the faults go on.
    late_spawns: int = 3
    #: How often every member asks every named actor (the split-brain probe).
    probe_interval_s: float = 2.0
    replicas: bool = True
    flow: bool = True
    faults: bool = True
    fault_window_s: float = 10.0
    ttl_s: float = 3.0
    #: A user's workload instead of the built-in mix: ``async def workload(sim)``.
    workload: Workload | None = None
    #: The bound on one run, in virtual seconds.
    max_virtual_s: float = 300.0
    #: Drop single frames on live links (``--silent-drops``).
    silent_drops: bool = False
    #: Repeat single frames on live links (``--duplicates``).
    duplicates: bool = False
    #: After the faults heal, every named actor must answer again within this.
    replace_bound_s: float = 30.0


@dataclass
class SeedResult:
    seed: int
    violation: Violation | None
    error: BaseException | None
    trace_hash: str
    virtual_s: float
    wall_s: float
    events: int
    checks: int
    faults: Counter[str] = field(default_factory=Counter)
    recent: list[str] = field(default_factory=list)
    traceback: str = ""
    known: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return self.violation is None and self.error is None


class MemberCrashed(SimulationError):
    """The member a workload's action ran on crashed before the action ended."""


Workload = Callable[["Simulation"], Awaitable[None]]
T = TypeVar("T")


class Member:
    """One simulated member: an ``ActorSystem`` and the context its code runs in."""

    def __init__(
        self, name: str, context: contextvars.Context, system: cf.ActorSystem, index: int
    ) -> None:
        self.name = name
        self.index = index
        self.context = context
        self.system = system
        self.address = f"mem://{name}"

    @property
    def member_id(self) -> str:
        runtime: Any = self.system.cluster
        return str(runtime.member_id)

    def __repr__(self) -> str:
        return f"<Member {self.name}>"


class Simulation:
    """One seeded run of a cluster of ``config.members`` members."""

    def __init__(self, seed: int, config: SimConfig, loop: SimLoop) -> None:
        self.seed = seed
        self.config = config
        self.loop = loop
        self.rng = loop.rng
        self.trace = Trace()
        self.members: dict[str, Member] = {}
        self._contexts: dict[str, contextvars.Context] = {}
        self.network = SimNetwork(self.rng, self.trace, self._contexts.get, self._on_envelope)
        self.store = MemoryStore()
        # Ask deadlines fire in 2 ms buckets (cfactor/_core/clock.py, Deadlines).
        self.ledger = Ledger(
            now=loop.time, is_alive=lambda m: m not in loop.crashed, ask_slack_s=0.0025
        )
        self._incarnations: Counter[int] = Counter()
        self._paused_at: dict[str, list[tuple[float, float]]] = {}
        #: Known weaknesses seen in this run (reported, not counted as passes).
        self.known: Counter[str] = Counter()
        self.phase = "not started"
        self._restarts: set[asyncio.Task[None]] = set()
        #: Tasks of a known weakness that never ended (kept out of the leftover check).
        self.stuck: set[asyncio.Task[Any]] = set()
        #: Tasks of crashed members: they may never end (nothing of a dead process runs).
        self.dead_tasks: set[asyncio.Task[Any]] = set()

    # -- members ----------------------------------------------------------------------

    def live(self) -> list[Member]:
        return [m for m in self.members.values() if m.name not in self.loop.crashed]

    def in_member(self, member: Member, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as ``member``'s code (paused with it, cancelled by its crash)."""
        return self.loop.create_task(coro, context=member.context.copy())

    async def start_member(self, index: int) -> Member:
        incarnation = self._incarnations[index]
        self._incarnations[index] += 1
        name = f"m{index}" if incarnation == 0 else f"m{index}r{incarnation}"
        context = contextvars.copy_context()
        context.run(MEMBER.set, name)
        self._contexts[f"mem://{name}"] = context
        transport = MemoryTransport(self.network, send_queue_limit=256, credit_window=64)
        system = cf.ActorSystem(
            listen=f"mem://{name}",
            transport=transport,
            cluster=cf.Cluster(
                name="sim", ttl_s=self.config.ttl_s, store=self.store, placement_timeout_s=5.0
            ),
            ask_timeout_s=2.0,
            stop_timeout_s=1.0,
            seed=self.rng.getrandbits(32),
        )
        ledger = self.ledger
        dead_letter = system.dead_letter

        def counted(target: str, message: Any, reason: str) -> None:
            ledger.dead_letter(message)
            dead_letter(target, message, reason)

        system.dead_letter = counted  # type: ignore[method-assign]
        member = Member(name, context, system, index)
        self.members[name] = member
        await self.in_member(member, system.start())
        self.trace.add(self.loop.time(), f"start {name}")
        return member

    # -- faults -----------------------------------------------------------------------

    def _on_envelope(self, event: str, source: str, dest: str, envelope: Any) -> None:
        self.ledger.network(event, f"{source}>{dest}", envelope.payload)

    def crash(self, member: Member) -> None:
        self.trace.add(self.loop.time(), f"crash {member.name}")
        self.ledger.crashes.append(self.loop.time())
        self.dead_tasks.update(self.loop.crash(member.name))
        self.network.kill(member.address)
        with contextlib.suppress(Exception):
            self.store.disconnect(member.member_id)

    def restart(self, member: Member) -> None:
        """Start a new incarnation of crashed ``member`` (a new address and member id)."""
        task = asyncio.ensure_future(self._restart(member))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def _restart(self, member: Member) -> None:
        self.network.faults["restart"] += 1
        before = set(self.members)
        try:
            await self.start_member(member.index)
        except cf.CfactorError as exc:  # the store is out, say: it stays down
            self.trace.add(self.loop.time(), f"restart of {member.name} failed: {exc!r}")
            for name in set(self.members) - before:
                failed = self.members.pop(name)
                await self.in_member(failed, failed.system.aclose())

    def pause(self, member: Member) -> None:
        self.trace.add(self.loop.time(), f"pause {member.name}")
        self.loop.pause(member.name)
        self.network.pause(member.address)
        self._paused_at.setdefault(member.name, []).append((self.loop.time(), float("inf")))

    def resume(self, member: Member) -> None:
        if member.name not in self.loop.paused:
            return
        self.trace.add(self.loop.time(), f"resume {member.name}")
        self.loop.resume(member.name)
        self.network.resume(member.address)
        start, _ = self._paused_at[member.name][-1]
        self._paused_at[member.name][-1] = (start, self.loop.time())

    def _lose_half(self, key: str) -> bool:
        lost = self.rng.random() < 0.5
        if lost:
            self.network.faults["store reply lost"] += 1
            self.trace.add(self.loop.time(), f"store reply lost: {key}")
        return lost

    def was_paused(self, name: str, start: float, end: float) -> bool:
        return any(a <= end and b >= start for a, b in self._paused_at.get(name, ()))

    async def inject_faults(self) -> None:
        """The seed's fault schedule over the fault window, then everything healed."""
        rng, config = self.rng, self.config
        self.network.rates = FaultRates(
            # Silent loss of single frames on a live link is off unless asked for: the
            # real transport loses frames only with a connection, and the flow layer does
            # not recover from a lost end-of-stream (docs/testing.md, "What it found").
            drop=rng.choice((0.0, 0.001, 0.01)) if self.config.silent_drops else 0.0,
            # Nor does a live link repeat a frame (ZeroMQ over TCP): on request only; a
            # repeated batch doubles a flow's reduce (seed 1037 with --duplicates).
            duplicate=rng.choice((0.0, 0.0, 0.002)) if self.config.duplicates else 0.0,
            delay=rng.choice((0.0, 0.05, 0.2)),
            delay_max_s=rng.choice((0.005, 0.05, 0.3)),
        )
        events = sorted(
            (rng.uniform(0.0, config.fault_window_s * 0.7), rng.choice(FAULT_KINDS))
            for _ in range(rng.randint(1, 3))
        )
        start = self.loop.time()
        undo: list[tuple[float, Callable[[], None]]] = []
        for at, kind in events:
            await asyncio.sleep(max(0.0, start + at - self.loop.time()))
            live = self.live()
            if len(live) < 3:
                continue
            victim = rng.choice(live)
            other = rng.choice([m for m in live if m is not victim])
            duration = rng.uniform(0.5, config.ttl_s * 2.5)
            self.network.faults[kind] += 1
            self.trace.add(
                self.loop.time(), f"fault {kind} {victim.name} {other.name} {duration:.3f}"
            )
            match kind:
                case "crash":
                    self.crash(victim)
                    if rng.random() < 0.5:  # and a new incarnation starts later
                        undo.append(
                            (self.loop.time() + duration, functools.partial(self.restart, victim))
                        )
                case "pause":
                    self.pause(victim)
                    undo.append(
                        (self.loop.time() + duration, functools.partial(self.resume, victim))
                    )
                case "partition":
                    self.network.partition(victim.address, other.address)
                    undo.append((self.loop.time() + duration, self.network.heal))
                case "one-way":
                    self.network.partition(victim.address, other.address, both_ways=False)
                    undo.append((self.loop.time() + duration, self.network.heal))
                case "isolate":
                    for m in live:
                        if m is not victim:
                            self.network.partition(victim.address, m.address)
                    self.store.disconnect(victim.member_id)
                    undo.append((self.loop.time() + duration, self.network.heal))
                    undo.append(
                        (
                            self.loop.time() + duration,
                            functools.partial(self.store.reconnect, victim.member_id),
                        )
                    )
                case "store-outage":
                    self.store.set_available(False)
                    undo.append(
                        (
                            self.loop.time() + duration,
                            functools.partial(self.store.set_available, available=True),
                        )
                    )
                case "store-ambiguous":
                    self.store.lose_reply = self._lose_half
                    undo.append(
                        (
                            self.loop.time() + duration,
                            functools.partial(setattr, self.store, "lose_reply", None),
                        )
                    )
                case "store-slow":
                    # Past the members' 1 s request timeout now and then: a claim that
                    # lands after its spawn gave up.
                    self.store.watch_delay_s = rng.uniform(0.05, 2.0)
                    undo.append(
                        (
                            self.loop.time() + duration,
                            functools.partial(setattr, self.store, "watch_delay_s", 0.0),
                        )
                    )
            for when, action in sorted(undo, key=lambda u: u[0]):
                if when <= self.loop.time():
                    action()
            undo = [u for u in undo if u[0] > self.loop.time()]
        for when, action in sorted(undo, key=lambda u: u[0]):
            await asyncio.sleep(max(0.0, when - self.loop.time()))
            action()
        await asyncio.sleep(max(0.0, start + config.fault_window_s - self.loop.time()))
        if self._restarts:
            await asyncio.wait(set(self._restarts))
        self.network.rates = FaultRates()
        self.network.heal()
        self.store.set_available(True)
        self.store.watch_delay_s = 0.0
        self.store.lose_reply = None
        for member in self.live():
            self.resume(member)
            with contextlib.suppress(Exception):
                self.store.reconnect(member.member_id)
        self.trace.add(self.loop.time(), "healed")

    # -- the workload -------------------------------------------------------------------

    async def stream(self, index: int) -> None:
        """Tells with sequence numbers from one member to one named actor."""
        via = self.rng.choice(self.live())
        target = f"k{self.rng.randrange(self.config.named)}"
        name = f"s{index}"

        # Half the streams hold on to their ref, as a caller that got one does; the
        # others look the name up for every tell.
        keeps_ref = index % 2 == 0

        async def send() -> None:
            ref: cf.ActorRef | None = None
            for seq in range(self.config.tells_per_stream):
                message_id = f"{name}-{seq}"
                self.ledger.tell_sent(message_id, target)
                try:
                    if ref is None or not keeps_ref:
                        ref = via.system.ref(target)
                    await ref.tell(("tell", name, seq, message_id))
                except cf.CfactorError:
                    self.ledger.tell_refused(message_id)
                await asyncio.sleep(self.rng.uniform(0.0, 0.4))

        with contextlib.suppress(asyncio.CancelledError):
            await self.in_member(via, send())

    async def spawn_late(self, index: int) -> None:
        """Spawn a named actor while the faults go on: it starts once, or fails typed."""
        await asyncio.sleep(self.rng.uniform(0.0, self.config.fault_window_s))
        via = self.rng.choice(self.live())
        task = self.in_member(via, via.system.spawn(Keeper, name=f"x{index}"))
        try:
            await task
            outcome = "ok"
        except cf.CfactorError as exc:
            outcome = type(exc).__name__
        except asyncio.CancelledError:
            if not task.cancelled():
                raise
            outcome = "crashed"
        self.trace.add(self.loop.time(), f"spawn x{index} via {via.name}: {outcome}")

    async def ask_one(self, index: int) -> None:
        await asyncio.sleep(self.rng.uniform(0.0, self.config.fault_window_s))
        via = self.rng.choice(self.live())
        replicated = self.config.replicas and self.rng.random() < 0.3
        target = "pool" if replicated else f"k{self.rng.randrange(self.config.named)}"
        await self.ask_via(via, target, index)

    async def probe(self) -> None:
        """Every member asks every named actor, every ``probe_interval_s``: an old
        activation that still serves after a newer one started answers one of them."""
        rounds = int(self.config.fault_window_s / self.config.probe_interval_s) + 2
        for round_ in range(rounds):
            await asyncio.sleep(self.config.probe_interval_s)
            await asyncio.gather(
                *(
                    self.ask_via(member, f"k{i}", 1000 * round_ + i)
                    for member in self.live()
                    for i in range(self.config.named)
                )
            )

    async def ask_via(self, via: Member, target: str, index: int) -> None:
        """Ask ``target`` from ``via``; check the answer and that the ask ended in time
        (unless ``via`` was paused meanwhile, which holds its timers too)."""
        replicated = target == "pool"
        timeout = self.config.ask_timeout_s
        record = self.ledger.ask_started(target, timeout)

        async def ask() -> str:
            message = ("double", index) if replicated else ("ask", index)
            try:
                answer = await via.system.ref(target).ask(message, timeout=timeout)
            except cf.CfactorError as exc:
                return type(exc).__name__
            expected = 2 * index if replicated else index + 1
            if answer != expected:
                raise Violation("answers are right", f"{target} answered {answer!r} to {message!r}")
            return "ok"

        task = self.in_member(via, ask())
        try:
            outcome = await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise
            outcome = "crashed"
        if outcome == "crashed" or self.was_paused(via.name, record.sent, record.sent + timeout):
            record.ended, record.outcome = self.loop.time(), f"{outcome} (excused)"
        else:
            self.ledger.ask_ended(record, outcome)

    async def run_flow(self) -> None:
        await asyncio.sleep(self.rng.uniform(0.0, self.config.fault_window_s / 2))
        via = self.rng.choice(self.live())
        app = flow_app(self.seed % 100_000)

        async def run() -> None:
            try:
                result = await app.run(via.system, progress=False)
            except cf.CfactorError as exc:
                self.trace.add(self.loop.time(), f"flow failed typed: {type(exc).__name__}")
                return
            output = result.output
            got = sum(output) if isinstance(output, list) else output
            if got != FLOW_EXPECTED:
                raise Violation(
                    "a flow run is right or fails typed", f"sum {got!r}, expected {FLOW_EXPECTED}"
                )
            self.trace.add(self.loop.time(), "flow ok")

        task = self.in_member(via, run())
        if not await self.settles(task, via, 60.0):
            if not self.network.faults["cut"] + self.network.faults["drop"]:
                raise Violation("a flow run ends", "no end 60 virtual s after it started")
            # Known, not yet fixed: a flow whose frame (an end of stream) was lost on a
            # live link waits for it forever. Counted and reported, not passed over.
            self.known["flow stalled after a frame was lost"] += 1
            self.trace.add(self.loop.time(), "flow stalled (known)")
            task.cancel()
            if not await self.settles(task, via, 10.0):
                self.known["a stalled flow run does not end when cancelled"] += 1
                self.stuck.add(task)
                return
        if task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def settles(self, task: asyncio.Task[Any], member: Member, timeout: float) -> bool:
        """Wait until ``task`` is done or its member crashed (a dead process's tasks
        never end: nothing of it runs); False if neither within ``timeout``."""
        deadline = self.loop.time() + timeout
        while not task.done() and member.name not in self.loop.crashed:
            if self.loop.time() >= deadline:
                return False
            await asyncio.wait({task}, timeout=min(0.5, deadline - self.loop.time()))
        return True

    async def until_all_answer(self) -> None:
        """After the heal, every named actor answers from a live member within the bound."""
        healed = self.loop.time()
        last = ""
        for i in range(self.config.named):
            while True:
                via = self.rng.choice(self.live())
                task = self.in_member(via, self._ask(via, f"k{i}", ("ask", -1), 1.0))
                try:
                    if await task == 0:
                        break
                except (cf.CfactorError, asyncio.CancelledError) as exc:
                    last = f"{type(exc).__name__}: {exc}"
                self.ledger.checks += 1
                if self.loop.time() - healed > self.config.replace_bound_s:
                    raise Violation(
                        "re-placement within its bound",
                        f"k{i} does not answer {self.config.replace_bound_s:g} s after the faults "
                        f"healed (last: {last}; the store has it on "
                        f"{self._activation_of(f'k{i}')})",
                    )
                await asyncio.sleep(0.5)

    @staticmethod
    async def _ask(via: Member, name: str, message: Any, timeout: float) -> Any:
        return await via.system.ref(name).ask(message, timeout=timeout)

    def _activation_of(self, name: str) -> str:
        for member in self.live():
            runtime: Any = member.system.cluster
            found = runtime.membership.activations().get(name)
            return (
                "nothing"
                if found is None
                else f"{found.address} "
                f"(crashed: {found.address.removeprefix('mem://') in self.loop.crashed})"
            )
        return "?"

    async def run(self) -> None:
        """The whole run, bounded in virtual time: a phase that never ends is a finding."""
        run = asyncio.ensure_future(self._run())
        await asyncio.wait({run}, timeout=self.config.max_virtual_s)
        if not run.done():
            waiting = self._waiting()
            run.cancel()
            await asyncio.wait({run}, timeout=30.0)  # a run that ignores it is left as is
            raise Violation(
                "every phase ends",
                f"still in phase {self.phase!r} after {self.config.max_virtual_s:g} virtual s; "
                f"waiting: {waiting}",
            )
        run.result()
        self.check_nothing_left()

    def _waiting(self) -> str:
        """Where the workload's own tasks wait (for a stuck run's report)."""
        where = []
        for task in asyncio.all_tasks():
            if task.done():
                continue
            frames = task.get_stack(limit=1)
            code = frames[-1].f_code if frames else None
            if code is not None and code.co_qualname.startswith("Simulation."):
                where.append(f"{code.co_qualname} line {frames[-1].f_lineno}")
        return ", ".join(sorted(where)[:6]) or "none of its own"

    async def _run(self) -> None:
        LEDGER.set(self.ledger)
        config = self.config
        self.phase = "start"
        for index in range(config.members):
            await self.start_member(index)
        if config.workload is not None:
            await self._run_workload(config.workload)
            return
        for i in range(config.named):
            via = self.rng.choice(self.live())
            await self.in_member(via, via.system.spawn(Keeper, name=f"k{i}"))
        if config.replicas:
            via = self.rng.choice(self.live())
            replicas = cf.Replicas(
                min=1, max=3, target_depth=2.0, scale_out_window_s=0.5, scale_in_cooldown_s=2.0
            )
            await self.in_member(via, via.system.spawn(Doubler, name="pool", replicas=replicas))
        self.phase = "load and faults"
        work: list[Awaitable[None]] = [self.stream(i) for i in range(config.streams)]
        work += [self.ask_one(i) for i in range(config.asks)]
        work.append(self.probe())
        work += [self.spawn_late(i) for i in range(config.late_spawns)]
        if config.flow:
            work.append(self.run_flow())
        if config.faults:
            work.append(self.inject_faults())
        await asyncio.gather(*work)
        self.phase = "re-placement"
        await self.until_all_answer()
        await asyncio.sleep(2 * config.ttl_s)  # in-flight tells land or are counted
        self.ledger.check_end()
        self.check_claims()
        self.phase = "shutdown"
        await self.shutdown()

    async def _run_workload(self, workload: Workload) -> None:
        """A user's workload instead of the built-in mix, with the same faults, the
        same end checks, and the user's own ``check``s."""
        self.phase = "workload and faults"
        work: list[Awaitable[None]] = [workload(self)]
        if self.config.faults:
            work.append(self.inject_faults())
        await asyncio.gather(*work)
        await asyncio.sleep(2 * self.config.ttl_s)
        self.ledger.check_end()
        self.check_claims()
        self.phase = "shutdown"
        await self.shutdown()

    # -- for a user's workload (docs/testing.md) ------------------------------------------

    async def on(self, member: Member, action: Callable[[cf.ActorSystem], Awaitable[T]]) -> T:
        """``await action(member.system)`` as ``member``'s code: paused with it, ended
        by its crash (``MemberCrashed``)."""

        async def call() -> T:
            return await action(member.system)

        task = self.in_member(member, call())
        await self.settles(task, member, self.config.max_virtual_s)
        if not task.done() or task.cancelled():
            raise MemberCrashed(f"{member.name} crashed while it ran {action!r}")
        result: T = task.result()
        return result

    async def ask(
        self, member: Member, name: str, message: Any, timeout: float | None = None
    ) -> Any:
        """Ask ``name`` from ``member``; the ask must end by its deadline (checked).

        Raises:
            CfactorError: The ask failed, typed (``AskTimeout``, ``ActorNotFound``...).
            MemberCrashed: ``member`` crashed meanwhile.
        """
        timeout = self.config.ask_timeout_s if timeout is None else timeout
        record = self.ledger.ask_started(name, timeout)
        try:
            answer = await self.on(member, lambda s: s.ref(name).ask(message, timeout=timeout))
        except cf.CfactorError as exc:
            self._ask_ended(record, member, type(exc).__name__)
            raise
        except MemberCrashed:
            record.ended, record.outcome = self.loop.time(), "crashed (excused)"
            raise
        self._ask_ended(record, member, "ok")
        return answer

    def _ask_ended(self, record: AskRecord, member: Member, outcome: str) -> None:
        if self.was_paused(member.name, record.sent, record.sent + record.timeout):
            record.ended, record.outcome = self.loop.time(), f"{outcome} (excused)"
        else:
            self.ledger.ask_ended(record, outcome)

    def check(self, condition: object, invariant: str, detail: str = "") -> None:
        """A user's invariant: a ``Violation`` (and the seed's report) if not true."""
        self.ledger.checks += 1
        if not condition:
            raise Violation(invariant, detail or "does not hold")

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of virtual time."""
        await asyncio.sleep(seconds)

    async def shutdown(self) -> None:
        """Close every live member; then nothing of the runtime may be left running."""
        for member in self.live():
            self.phase = f"shutdown: closing {member.name}"
            await self.in_member(member, member.system.aclose())
        for _ in range(3):
            await asyncio.sleep(0)

    def check_claims(self) -> None:
        """Every name the store says is active has an actor on that member (a claim with
        no actor behind it makes the name unreachable until the member leaves)."""
        by_address = {m.address: m for m in self.live()}
        runtime: Any = self.live()[0].system.cluster
        for name, activation in runtime.membership.activations().items():
            self.ledger.checks += 1
            member = by_address.get(activation.address)
            host: Any = member.system.cluster if member is not None else None
            if host is None or name not in host.hosted:
                raise Violation(
                    "a claimed name has an actor",
                    f"the store has {name!r} on {activation.address} (epoch "
                    f"{activation.epoch}), which hosts no activation of it",
                )

    def check_nothing_left(self) -> None:
        me = asyncio.current_task()
        left = [
            t
            for t in asyncio.all_tasks()
            if t is not me and not t.done() and t not in self.stuck and t not in self.dead_tasks
        ]
        self.ledger.checks += 1
        if left:
            raise Violation(
                "no task left behind", f"{len(left)} tasks after shutdown, e.g. {left[0]!r}"
            )
        timers = self.loop.timers()
        if timers:
            raise Violation(
                "no timer left behind", f"{len(timers)} timers after shutdown, e.g. {timers[0]!r}"
            )


def run_seed(seed: int, config: SimConfig | None = None) -> SeedResult:
    """Run the mixed workload once under ``seed``; never raises for what it finds."""
    config = config or SimConfig()
    loop = SimLoop(random.Random(seed))
    sim = Simulation(seed, config, loop)
    violation: Violation | None = None
    error: BaseException | None = None
    trace_text = ""
    started = time.perf_counter()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection at a random moment would run finalizers out of order
    runner = asyncio.Runner(loop_factory=lambda: loop)
    try:
        runner.run(sim.run())
    except Violation as exc:
        violation = exc
    except Exception as exc:
        error = exc
        trace_text = "".join(traceback.format_exception(exc))
    finally:
        loop.max_iterations = loop.iterations + 200_000  # the cleanup gets its own budget
        try:
            runner.close()  # cancels what is left and lets it unwind
        except Exception as exc:
            if error is None and violation is None:
                error = exc
                trace_text = "".join(traceback.format_exception(exc))
        if gc_was_enabled:
            gc.enable()
        gc.collect()
    return SeedResult(
        seed=seed,
        violation=violation,
        error=error,
        trace_hash=sim.trace.hexdigest(),
        virtual_s=loop.time() - 1000.0,
        wall_s=time.perf_counter() - started,
        events=sim.trace.events,
        checks=sim.ledger.checks,
        faults=sim.network.faults,
        recent=list(sim.trace.recent),
        traceback=trace_text,
        known=sim.known,
    )
