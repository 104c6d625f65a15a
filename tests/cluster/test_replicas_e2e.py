"""End to end on a real cluster: a real etcd, two member processes, real ZeroMQ.

A replicated actor owned by the test's member spreads its replicas over the members
as a burst scales it out, shrinks back when idle (drained scale-in), and every message
sent is handled exactly once throughout.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

import cfactor as cf
from cfactor._core.replicas import ReplicaSet
from cfactor.cluster.messages import Stats
from tests.cluster.actors import Reporting, addresses_of, eventually
from tests.cluster.harness import real_cluster

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


class Tally(cf.Actor):
    """Counts which messages were handled, and on which member."""

    def __init__(self, seen: Counter[int], where: Counter[str]) -> None:
        self.seen = seen
        self.where = where

    async def receive(self, message: Any) -> None:
        _done, seq, address = message
        self.seen[seq] += 1
        self.where[address] += 1


async def test_replicas_spread_over_members_scale_out_and_in_and_each_message_runs_once() -> None:
    async with real_cluster(2, ttl_s=5.0) as c:
        assert c.me is not None
        me = c.me
        seen: Counter[int] = Counter()
        where: Counter[str] = Counter()
        await me.spawn(Tally, seen, where, name="tally", placement="local")
        config = cf.Replicas(
            min=1,
            max=4,
            target_depth=5,
            scale_out_window_s=0.3,
            scale_in_cooldown_s=1.0,
            report_interval_s=0.1,
            in_flight=2,
        )
        ref = await me.spawn(Reporting, me.address, name="work", replicas=config)
        group = ref._cell
        assert isinstance(group, ReplicaSet)
        loop = asyncio.get_running_loop()
        burst = 400
        for seq in range(burst):  # ~4 s for one replica
            await ref.tell(seq)
        peak, spread = 1, set()
        deadline = loop.time() + 30
        while len(seen) < burst and loop.time() < deadline:
            peak = max(peak, group.count)
            spread |= addresses_of(group)
            await asyncio.sleep(0.02)
        assert len(seen) == burst
        assert peak >= 3, "the burst did not scale out"
        workers = {w.address for w in c.workers}
        assert spread & workers, f"no replica ran on another member: {spread}"
        assert set(where) & workers, where  # and those replicas did work
        # Idle: drained scale-in back to min, while a trickle keeps arriving.
        total = burst
        deadline = loop.time() + 20
        while group.count > 1 and loop.time() < deadline:
            await ref.tell(total)
            total += 1
            await asyncio.sleep(0.1)
        assert group.count == 1
        deadline = loop.time() + 10
        while len(seen) < total and loop.time() < deadline:
            await asyncio.sleep(0.02)
        # Every message sent was handled exactly once, across scale-out and scale-in.
        assert sorted(seen) == list(range(total))
        assert set(seen.values()) == {1}
        assert me.statistics().dead_letters == 0
        controller: Any = group.controller
        directions = [d.direction for d in controller.decisions]
        assert "out" in directions
        assert "in" in directions

        # The drained remote replicas stopped on their members too.
        async def hosted_elsewhere() -> int:
            stats = await asyncio.gather(
                *(me.ref("$cluster", at=w.address).ask(Stats()) for w in c.workers)
            )
            return sum(s["hosted_replicas"] for s in stats)

        remote_now = len(addresses_of(group) & workers)
        assert await eventually(lambda: _equals(hosted_elsewhere(), remote_now), 5)


async def _equals(value: Any, expected: int) -> bool:
    return bool(await value == expected)
