"""Remote refs through the in-process memory transport: the core's half of the wire.

The same behaviours over real ZeroMQ sockets and processes are in tests/transports/
and tests/test_multiprocess.py.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest

import cfactor as cf
from cfactor.testing import MemoryNetwork, MemoryTransport
from tests.core.actors import Counter, KeyGate, Recorder

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def members(count: int, **options: Any) -> AsyncIterator[list[cf.ActorSystem]]:
    network = MemoryNetwork()
    systems = [
        cf.ActorSystem(listen="mem://", transport=MemoryTransport(network, **options))
        for _ in range(count)
    ]
    for system in systems:
        await system.start()
    try:
        yield systems
    finally:
        for system in systems:
            await system.aclose()


class Forwarder(cf.Actor):
    """Asks whatever ref it is given, to show refs travel and work on the far side."""

    async def receive(self, message: Any) -> Any:
        match message:
            case ("ask", cf.ActorRef() as ref, question):
                return await ref.ask(question)
            case ("tell", cf.ActorRef() as ref, note):
                await ref.tell(note)
                return "told"
        return None


async def test_tell_and_ask_across_members_like_local_ones() -> None:
    async with members(2) as (a, b):
        await b.spawn(Counter, 5, name="counter")
        remote = a.ref("counter", at=b.address)
        await remote.tell(("add", 1))
        remote.tell_nowait(("add", 1))
        assert await remote.ask("get", timeout=1) == 7
        assert remote == a.ref("counter", at=b.address)
        assert repr(remote) == f"<ActorRef counter@{b.address} remote>"
        mine = await a.spawn(Counter, name="mine")
        assert a.ref("mine", at=a.address) is mine  # at= this member means local


async def test_order_is_kept_across_the_wire() -> None:
    async with members(2) as (a, b):
        await b.spawn(Recorder, name="rec")
        remote = a.ref("rec", at=b.address)
        for i in range(2000):
            await remote.tell(i)
        assert await remote.ask("log") == list(range(2000))


async def test_refs_travel_in_messages_and_answers_find_their_way_back() -> None:
    async with members(3) as (a, b, c):
        counter = await a.spawn(Counter, 40, name="counter")
        await b.spawn(Forwarder, name="fwd")
        fwd = c.ref("fwd", at=b.address)
        # c asks b, handing over a ref to an actor on a; b asks a and answers c.
        assert await fwd.ask(("ask", counter, "get")) == 40
        assert await fwd.ask(("tell", counter, ("add", 2))) == "told"
        assert await counter.ask("get") == 42


async def test_remote_errors_are_typed() -> None:
    async with members(2) as (a, b):
        await b.spawn(Counter, name="counter")
        remote = a.ref("counter", at=b.address)
        with pytest.raises(cf.RemoteActorError) as info:
            await remote.ask(("fail", "remote boom"))
        assert info.value.type_name == "ValueError"
        assert info.value.message == "remote boom"
        assert "raise ValueError(text)" in info.value.traceback
        with pytest.raises(cf.ActorNotFound):
            await a.ref("nobody", at=b.address).ask("hi")
        await a.ref("nobody", at=b.address).tell("lost")
        await asyncio.sleep(0.01)
        assert b.statistics().dead_letters == 1
        with pytest.raises(cf.MessageNotSerializable):
            await remote.tell({1, 2})  # sets cannot cross the wire


async def test_an_answer_that_cannot_cross_the_wire_becomes_an_error() -> None:
    class Leaky(cf.Actor):
        async def receive(self, message: Any) -> Any:
            return object()

    async with members(2) as (a, b):
        await b.spawn(Leaky, name="leaky")
        with pytest.raises(cf.MessageNotSerializable):
            await a.ref("leaky", at=b.address).ask("x", timeout=1)


async def test_remote_stop_waits_until_stopped() -> None:
    async with members(2) as (a, b):
        local = await b.spawn(Counter, name="counter")
        await a.ref("counter", at=b.address).stop()
        assert not local.is_alive
        await a.ref("counter", at=b.address).stop()  # stopping what is gone is done


async def test_an_ask_to_a_member_that_dies_fails_with_node_unreachable() -> None:
    network = MemoryNetwork()
    async with (
        cf.ActorSystem(listen="mem://", transport=MemoryTransport(network)) as a,
        cf.ActorSystem(
            listen="mem://", transport=MemoryTransport(network), stop_timeout_s=0.1
        ) as b,
    ):
        await b.spawn(KeyGate, {}, name="gate")
        remote = a.ref("gate", at=b.address)
        pending = asyncio.create_task(remote.ask(("wait", "forever"), timeout=30))
        await asyncio.sleep(0.01)
        network.kill(b.address)
        with pytest.raises(cf.MemberUnreachable):
            await asyncio.wait_for(pending, 1)
        with pytest.raises(cf.MemberUnreachable):
            await remote.ask("again")
        assert not remote.is_alive


async def test_a_full_remote_mailbox_slows_the_sender_with_bounded_memory() -> None:
    async with members(2, send_queue_limit=20, credit_window=10) as (a, b):
        events = {"jam": asyncio.Event()}
        handled: list[Any] = []
        local = await b.spawn(KeyGate, events, handled, name="gate", mailbox_capacity=5)
        remote = a.ref("gate", at=b.address)
        await remote.tell(("wait", "jam"))
        sent = 0
        try:
            for sent in range(1, 1000):
                remote.tell_nowait(sent)
                await asyncio.sleep(0)
        except cf.MailboxFull:
            pass
        else:
            pytest.fail("the sender was never pushed back")
        # Bounded: 5 in the mailbox, 10 parked behind it (the credit window), 20 queued.
        assert sent < 5 + 10 + 20 + 5
        assert local.statistics().depth <= 5
        transport = a.statistics().transport
        assert transport is not None
        assert transport.queued <= 20
        blocked = asyncio.create_task(remote.tell("after the jam"))
        await asyncio.sleep(0.01)
        assert not blocked.done()  # tell waits instead of failing
        events["jam"].set()
        await asyncio.wait_for(blocked, 2)
        assert await remote.ask("last") == "last"
        # Nothing accepted was lost, and order held.
        numbers = [m for m in handled if isinstance(m, int)]
        assert numbers == list(range(1, sent))
        assert handled[-2:] == ["after the jam", "last"]


async def test_talking_to_other_members_needs_a_listening_system() -> None:
    async with cf.ActorSystem() as embedded:
        with pytest.raises(cf.ConfigError, match="listen"):
            embedded.ref("x", at="tcp://127.0.0.1:7001")


async def test_an_unknown_scheme_is_a_config_error() -> None:
    with pytest.raises(cf.ConfigError, match="no transport for carrier-pigeon"):
        async with cf.ActorSystem(listen="carrier-pigeon://roof"):
            pass
    with pytest.raises(cf.ConfigError, match="listen address"):
        async with cf.ActorSystem(listen="127.0.0.1:7001"):
            pass
