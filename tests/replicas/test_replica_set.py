"""Replicated actors: one ref, replicas pulling from one bounded backlog."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

import cfactor as cf
from cfactor._core.replicas import ReplicaSet
from cfactor.testing import MemoryNetwork, MemoryTransport

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Fixed:
    """A replica count with no autoscaler: the runtime reads min and in_flight."""

    min: int = 1
    in_flight: int = 2
    key: Any = None

    async def start(self, group: Any, system: Any) -> None:  # no autoscaler
        return None


class Slow(cf.Actor):
    """Handles a message in `delay` seconds and records who handled what."""

    def __init__(self, seen: list[tuple[int, Any]], delay: float = 0.01) -> None:
        self.seen = seen
        self.delay = delay

    async def receive(self, message: Any) -> Any:
        if message == "boom":
            raise RuntimeError("boom")
        await asyncio.sleep(self.delay)
        self.seen.append((id(self), message))
        return message


def group_of(ref: cf.ActorRef) -> ReplicaSet:
    group = ref._cell
    assert isinstance(group, ReplicaSet)
    return group


async def test_messages_are_spread_over_replicas_and_each_handled_once() -> None:
    seen: list[tuple[int, Any]] = []
    async with cf.ActorSystem() as system:
        ref = await system.spawn(Slow, seen, name="work", replicas=Fixed(min=4, in_flight=2))
        assert system.ref("work") is ref
        results = await asyncio.gather(*(ref.ask(i) for i in range(200)))
        assert results == list(range(200))
        assert sorted(m for _, m in seen) == list(range(200))
        assert len({who for who, _ in seen}) == 4  # every replica worked


async def test_scaling_out_helps_the_backlog_that_is_already_waiting() -> None:
    seen: list[tuple[int, Any]] = []
    async with cf.ActorSystem() as system:
        ref = await system.spawn(Slow, seen, 0.02, name="work", replicas=Fixed(min=1, in_flight=1))
        for i in range(60):
            await ref.tell(i)  # queued before the new replicas exist
        group = group_of(ref)
        assert ref.statistics().depth == 60
        await group.scale_to(6)
        await asyncio.sleep(0.35)  # one replica alone would need 1.2 s
        assert len(seen) == 60
        assert len({who for who, _ in seen}) == 6


async def test_draining_scale_in_loses_nothing() -> None:
    seen: list[tuple[int, Any]] = []
    async with cf.ActorSystem() as system:
        ref = await system.spawn(Slow, seen, 0.002, name="work", replicas=Fixed(min=5, in_flight=3))
        group = group_of(ref)
        asks = [asyncio.create_task(ref.ask(i)) for i in range(300)]
        await asyncio.sleep(0.02)
        await group.scale_to(1)
        assert group.count == 1
        assert await asyncio.gather(*asks) == list(range(300))
        assert sorted(m for _, m in seen) == list(range(300))
        await asyncio.sleep(0.05)
        assert len(group.replicas) == 1  # the drained ones stopped after finishing


async def test_a_bounded_backlog_pushes_back_and_counts_waiting_senders() -> None:
    seen: list[tuple[int, Any]] = []
    async with cf.ActorSystem() as system:
        ref = await system.spawn(
            Slow, seen, 0.05, name="work", mailbox_capacity=5, replicas=Fixed(min=1, in_flight=1)
        )
        for i in range(6):  # one held by the replica, five in the backlog
            ref.tell_nowait(i)
        with pytest.raises(cf.MailboxFull):
            ref.tell_nowait("one too many")
        waiting = asyncio.create_task(ref.tell("patient"))
        await asyncio.sleep(0)
        depth, replicas = group_of(ref).load()
        assert (depth, replicas) == (7, 1)  # senders' queued messages count too
        await waiting
        assert await ref.ask("last", timeout=5) == "last"


async def test_a_failing_replica_is_restarted_and_the_group_keeps_serving() -> None:
    async with cf.ActorSystem() as system:
        ref = await system.spawn(Slow, [], name="work", replicas=Fixed(min=2, in_flight=1))
        with pytest.raises(cf.RemoteActorError):
            await ref.ask("boom")
        assert await asyncio.gather(*(ref.ask(i) for i in range(10))) == list(range(10))
        assert group_of(ref).count == 2


async def test_stopping_fails_queued_asks_at_once() -> None:
    async with cf.ActorSystem() as system:
        ref = await system.spawn(Slow, [], 0.3, name="work", replicas=Fixed(min=1, in_flight=1))
        asks = [asyncio.create_task(ref.ask(i, timeout=30)) for i in range(5)]
        await asyncio.sleep(0.01)
        stopping = asyncio.create_task(ref.stop())
        results = await asyncio.gather(*asks, return_exceptions=True)
        assert sum(isinstance(r, cf.ActorStopped) for r in results) >= 4
        await stopping
        assert not ref.is_alive
        with pytest.raises(cf.ActorNotFound):
            system.ref("work")


async def test_a_replicated_actor_is_reachable_from_another_member() -> None:
    network = MemoryNetwork()
    seen: list[tuple[int, Any]] = []
    async with (
        cf.ActorSystem(listen="mem://", transport=MemoryTransport(network)) as a,
        cf.ActorSystem(listen="mem://", transport=MemoryTransport(network)) as b,
    ):
        await b.spawn(Slow, seen, 0.001, name="work", replicas=Fixed(min=3, in_flight=2))
        remote = a.ref("work", at=b.address)
        assert await asyncio.gather(*(remote.ask(i) for i in range(50))) == list(range(50))
        for i in range(50, 80):
            await remote.tell(i)
        assert await remote.ask("end") == "end"
        assert sorted(m for _, m in seen if isinstance(m, int)) == list(range(80))


async def test_a_remote_stop_stops_a_replicated_actor() -> None:
    network = MemoryNetwork()
    async with (
        cf.ActorSystem(listen="mem://", transport=MemoryTransport(network)) as a,
        cf.ActorSystem(listen="mem://", transport=MemoryTransport(network)) as b,
    ):
        local = await b.spawn(Slow, [], 0.001, name="work", replicas=Fixed(min=2))
        await a.ref("work", at=b.address).stop()
        assert not local.is_alive


async def test_tells_held_by_a_stopping_group_are_counted_as_dead_letters() -> None:
    async with cf.ActorSystem(stop_timeout_s=0.05) as system:
        ref = await system.spawn(Slow, [], 10.0, name="work", replicas=Fixed(min=2, in_flight=3))
        for i in range(20):
            await ref.tell(i)
        await asyncio.sleep(0.01)
        await ref.stop()
        # Six were held by replicas (cancelled mid-wait), fourteen queued: all counted.
        assert system.statistics().dead_letters == 20
