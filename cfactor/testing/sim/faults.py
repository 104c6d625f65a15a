"""The seed's faults: when members crash (and come back), pause, lose each other or the
store, and how the store misbehaves; then everything heals.

``Faults.run`` draws a schedule from the run's random source: per-frame rates for the
whole window, and one to three events at random times, each undone after its own
duration. At the end of the window every fault is healed and ``healed`` is set, which
the workloads wait for before they check that the cluster came back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import TYPE_CHECKING

from cfactor.errors import CfactorError
from cfactor.testing.sim.network import FaultRates

if TYPE_CHECKING:
    from collections.abc import Callable

    from cfactor.testing.sim.core import Member, Simulation

KINDS = (
    "crash",
    "pause",
    "partition",
    "one-way",
    "isolate",
    "store-outage",
    "store-slow",
    "store-ambiguous",
)


class Faults:
    """Injects one run's faults into its members, network and store."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.healed = asyncio.Event()
        self._paused_at: dict[str, list[tuple[float, float]]] = {}
        self._restarts: set[asyncio.Task[None]] = set()

    # -- one fault at a time --------------------------------------------------------------

    def crash(self, member: Member) -> None:
        """As SIGKILL: nothing of it runs again; the others hear at once; the store
        keeps its lease until the TTL passes."""
        sim = self.sim
        sim.trace.add(sim.loop.time(), f"crash {member.name}")
        sim.ledger.crashes.append(sim.loop.time())
        sim.dead_tasks.update(sim.loop.crash(member.name))
        sim.network.kill(member.address)
        with contextlib.suppress(Exception):
            sim.store.disconnect(member.member_id)

    def restart(self, member: Member) -> None:
        """Start a new incarnation of crashed ``member`` (a new address and member id)."""
        task = asyncio.ensure_future(self._restart(member))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def _restart(self, member: Member) -> None:
        sim = self.sim
        sim.network.faults["restart"] += 1
        before = set(sim.members)
        try:
            await sim.start_member(member.index)
        except CfactorError as exc:  # the store is out, say: it stays down
            sim.trace.add(sim.loop.time(), f"restart of {member.name} failed: {exc!r}")
            for name in set(sim.members) - before:
                failed = sim.members.pop(name)
                await sim.in_member(failed, failed.system.aclose())

    def pause(self, member: Member) -> None:
        """As SIGSTOP: its callbacks and timers wait, its frames wait in the links."""
        sim = self.sim
        sim.trace.add(sim.loop.time(), f"pause {member.name}")
        sim.loop.pause(member.name)
        sim.network.pause(member.address)
        self._paused_at.setdefault(member.name, []).append((sim.loop.time(), float("inf")))

    def resume(self, member: Member) -> None:
        sim = self.sim
        if member.name not in sim.loop.paused:
            return
        sim.trace.add(sim.loop.time(), f"resume {member.name}")
        sim.loop.resume(member.name)
        sim.network.resume(member.address)
        start, _ = self._paused_at[member.name][-1]
        self._paused_at[member.name][-1] = (start, sim.loop.time())

    def was_paused(self, name: str, start: float, end: float) -> bool:
        """Whether member ``name`` was paused at some time between ``start`` and ``end``."""
        return any(a <= end and b >= start for a, b in self._paused_at.get(name, ()))

    def _lose_half(self, key: str) -> bool:
        sim = self.sim
        lost = sim.rng.random() < 0.5
        if lost:
            sim.network.faults["store reply lost"] += 1
            sim.trace.add(sim.loop.time(), f"store reply lost: {key}")
        return lost

    # -- the schedule ---------------------------------------------------------------------

    async def run(self) -> None:
        """The seed's fault schedule over the fault window, then everything healed."""
        sim = self.sim
        rng, config, loop, network, store = sim.rng, sim.config, sim.loop, sim.network, sim.store
        network.rates = FaultRates(
            # Silent loss of single frames on a live link is off unless asked for: the
            # real transport loses frames only with a connection, and the flow layer does
            # not recover from a lost end-of-stream (docs/testing.md, "What it found").
            drop=rng.choice((0.0, 0.001, 0.01)) if config.silent_drops else 0.0,
            # Nor does a live link repeat a frame (ZeroMQ over TCP): on request only; a
            # repeated batch doubles a flow's reduce (seed 1037 with --duplicates).
            duplicate=rng.choice((0.0, 0.0, 0.002)) if config.duplicates else 0.0,
            delay=rng.choice((0.0, 0.05, 0.2)),
            delay_max_s=rng.choice((0.005, 0.05, 0.3)),
        )
        events = sorted(
            (rng.uniform(0.0, config.fault_window_s * 0.7), rng.choice(KINDS))
            for _ in range(rng.randint(1, 3))
        )
        start = loop.time()
        undo: list[tuple[float, Callable[[], None]]] = []
        for at, kind in events:
            await asyncio.sleep(max(0.0, start + at - loop.time()))
            live = sim.live()
            if len(live) < 3:
                continue
            victim = rng.choice(live)
            other = rng.choice([m for m in live if m is not victim])
            until = loop.time() + rng.uniform(0.5, config.ttl_s * 2.5)
            network.faults[kind] += 1
            sim.trace.add(loop.time(), f"fault {kind} {victim.name} {other.name} {until:.3f}")
            match kind:
                case "crash":
                    self.crash(victim)
                    if rng.random() < 0.5:  # and a new incarnation starts later
                        undo.append((until, functools.partial(self.restart, victim)))
                case "pause":
                    self.pause(victim)
                    undo.append((until, functools.partial(self.resume, victim)))
                case "partition" | "one-way":
                    cut = network.partition(
                        victim.address, other.address, both_ways=kind == "partition"
                    )
                    undo.append((until, functools.partial(network.heal, cut)))
                case "isolate":
                    cut = set()
                    for m in live:
                        if m is not victim:
                            cut |= network.partition(victim.address, m.address)
                    store.disconnect(victim.member_id)
                    undo.append((until, functools.partial(network.heal, cut)))
                    undo.append((until, functools.partial(store.reconnect, victim.member_id)))
                case "store-outage":
                    store.set_available(False)
                    undo.append((until, functools.partial(store.set_available, available=True)))
                case "store-ambiguous":
                    store.lose_reply = self._lose_half
                    undo.append((until, functools.partial(setattr, store, "lose_reply", None)))
                case "store-slow":
                    # Past the members' 1 s request timeout now and then: a claim that
                    # lands after its spawn gave up.
                    store.watch_delay_s = rng.uniform(0.05, 2.0)
                    undo.append((until, functools.partial(setattr, store, "watch_delay_s", 0.0)))
            for when, action in sorted(undo, key=lambda u: u[0]):
                if when <= loop.time():
                    action()
            undo = [u for u in undo if u[0] > loop.time()]
        for when, action in sorted(undo, key=lambda u: u[0]):
            await asyncio.sleep(max(0.0, when - loop.time()))
            action()
        await asyncio.sleep(max(0.0, start + config.fault_window_s - loop.time()))
        if self._restarts:
            await asyncio.wait(set(self._restarts))
        self.heal_all()

    def heal_all(self) -> None:
        """Every fault undone: the network whole, the store up and prompt, no pauses."""
        sim = self.sim
        sim.network.rates = FaultRates()
        sim.network.heal()
        sim.store.set_available(True)
        sim.store.watch_delay_s = 0.0
        sim.store.lose_reply = None
        for member in sim.live():
            self.resume(member)
            with contextlib.suppress(Exception):
                sim.store.reconnect(member.member_id)
        sim.trace.add(sim.loop.time(), "healed")
        self.healed.set()
