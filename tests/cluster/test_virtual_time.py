"""A whole cluster on one ``ManualClock``: three members on the memory transport and
the memory store, every timer of every layer (leases, keepalives, placement, polling,
ask deadlines) on virtual time, which only the test moves.

A member that dies is cut off the network and the store; the store's lease on it then
lapses when virtual time passes the TTL, and its actors come back elsewhere, without
the test sleeping. Message order within one virtual instant still follows the event
loop's scheduling: a bit-for-bit replay needs issue 12's scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

import cfactor as cf
from cfactor.membership import MemoryStore
from cfactor.testing import ManualClock, MemoryNetwork, MemoryTransport
from tests.cluster.actors import Counter

if TYPE_CHECKING:
    from collections.abc import Awaitable

pytestmark = pytest.mark.anyio

T = TypeVar("T")
TTL = 10.0


async def drive(clock: ManualClock, aw: Awaitable[T], limit_s: float = 60.0) -> T:
    """Await ``aw`` while moving virtual time on (it may wait on timers)."""
    task = asyncio.ensure_future(aw)
    start = clock.now()
    while not task.done():
        assert clock.now() - start < limit_s, f"not done after {limit_s:g} virtual s"
        await clock.run_for(0.05)
    return task.result()


async def eventually(clock: ManualClock, check: Any, limit_s: float = 60.0) -> Any:
    """Await ``check()`` until true (errors count as not yet), moving virtual time on."""
    start = clock.now()
    while True:
        with contextlib.suppress(cf.CfactorError):
            result = await drive(clock, check(), limit_s)
            if result:
                return result
        assert clock.now() - start < limit_s, f"not true after {limit_s:g} virtual s"
        await clock.run_for(0.1)


class VirtualCluster:
    def __init__(self) -> None:
        self.clock = ManualClock(1000.0)
        self.network = MemoryNetwork()
        self.store = MemoryStore(clock=self.clock)
        self.systems: list[cf.ActorSystem] = []

    async def add(self) -> cf.ActorSystem:
        system = cf.ActorSystem(
            listen="mem://",
            transport=MemoryTransport(self.network),
            cluster=cf.Cluster(name="virtual", ttl_s=TTL, store=self.store),
            clock=self.clock,
            ask_timeout_s=5.0,
        )
        await drive(self.clock, system.start())
        self.systems.append(system)
        return system

    def kill(self, system: cf.ActorSystem) -> None:
        """As SIGKILL: its messages stop, it no longer reaches the store (so its
        keepalives stop), and nothing of it runs on; its lease lapses after ``TTL``."""
        runtime: Any = system.cluster
        self.network.kill(system.address)
        self.store.disconnect(runtime.member_id)
        runtime.closed = True
        for task in runtime._tasks:
            task.cancel()
        self.systems.remove(system)

    async def aclose(self) -> None:
        for system in self.systems:
            await drive(self.clock, system.aclose())


async def test_a_cluster_on_virtual_time_re_places_a_dead_members_actors() -> None:
    c = VirtualCluster()
    started = time.monotonic()
    try:
        for _ in range(3):
            await c.add()
        a = c.systems[0]
        for i in range(6):
            await drive(c.clock, a.spawn(Counter, i, name=f"c{i}"))
        homes = {i: await drive(c.clock, a.ref(f"c{i}").ask("where")) for i in range(6)}
        victim = c.systems[1]
        lost = [i for i, home in homes.items() if home == victim.address]
        assert lost, homes
        survivor = c.systems[0] if victim is not c.systems[0] else c.systems[2]
        c.kill(victim)
        virtual_before = c.clock.now()
        # Not before the lease lapses: the store still holds the dead member's claims.
        await c.clock.run_for(TTL * 0.5)
        runtime: Any = survivor.cluster
        activations = runtime.membership.activations()
        assert all(activations[f"c{i}"].address == victim.address for i in lost)
        # Past the TTL: the lease is gone and placement re-places them on the living.
        await c.clock.run_for(TTL * 2)
        for i in lost:
            where = await drive(c.clock, survivor.ref(f"c{i}").ask("where"))
            assert where != victim.address
            assert where in {s.address for s in c.systems}
            assert await drive(c.clock, survivor.ref(f"c{i}").ask("get")) == i
        virtual_s = c.clock.now() - virtual_before
    finally:
        await c.aclose()
    real_s = time.monotonic() - started
    assert virtual_s >= TTL * 2.5
    # The outcome, not a benchmark: leases, keepalives and placement ran on virtual
    # time; nothing slept for real (30 virtual seconds and more in a few real ones).
    assert real_s < virtual_s / 3, (real_s, virtual_s)


async def test_a_store_outage_longer_than_the_ttl_heals_on_virtual_time() -> None:
    c = VirtualCluster()
    started = time.monotonic()
    try:
        a, b = await c.add(), await c.add()
        await drive(c.clock, a.spawn(Counter, 5, name="k", placement=cf.Pin(b.address)))
        runtime: Any = a.cluster
        before = runtime.member_id
        c.store.set_available(False)
        # Every lease lapses: members fence their actors, then retry with backoff.
        await c.clock.run_for(TTL * 2.5)
        c.store.set_available(True)

        async def healed() -> bool:
            return len(runtime.membership.members()) == 2 and bool(
                await a.ref("k").ask("get", timeout=0.5) == 5
            )

        assert await eventually(c.clock, healed)
        assert runtime.member_id != before  # fenced, and back as a new incarnation
        await drive(c.clock, a.spawn(Counter, name="after"))  # placement works again
        assert await drive(c.clock, b.ref("after").ask("get")) == 0
    finally:
        await c.aclose()
    assert time.monotonic() - started < TTL * 2.5 / 3
