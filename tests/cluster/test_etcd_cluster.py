"""A real cluster: a real etcd, member processes (``cfactor cluster join``), loopback.

The test process joins as one more member (after the workers, so a worker leads
placement) and places actors on the workers with ``cf.Labels(role="worker")``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import cfactor as cf
from cfactor.cluster.messages import Stats
from cfactor.tools.etcd_server import EtcdServer
from tests.cluster.actors import Counter, eventually
from tests.cluster.harness import WORKERS, real_cluster

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


async def test_members_join_see_each_other_and_reach_named_actors() -> None:
    async with real_cluster(3, ttl_s=5.0) as c:
        ids = {w.member_id for w in c.workers} | {c.runtime.member_id}
        assert set(c.runtime.membership.members()) == ids
        assert c.leader() in {w.member_id for w in c.workers}
        assert c.me is not None
        ref = await c.me.spawn(Counter, 10, name="counter", placement=WORKERS)
        assert await ref.ask(("add", 5)) == 15
        home = await ref.ask("where")
        assert home in {w.address for w in c.workers}
        # Another member (a worker) asks it by name, through its own directory.
        other = next(w for w in c.workers if w.address != home)
        forwarded = c.me.ref("$cluster", at=other.address)
        stats = await forwarded.ask(Stats())
        assert stats["address"] == other.address
        assert await c.me.ref("counter").ask("get") == 15


async def test_a_killed_members_actors_answer_again_with_one_activation_each() -> None:
    ttl = 2.0
    async with real_cluster(3, ttl_s=ttl) as c:
        assert c.me is not None
        target = c.workers[0]
        names = [f"n{i}" for i in range(10)]
        for name in names:
            await c.me.spawn(Counter, 1, name=name, placement=cf.Pin(target.address))
        # Record every activation change: a name may never have two at once.
        history: list[tuple[str, str | None]] = []
        live: dict[str, str] = {}
        doubled: list[str] = []

        def seen(name: str, activation: Any) -> None:
            if activation is None:
                live.pop(name, None)
            else:
                if name in live and live[name] != activation.member_id:
                    doubled.append(name)
                live[name] = activation.member_id
            history.append((name, None if activation is None else activation.member_id))

        c.runtime.membership.subscribe_activations(seen)
        slow = asyncio.create_task(c.me.ref("n0").ask(("sleep", 30.0), timeout=20))
        await asyncio.sleep(0.3)
        loop = asyncio.get_running_loop()
        killed_at = loop.time()
        target.kill()
        with pytest.raises((cf.MemberUnreachable, cf.ActorNotFound)):
            await slow  # in flight to the dead member: a typed error, not a hang
        for name in names:
            home = await eventually(
                lambda name=name: c.me.ref(name).ask("where", timeout=1.0), ttl + 10
            )
            assert home != target.address
            assert await c.me.ref(name).ask("get") == 1  # a fresh instance
        elapsed = loop.time() - killed_at
        assert elapsed < ttl + 10
        assert doubled == []
        # Each name went away with the dead member, then came back exactly once.
        for name in names:
            changes = [member for n, member in history if n == name]
            # The watch may show the original claim after the subscription began.
            while changes and changes[0] == target.member_id:
                changes.pop(0)
            assert changes[0] is None
            assert len([m for m in changes if m is not None]) == 1


async def test_a_new_placement_leader_is_elected_after_the_leader_is_killed() -> None:
    ttl = 2.0
    async with real_cluster(3, ttl_s=ttl) as c:
        assert c.me is not None
        old = c.leader()
        leader = next(w for w in c.workers if w.member_id == old)
        loop = asyncio.get_running_loop()
        killed_at = loop.time()
        leader.kill()

        async def new_leader() -> bool:
            current = c.leader()
            return current is not None and current != old

        await eventually(new_leader, ttl + 10)
        assert loop.time() - killed_at < ttl + 10
        ref = await c.me.spawn(Counter, 3, name="after", placement=WORKERS)
        assert await ref.ask("get") == 3


async def test_etcd_down_for_ten_seconds_messages_flow_spawn_fails_fast_then_heals() -> None:
    # The TTL must outlast the outage: a member whose lease may have expired stops its
    # named actors (fencing), since another activation could be accepted elsewhere.
    ttl = 15.0
    etcd = EtcdServer()
    await etcd.astart()
    try:
        async with real_cluster(2, ttl_s=ttl, etcd=etcd) as c:
            assert c.me is not None
            ref = await c.me.spawn(Counter, name="steady", placement=WORKERS)
            await etcd.astop()
            loop = asyncio.get_running_loop()
            outage_ends = loop.time() + 10
            total = 0
            while loop.time() < outage_ends:
                total = await ref.ask(("add", 1), timeout=5)
                await asyncio.sleep(0.5)
            assert total >= 15
            started = loop.time()
            with pytest.raises(cf.MembershipUnavailable):
                await c.me.spawn(Counter, name="during", placement=WORKERS)
            assert loop.time() - started < 2.5
            await etcd.astart()
            await eventually(lambda: c.me.spawn(Counter, name="after", placement=WORKERS), 20)
            assert await c.me.ref("after").ask("get") == 0
            assert await ref.ask("get") == total  # never restarted: nothing was fenced
    finally:
        await asyncio.to_thread(etcd.close)
