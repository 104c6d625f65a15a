from __future__ import annotations

import asyncio

import pytest

import cfactor as cf
from cfactor.testing import ManualClock
from tests.core.actors import Gate

pytestmark = pytest.mark.anyio


async def test_tell_nowait_raises_mailbox_full_at_capacity() -> None:
    async with cf.ActorSystem() as system:
        ref = await system.spawn(Gate, mailbox_capacity=3)
        event = asyncio.Event()
        ref.tell_nowait(("wait", event))
        await asyncio.sleep(0)  # the actor takes it and blocks
        for i in range(3):
            ref.tell_nowait(i)
        with pytest.raises(cf.MailboxFull, match="3 messages"):
            ref.tell_nowait("one too many")
        stats = ref.statistics()
        assert (stats.depth, stats.capacity, stats.peak, stats.in_progress) == (3, 3, 3, 1)
        event.set()
        assert await ref.ask("done") == "done"
        stats = ref.statistics()
        assert (stats.depth, stats.peak, stats.in_progress, stats.processed) == (0, 3, 0, 5)


async def test_tell_waits_for_room_and_counts_waiting_senders() -> None:
    handled: list[object] = []
    async with cf.ActorSystem() as system:
        ref = await system.spawn(Gate, handled, mailbox_capacity=2)
        event = asyncio.Event()
        await ref.tell(("wait", event))
        await asyncio.sleep(0)
        await ref.tell(1)
        await ref.tell(2)
        blocked = [asyncio.create_task(ref.tell(n)) for n in (3, 4)]
        await asyncio.sleep(0)
        assert not any(task.done() for task in blocked)
        assert ref.statistics().waiting_senders == 2
        assert ref.statistics().depth == 2
        event.set()
        await asyncio.gather(*blocked)
        await ref.ask("end")
        assert handled[1:] == [1, 2, 3, 4, "end"]
        assert ref.statistics().peak == 2


async def test_an_ask_waiting_for_room_times_out() -> None:
    clock = ManualClock()
    async with cf.ActorSystem(clock=clock) as system:
        ref = await system.spawn(Gate, mailbox_capacity=1)
        event = asyncio.Event()
        await ref.tell(("wait", event))
        await asyncio.sleep(0)
        await ref.tell("fills the mailbox")
        ask = asyncio.create_task(ref.ask("no room", timeout=1.0))
        await asyncio.sleep(0)
        clock.advance(1.0)
        with pytest.raises(cf.AskTimeout):
            await ask
        assert ref.statistics().waiting_senders == 0
        event.set()


async def test_senders_waiting_on_a_stopped_actor_are_released() -> None:
    async with cf.ActorSystem() as system:
        ref = await system.spawn(Gate, mailbox_capacity=1)
        event = asyncio.Event()
        await ref.tell(("wait", event))
        await asyncio.sleep(0)
        await ref.tell("fills")
        tell = asyncio.create_task(ref.tell("waits"))
        ask = asyncio.create_task(ref.ask("waits too"))
        await asyncio.sleep(0)
        stopping = asyncio.create_task(ref.stop())
        await asyncio.wait_for(tell, 1.0)  # released, counted as a dead letter
        with pytest.raises(cf.ActorStopped):
            await asyncio.wait_for(ask, 1.0)
        event.set()
        await stopping
        assert system.statistics().dead_letters == 2  # "fills" and "waits"


async def test_a_cancelled_waiting_sender_passes_its_wake_up_on() -> None:
    async with cf.ActorSystem() as system:
        handled: list[object] = []
        ref = await system.spawn(Gate, handled, mailbox_capacity=1)
        event = asyncio.Event()
        await ref.tell(("wait", event))
        await asyncio.sleep(0)
        await ref.tell("fills")
        first = asyncio.create_task(ref.tell("first"))
        second = asyncio.create_task(ref.tell("second"))
        await asyncio.sleep(0)
        first.cancel()
        event.set()
        await asyncio.wait_for(second, 1.0)
        await ref.ask("end")
        assert "second" in handled
        assert "first" not in handled
