"""The built-in mixed workload: what every CI seed runs (docs/testing.md, "The workload").

Named actors under sequenced tells and asks, a probe that asks every named actor from
every member, named actors spawned while the faults go on, a replicated actor, and a
small flow. After the faults heal, every named actor must answer again.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import cfactor as cf
from cfactor.testing.sim.core import MemberCrashed
from cfactor.testing.sim.ledger import Violation
from cfactor.testing.sim.workload import FLOW_EXPECTED, Doubler, Keeper, flow_app

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from cfactor.testing.sim.core import Member, Simulation


class Mixed:
    """The built-in workload (``SimConfig.workload`` when none is given): ``setup`` runs
    before the faults start, the call with them."""

    def __init__(self) -> None:
        self.sim: Simulation

    async def setup(self, sim: Simulation) -> None:
        self.sim, self.config, self.rng = sim, sim.config, sim.rng
        config = self.config
        for i in range(config.named):
            via = self.rng.choice(sim.live())
            await sim.in_member(via, via.system.spawn(Keeper, name=f"k{i}"))
        if config.replicas:
            via = self.rng.choice(sim.live())
            replicas = cf.Replicas(
                min=1, max=3, target_depth=2.0, scale_out_window_s=0.5, scale_in_cooldown_s=2.0
            )
            await sim.in_member(via, via.system.spawn(Doubler, name="pool", replicas=replicas))

    async def __call__(self, sim: Simulation) -> None:
        config = self.config
        sim.phase = "load and faults"
        work: list[Awaitable[None]] = [self.stream(i) for i in range(config.streams)]
        work += [self.ask_one(i) for i in range(config.asks)]
        work.append(self.probe())
        work += [self.spawn_late(i) for i in range(config.late_spawns)]
        if config.flow:
            work.append(self.run_flow())
        await asyncio.gather(*work)
        await sim.faults.healed.wait()
        sim.phase = "re-placement"
        await self.until_all_answer()

    async def stream(self, index: int) -> None:
        """Tells with sequence numbers from one member to one named actor."""
        sim = self.sim
        via = self.rng.choice(sim.live())
        target = f"k{self.rng.randrange(self.config.named)}"
        name = f"s{index}"
        # Half the streams hold on to their ref, as a caller that got one does; the
        # others look the name up for every tell.
        keeps_ref = index % 2 == 0

        async def send() -> None:
            ref: cf.ActorRef | None = None
            for seq in range(self.config.tells_per_stream):
                message_id = f"{name}-{seq}"
                sim.ledger.tell_sent(message_id, target)
                try:
                    if ref is None or not keeps_ref:
                        ref = via.system.ref(target)
                    await ref.tell(("tell", name, seq, message_id))
                except cf.CfactorError:
                    sim.ledger.tell_refused(message_id)
                await asyncio.sleep(self.rng.uniform(0.0, 0.4))

        with contextlib.suppress(asyncio.CancelledError):
            await sim.in_member(via, send())

    async def spawn_late(self, index: int) -> None:
        """Spawn a named actor while the faults go on: it starts once, or fails typed."""
        sim = self.sim
        await asyncio.sleep(self.rng.uniform(0.0, self.config.fault_window_s))
        via = self.rng.choice(sim.live())
        try:
            await sim.on(via, lambda system: system.spawn(Keeper, name=f"x{index}"))
            outcome = "ok"
        except cf.CfactorError as exc:
            outcome = type(exc).__name__
        except MemberCrashed:
            outcome = "crashed"
        sim.trace.add(sim.loop.time(), f"spawn x{index} via {via.name}: {outcome}")

    async def ask_one(self, index: int) -> None:
        await asyncio.sleep(self.rng.uniform(0.0, self.config.fault_window_s))
        via = self.rng.choice(self.sim.live())
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
                    for member in self.sim.live()
                    for i in range(self.config.named)
                )
            )

    async def ask_via(self, via: Member, target: str, index: int) -> None:
        """Ask ``target`` from ``via`` (``sim.ask`` checks the deadline); check the answer."""
        replicated = target == "pool"
        message = ("double", index) if replicated else ("ask", index)
        try:
            answer = await self.sim.ask(via, target, message)
        except (cf.CfactorError, MemberCrashed):
            return
        expected = 2 * index if replicated else index + 1
        self.sim.check(
            answer == expected, "answers are right", f"{target} answered {answer!r} to {message!r}"
        )

    async def run_flow(self) -> None:
        sim = self.sim
        await asyncio.sleep(self.rng.uniform(0.0, self.config.fault_window_s / 2))
        via = self.rng.choice(sim.live())
        app = flow_app(sim.seed % 100_000)

        async def run() -> None:
            try:
                result = await app.run(via.system, progress=False)
            except cf.CfactorError as exc:
                sim.trace.add(sim.loop.time(), f"flow failed typed: {type(exc).__name__}")
                return
            output = result.output
            got = sum(output) if isinstance(output, list) else output
            if got != FLOW_EXPECTED:
                raise Violation(
                    "a flow run is right or fails typed", f"sum {got!r}, expected {FLOW_EXPECTED}"
                )
            sim.trace.add(sim.loop.time(), "flow ok")

        task = sim.in_member(via, run())
        if not await sim.settles(task, via, 60.0):
            if not sim.network.faults["cut"] + sim.network.faults["drop"]:
                raise Violation("a flow run ends", "no end 60 virtual s after it started")
            # Known, not yet fixed: a flow whose frame (an end of stream) was lost on a
            # live link waits for it forever. Counted and reported, not passed over.
            sim.known["flow stalled after a frame was lost"] += 1
            sim.trace.add(sim.loop.time(), "flow stalled (known)")
            task.cancel()
            if not await sim.settles(task, via, 10.0):
                sim.known["a stalled flow run does not end when cancelled"] += 1
                sim.stuck.add(task)
                return
        if task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def until_all_answer(self) -> None:
        """After the heal, every named actor answers from a live member within the bound."""
        sim = self.sim
        healed = sim.loop.time()
        last = ""
        for i in range(self.config.named):
            name = f"k{i}"
            while True:
                via = self.rng.choice(sim.live())
                try:
                    if await sim.ask(via, name, ("ask", -1)) == 0:
                        break
                except (cf.CfactorError, MemberCrashed) as exc:
                    last = f"{type(exc).__name__}: {exc}"
                if sim.loop.time() - healed > self.config.replace_bound_s:
                    raise Violation(
                        "re-placement within its bound",
                        f"{name} does not answer {self.config.replace_bound_s:g} s after the "
                        f"faults healed (last: {last}; the store has it on "
                        f"{self._activation_of(name)})",
                    )
                await asyncio.sleep(0.5)

    def _activation_of(self, name: str) -> str:
        sim = self.sim
        for member in sim.live():
            runtime: Any = member.system.cluster
            found = runtime.membership.activations().get(name)
            if found is None:
                return "nothing"
            crashed = found.address.removeprefix("mem://") in sim.loop.crashed
            return f"{found.address} (crashed: {crashed})"
        return "?"
