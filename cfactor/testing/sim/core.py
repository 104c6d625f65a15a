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
import contextvars
import gc
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
from cfactor.testing.sim.faults import Faults
from cfactor.testing.sim.ledger import LEDGER, AskRecord, Ledger, Violation
from cfactor.testing.sim.loop import MEMBER, SimLoop, SimulationError
from cfactor.testing.sim.network import SimNetwork, Trace

if TYPE_CHECKING:
    from collections.abc import Coroutine


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
    #: A user's workload instead of the built-in mix (``mixed.py``): ``async def
    #: workload(sim)``, run while the faults go on; an object with an async ``setup(sim)``
    #: method too gets that run first, before any fault.
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
        self.faults = Faults(self)
        #: Known weaknesses seen in this run (reported, not counted as passes).
        self.known: Counter[str] = Counter()
        self.phase = "not started"
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
        system.watch_dead_letters(lambda _target, message, _reason: ledger.dead_letter(message))
        member = Member(name, context, system, index)
        self.members[name] = member
        await self.in_member(member, system.start())
        self.trace.add(self.loop.time(), f"start {name}")
        return member

    def _on_envelope(self, event: str, source: str, dest: str, envelope: Any) -> None:
        self.ledger.network(event, f"{source}>{dest}", envelope.payload)

    async def settles(self, task: asyncio.Task[Any], member: Member, timeout: float) -> bool:
        """Wait until ``task`` is done or its member crashed (a dead process's tasks
        never end: nothing of it runs); False if neither within ``timeout``."""
        deadline = self.loop.time() + timeout
        while not task.done() and member.name not in self.loop.crashed:
            if self.loop.time() >= deadline:
                return False
            await asyncio.wait({task}, timeout=min(0.5, deadline - self.loop.time()))
        return True

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
            # The driver's own tasks (not the runtime's, nor the actors' ticks).
            if code is not None and code.co_qualname.startswith(("Simulation.", "Mixed.")):
                where.append(f"{code.co_qualname} line {frames[-1].f_lineno}")
        return ", ".join(sorted(where)[:6]) or "none of its own"

    async def _run(self) -> None:
        LEDGER.set(self.ledger)
        config = self.config
        self.phase = "start"
        for index in range(config.members):
            await self.start_member(index)
        workload = config.workload
        if workload is None:
            from cfactor.testing.sim.mixed import Mixed  # noqa: PLC0415 - it imports this module

            workload = Mixed()
        setup = getattr(workload, "setup", None)
        if setup is not None:  # before the faults start
            self.phase = "setup"
            await setup(self)
        self.phase = "workload and faults"
        work: list[Awaitable[None]] = [workload(self)]
        if config.faults:
            work.append(self.faults.run())
        else:
            self.faults.heal_all()
        await asyncio.gather(*work)
        await asyncio.sleep(2 * config.ttl_s)  # in-flight tells land or are counted
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
        if self.faults.was_paused(member.name, record.sent, record.sent + record.timeout):
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
