"""The cluster layer on an in-process store and network: placement, directory,
re-placement, leader failover, and an unavailable store, without sockets or etcd.

The same behaviours with a real etcd and real member processes are in
test_etcd_cluster.py.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest

import cfactor as cf
from cfactor._core.remote_replica import RemoteReplica
from cfactor._core.replicas import ReplicaSet
from cfactor.membership import MemoryStore
from cfactor.testing import MemoryNetwork, MemoryTransport
from tests.cluster.actors import Counter, eventually

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio

TTL = 1.0


class Cluster:
    def __init__(self) -> None:
        self.network = MemoryNetwork()
        self.store = MemoryStore()
        self.systems: list[cf.ActorSystem] = []

    async def add(self, **labels: str) -> cf.ActorSystem:
        system = cf.ActorSystem(
            listen="mem://",
            transport=MemoryTransport(self.network),
            cluster=cf.Cluster(name="test", ttl_s=TTL, store=self.store, labels=labels),
            ask_timeout_s=5.0,
        )
        await system.start()
        self.systems.append(system)
        return system

    def member_id(self, system: cf.ActorSystem) -> str:
        runtime: Any = system.cluster
        return str(runtime.member_id)

    def kill(self, system: cf.ActorSystem) -> None:
        """As SIGKILL: its messages stop and its lease lapses."""
        self.network.kill(system.address)
        runtime: Any = system.cluster
        runtime.closed = True
        for task in runtime._tasks:
            task.cancel()
        self.store.expire(self.member_id(system))
        self.systems.remove(system)

    async def aclose(self) -> None:
        for system in self.systems:
            await system.aclose()


@asynccontextmanager
async def cluster(count: int) -> AsyncIterator[Cluster]:
    c = Cluster()
    try:
        for _ in range(count):
            await c.add()
        yield c
    finally:
        await c.aclose()


async def test_members_see_each_other_and_one_leads_placement() -> None:
    async with cluster(3) as c:
        ids = {c.member_id(s) for s in c.systems}
        for system in c.systems:
            runtime: Any = system.cluster
            assert set(runtime.membership.members()) == ids

        async def one_leader() -> bool:
            leaders = {s.cluster.membership.leader("placement") for s in c.systems}  # type: ignore[union-attr]
            return len(leaders) == 1 and None not in leaders

        await eventually(one_leader)


async def test_a_named_actor_is_reachable_by_name_from_every_member() -> None:
    async with cluster(3) as c:
        a, b, d = c.systems
        ref = await a.spawn(Counter, 40, name="counter")
        assert await ref.ask(("add", 1)) == 41
        for system in (b, d):
            assert await system.ref("counter").ask(("add", 1)) == await system.ref("counter").ask(
                "get"
            )
        assert await a.ref("counter").ask("get") == 43
        with pytest.raises(cf.NameTaken):
            await b.spawn(Counter, name="counter")


async def test_placement_spreads_actors_over_members() -> None:
    async with cluster(3) as c:
        a = c.systems[0]
        for i in range(9):
            await a.spawn(Counter, name=f"c{i}")
        homes = [await a.ref(f"c{i}").ask("where") for i in range(9)]
        assert sorted(homes.count(s.address) for s in c.systems) == [3, 3, 3]


async def test_pin_and_labels_choose_the_member() -> None:
    async with cluster(0) as c:
        a = await c.add(zone="east")
        b = await c.add(zone="west")
        await a.spawn(Counter, name="pinned", placement=cf.Pin(b.address))
        await a.spawn(Counter, name="eastern", placement=cf.Labels(zone="east"))
        assert await a.ref("pinned").ask("where") == b.address
        assert await b.ref("eastern").ask("where") == a.address
        with pytest.raises(cf.MembershipUnavailable, match="no member can host"):
            await a.spawn(Counter, name="nowhere", placement=cf.Labels(zone="mars"))


async def test_actors_of_a_dead_member_come_back_elsewhere_with_one_activation() -> None:
    async with cluster(3) as c:
        a = c.systems[0]
        for i in range(6):
            await a.spawn(Counter, i, name=f"c{i}")
        victim = c.systems[1]
        homes = {i: await a.ref(f"c{i}").ask("where") for i in range(6)}
        lost = [i for i, home in homes.items() if home == victim.address]
        assert lost
        survivor = next(s for s in c.systems if s is not victim)
        c.kill(victim)
        for i in lost:
            # Fresh instances elsewhere: their state starts from the constructor's.
            assert (
                await eventually(lambda i=i: survivor.ref(f"c{i}").ask("where")) != victim.address
            )
            assert await survivor.ref(f"c{i}").ask("get") == i
        # At most one accepted activation per name: every member agrees.
        survivor_runtime: Any = survivor.cluster
        survivor_view = survivor_runtime.membership.activations()
        for system in c.systems:
            runtime: Any = system.cluster
            acts = runtime.membership.activations()
            assert {name: act.member_id for name, act in acts.items() if name.startswith("c")} == {
                name: act.member_id for name, act in survivor_view.items() if name.startswith("c")
            }


async def test_a_new_placement_leader_takes_over_and_remembers_the_specs() -> None:
    async with cluster(3) as c:
        a = c.systems[0]

        async def leader() -> str | None:
            found: str | None = a.cluster.membership.leader("placement")  # type: ignore[union-attr]
            return found

        leader_id = await eventually(leader)
        await a.spawn(Counter, name="survivor")
        old = next(s for s in c.systems if c.member_id(s) == leader_id)
        c.kill(old)
        rest = c.systems[0]

        async def new_leader() -> bool:
            current = rest.cluster.membership.leader("placement")  # type: ignore[union-attr]
            return current not in (None, leader_id)

        await eventually(new_leader)
        # The new leader rebuilt its specs from the store: placing still works, and a
        # name still taken is refused.
        await rest.spawn(Counter, name="after-failover")
        assert await rest.ref("after-failover").ask("get") == 0
        assert await eventually(lambda: rest.ref("survivor").ask("where")) != old.address
        assert await rest.ref("survivor").ask("get") == 0


async def test_an_unavailable_store_leaves_messaging_alone_and_fails_placement_fast() -> None:
    async with cluster(2) as c:
        a, b = c.systems
        await a.spawn(Counter, name="steady")
        ref = b.ref("steady")
        c.store.set_available(False)
        try:
            assert await ref.ask(("add", 2)) == 2
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(cf.MembershipUnavailable):
                await a.spawn(Counter, name="new")
            assert loop.time() - started < 2.0
        finally:
            c.store.set_available(True)
        await eventually(lambda: a.spawn(Counter, name="new-after"))
        assert await b.ref("new-after").ask("get") == 0


async def test_stopping_a_cluster_actor_removes_it_for_good() -> None:
    async with cluster(2) as c:
        a, b = c.systems
        ref = await a.spawn(Counter, name="brief")
        await b.ref("brief").stop()
        await asyncio.sleep(0.3)
        with pytest.raises(cf.ActorNotFound):
            await a.ref("brief").ask("get", timeout=0.5)
        del ref
        await a.spawn(Counter, name="brief")  # the name is free again


async def test_arguments_that_cannot_cross_the_wire_are_refused_at_spawn() -> None:
    async with cluster(1) as c:
        with pytest.raises(cf.MessageNotSerializable):
            await c.systems[0].spawn(Counter, {1, 2}, name="bad")


async def test_a_message_to_a_stale_epoch_is_rejected_and_counted() -> None:
    async with cluster(2) as c:
        a, b = c.systems
        await a.spawn(Counter, name="epoched", placement=cf.Pin(b.address))
        runtime: Any = a.cluster
        epoch = runtime.membership.activations()["epoched"].epoch
        current = a.ref(f"epoched@{epoch}", at=b.address)
        assert await current.ask("get") == 0
        stale = a.ref(f"epoched@{epoch - 1}", at=b.address)
        with pytest.raises(cf.ActorNotFound, match="not the current activation"):
            await stale.ask("get")
        await stale.tell(("add", 1))
        await asyncio.sleep(0.05)
        assert b.statistics().stale_rejected == 2
        assert await current.ask("get") == 0  # the stale tell never arrived


async def test_a_member_cut_off_from_the_store_stops_its_actors_before_they_move() -> None:
    async with cluster(2) as c:
        a, b = c.systems
        await a.spawn(Counter, 7, name="fenced", placement=cf.Pin(b.address))
        runtime: Any = a.cluster
        first_epoch = runtime.membership.activations()["fenced"].epoch
        old = b.ref("fenced", at=b.address)  # the local cell on b
        alive_before = old.is_alive
        c.store.disconnect(c.member_id(b))  # b's lease alone lapses; the network is fine

        async def replaced() -> bool:
            current = runtime.membership.activations().get("fenced")
            return current is not None and current.epoch > first_epoch

        await eventually(replaced, timeout=10)
        assert (alive_before, old.is_alive) == (True, False)  # b fenced its activation
        assert await a.ref("fenced").ask("get") == 7  # a fresh instance answers
        assert b.statistics().actors >= 1  # b rejoined as a new incarnation and serves


class Crashy(cf.Actor):
    async def receive(self, message: Any) -> Any:
        raise RuntimeError("always")


class NeverStarts(cf.Actor):
    async def on_start(self) -> None:
        raise OSError("no such resource")

    async def receive(self, message: Any) -> Any:
        return message


async def test_a_crash_looping_cluster_actor_does_not_take_its_neighbours_down() -> None:
    async with cluster(2) as c:
        a, b = c.systems
        await a.spawn(Counter, 10, name="good", placement=cf.Pin(b.address))
        await a.spawn(Crashy, name="crashy", placement=cf.Pin(b.address))
        for _ in range(6):  # past the restart intensity: the root gives up on it, and
            # placement starts it again (a stale route may answer ActorNotFound meanwhile)
            with pytest.raises((cf.RemoteActorError, cf.ActorNotFound)):
                await a.ref("crashy").ask("x")
        # The neighbour on the same member kept its state: it was never restarted.
        assert await a.ref("good").ask(("add", 1)) == 11


async def test_a_spawn_that_fails_to_start_leaves_nothing_to_re_place() -> None:
    async with cluster(2) as c:
        a = c.systems[0]
        with pytest.raises(cf.ActorStartFailed, match="no such resource"):
            await a.spawn(NeverStarts, name="doomed")
        await asyncio.sleep(0.3)
        leader = next(
            s
            for s in c.systems
            if s.cluster.membership.leader("placement") == c.member_id(s)  # type: ignore[union-attr]
        )
        placement: Any = leader.ref("$placement")._cell
        assert placement.instance.specs == {}
        await a.spawn(Counter, name="doomed")  # the name is free
        assert await a.ref("doomed").ask("get") == 0


async def test_a_store_outage_longer_than_the_ttl_heals_on_its_own() -> None:
    async with cluster(2) as c:
        a, b = c.systems
        await a.spawn(Counter, 5, name="k", placement=cf.Pin(b.address))
        c.store.set_available(False)
        await asyncio.sleep(TTL * 2.5)  # every lease lapses: members fence their actors
        c.store.set_available(True)

        async def healed() -> bool:
            runtime: Any = a.cluster
            return len(runtime.membership.members()) == 2 and bool(
                await a.ref("k").ask("get", timeout=0.5) == 5
            )

        assert await eventually(healed, timeout=15)
        await a.spawn(Counter, name="after")  # placement works again
        assert await b.ref("after").ask("get") == 0


class Echo(cf.Actor):
    async def receive(self, message: Any) -> Any:
        return message


async def test_messages_to_remote_replicas_must_travel_and_failures_are_counted() -> None:
    async with cluster(2) as c:
        a, b = c.systems
        config = cf.Replicas(min=1, max=1)
        ref = await a.spawn(Echo, name="work", placement=cf.Pin(b.address), replicas=config)
        group = ref._cell
        assert isinstance(group, ReplicaSet)
        replica = group.replicas[0].cell
        assert isinstance(replica, RemoteReplica)
        assert replica.address == b.address
        assert await ref.ask(("a", 1)) == ("a", 1)  # answered by the replica on b
        assert group.statistics().processed == 1
        with pytest.raises(cf.MessageNotSerializable):
            await ref.ask(object())  # the ask says so
        await ref.tell(object())  # a tell cannot: counted and logged, not lost silently
        assert await ref.ask("after") == "after"  # the group keeps serving
        assert a.statistics().dead_letters == 1
        assert group.load() == (0, 1)
        local = await a.spawn(Echo, name="here", placement="local", replicas=config)
        marker = object()
        assert await local.ask(marker) is marker  # placement="local": passed by reference


async def test_a_forgotten_remote_replica_is_stopped_where_it_runs() -> None:
    async with cluster(2) as c:
        a, b = c.systems
        config = cf.Replicas(min=1, max=1, report_interval_s=0.05)
        ref = await a.spawn(Echo, name="work", placement=cf.Pin(b.address), replicas=config)
        group = ref._cell
        assert isinstance(group, ReplicaSet)
        first = group.replicas[0].cell
        assert isinstance(first, RemoteReplica)
        host: Any = b.cluster
        assert len(host.replicas.hosted) == 1
        first.lost("a transient failure, as far as the test knows")  # e.g. a missed heartbeat
        assert group.count == 0
        # Not left running as an orphan there; the autoscaler brings one back (min 1).
        await eventually(lambda: _true(first.name not in host.replicas.hosted))
        await eventually(lambda: _true(group.count == 1))
        assert await ref.ask("again") == "again"
        assert len(host.replicas.hosted) == 1


async def _true(value: bool) -> bool:
    return value
