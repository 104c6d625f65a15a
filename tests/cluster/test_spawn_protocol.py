"""Spawn tokens and the reserve/activate/confirm protocol, and graceful leave, on an
in-process store and network (fast; the fault versions with real etcd and processes
are tests/faults/test_spawn_outcomes.py and test_graceful_leave.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import cfactor as cf
from cfactor.cluster.spec import ActorSpec
from cfactor.wire import MsgpackCodec
from tests.cluster.actors import Counter, eventually
from tests.cluster.test_memory_cluster import cluster

pytestmark = pytest.mark.anyio

#: What ``Collect`` actors handled, by every instance (the members share this process).
HANDLED: list[int] = []


class Collect(cf.Actor):
    async def receive(self, message: Any) -> Any:
        match message:
            case int(n):
                HANDLED.append(n)
                return None
            case "where":
                return self.system.address
        raise ValueError(f"unknown message {message!r}")


class FailsToStart(cf.Actor):
    async def on_start(self) -> None:
        raise RuntimeError("no")

    async def receive(self, message: Any) -> Any:
        return message


def spec(*args: Any, name: str = "x") -> ActorSpec:
    return ActorSpec.of(Counter, args, {}, name=name, restart="permanent", placement=None)


def test_an_unknown_outcome_is_a_delivery_error() -> None:
    assert issubclass(cf.SpawnOutcomeUnknown, cf.DeliveryError)
    assert not issubclass(cf.SpawnOutcomeUnknown, cf.MembershipUnavailable)


def test_a_token_names_the_spawn_and_the_spawning_member() -> None:
    one = spec(1).with_token("tcp://a")
    assert one.token == spec(1).with_token("tcp://a").token
    assert one.token != spec(2).with_token("tcp://a").token
    assert one.token != spec(1).with_token("tcp://b").token
    assert one.token != spec(1, name="y").with_token("tcp://a").token
    assert ActorSpec.decode(one.encode()) == one


def test_a_spec_stored_before_tokens_still_decodes() -> None:
    old = spec(1)
    fields = (
        old.name,
        old.module,
        old.qualname,
        old.file,
        old.args,
        old.kwargs,
        old.restart,
        old.placement,
    )
    assert ActorSpec.decode(MsgpackCodec().encode_payload(fields)) == old
    with pytest.raises(cf.MalformedFrame):
        ActorSpec.decode(MsgpackCodec().encode_payload((*fields, 7)))


async def test_the_same_spawn_again_returns_the_actor_another_gets_name_taken() -> None:
    async with cluster(2) as c:
        a, b = c.systems
        ref = await a.spawn(Counter, 5, name="x")
        assert await ref.ask(("add", 1)) == 6
        again = await a.spawn(Counter, 5, name="x")  # a retry: the earlier attempt
        assert await again.ask("get") == 6  # the same instance
        with pytest.raises(cf.NameTaken):
            await a.spawn(Counter, 7, name="x")  # other arguments: another spawn
        with pytest.raises(cf.NameTaken):
            await b.spawn(Counter, 5, name="x")  # another member: another spawn


async def test_a_spawn_that_failed_to_start_leaves_the_name_free() -> None:
    async with cluster(2) as c:
        a = c.systems[0]
        with pytest.raises(cf.ActorStartFailed):
            await a.spawn(FailsToStart, name="bad")
        ref = await a.spawn(Counter, 1, name="bad")
        assert await ref.ask(("add", 1)) == 2


async def test_closing_a_member_hands_its_actors_over_with_their_tells() -> None:
    HANDLED.clear()
    async with cluster(3) as c:
        a, b, d = c.systems
        leader = a.cluster.membership.leader("placement")  # type: ignore[union-attr]
        leaving = d if c.member_id(d) != leader else b
        ref = await a.spawn(Collect, name="moving", placement=cf.Pin(leaving.address))
        assert await ref.ask("where") == leaving.address
        sent = 300

        async def send() -> None:
            for n in range(sent):
                await ref.tell(n)
                await asyncio.sleep(0.001)

        sender = asyncio.get_running_loop().create_task(send())
        await asyncio.sleep(0.05)
        c.systems.remove(leaving)
        await leaving.aclose()
        await sender

        async def all_handled() -> bool:
            return len(HANDLED) >= sent

        await eventually(all_handled, timeout=10.0)
        assert sorted(HANDLED) == list(range(sent))  # each exactly once
        assert await ref.ask("where") != leaving.address
