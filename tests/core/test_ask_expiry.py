"""Asks that time out: never handled later, hold no memory, end by their deadline
(issue 10, items 1 and 10; the rule is in docs/runtime.md).

Over the in-process memory transport for the remote half; tests/faults/
test_ask_deadlines.py does the same over real ZeroMQ with a member process.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest

import cfactor as cf
from cfactor._core.remote import REMOTE_ASK_PARK_LIMIT, REMOTE_ASK_WINDOW
from cfactor.testing import MemoryTransport
from tests.core.actors import Gate, KeyGate
from tests.core.test_remote import members

pytestmark = pytest.mark.anyio


class Payload:
    """A message that can be watched with a weak reference."""

    def __init__(self, n: int) -> None:
        self.n = n


async def ask_outcome(ref: cf.ActorRef, message: Any, timeout: float) -> BaseException | Any:
    try:
        return await ref.ask(message, timeout=timeout)
    except cf.CfactorError as exc:
        return exc


async def test_timed_out_asks_are_never_handled_later() -> None:
    async with cf.ActorSystem() as system:
        handled: list[Any] = []
        ref = await system.spawn(Gate, handled, mailbox_capacity=10)
        event = asyncio.Event()
        await ref.tell(("wait", event))
        await asyncio.sleep(0)
        # 10 fit in the mailbox, 40 park behind it: all time out.
        outcomes = await asyncio.gather(*(ask_outcome(ref, i, 0.05) for i in range(50)))
        assert all(isinstance(o, cf.AskTimeout) for o in outcomes)
        cancelled = asyncio.create_task(ref.ask("cancelled", timeout=30))
        await asyncio.sleep(0)
        cancelled.cancel()
        event.set()
        assert await ref.ask("after", timeout=5) == "after"
        assert handled == [("wait", event), "after"]  # no ask that was given up on
        stats = ref.statistics()
        assert stats.asks_expired == 51
        assert stats.depth == 0
        assert stats.waiting_senders == 0


async def test_timed_out_asks_release_their_memory_while_the_actor_hangs() -> None:
    async with cf.ActorSystem() as system:
        ref = await system.spawn(Gate, mailbox_capacity=1000)
        event = asyncio.Event()
        await ref.tell(("wait", event))
        await asyncio.sleep(0)
        messages = [Payload(i) for i in range(5000)]
        watched = [weakref.ref(m) for m in messages]
        asks = [asyncio.ensure_future(ref.ask(m, timeout=0.05)) for m in messages]
        del messages
        outcomes = await asyncio.gather(*asks, return_exceptions=True)
        assert all(isinstance(o, cf.AskTimeout) for o in outcomes)
        del asks, outcomes
        # The actor still hangs in its first message, yet its mailbox let go of them.
        stats = ref.statistics()
        assert stats.depth == 0
        assert stats.waiting_senders == 0
        assert stats.asks_expired == 5000
        await asyncio.sleep(0.05)  # the loop's own callbacks still hold the last tasks
        gc.collect()
        assert sum(1 for w in watched if w() is not None) == 0
        # And the mailbox takes new work at once.
        ref.tell_nowait("next")
        assert ref.statistics().depth == 1
        event.set()


async def test_a_remote_full_actor_parks_a_bounded_number_of_asks() -> None:
    async with members(2) as (a, b):
        events: dict[str, asyncio.Event] = {}
        local = await b.spawn(KeyGate, events, name="gate", mailbox_capacity=5)
        remote = a.ref("gate", at=b.address)
        await remote.tell(("wait", "jam"))
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcomes = await asyncio.gather(*(ask_outcome(remote, i, 1.0) for i in range(300)))
        full = [o for o in outcomes if isinstance(o, cf.MailboxFull)]
        timed_out = [o for o in outcomes if isinstance(o, cf.AskTimeout)]
        # 5 in the mailbox and REMOTE_ASK_PARK_LIMIT parked time out; the rest are
        # refused at once, typed.
        assert len(timed_out) == 5 + REMOTE_ASK_PARK_LIMIT
        assert len(full) == 300 - 5 - REMOTE_ASK_PARK_LIMIT
        assert b.statistics().refused_full == len(full)
        assert loop.time() - started < 5  # all ended by their deadline (generously)
        # The receiver skips them: out of budget, never handled. Its budget runs from
        # when each ask arrived, a little after the asker's began (on a loaded machine
        # 300 asks take a while to cross): wait until it has surely run out there too.
        await asyncio.sleep(1.0)
        events.setdefault("jam", asyncio.Event()).set()
        assert await remote.ask("after", timeout=5) == "after"
        assert local.statistics().asks_expired == 5 + REMOTE_ASK_PARK_LIMIT


async def test_a_remote_ask_ends_by_its_deadline_when_the_send_queue_is_full() -> None:
    async with members(2, send_queue_limit=10, credit_window=10) as (a, b):
        events: dict[str, asyncio.Event] = {}
        handled: list[Any] = []
        await b.spawn(KeyGate, events, handled, name="gate", mailbox_capacity=1)
        remote = a.ref("gate", at=b.address)
        await remote.tell(("wait", "jam"))
        # Fill everything: the mailbox, the credit window (parked tells) and the queue.
        with pytest.raises(cf.MailboxFull):
            for i in range(100):
                remote.tell_nowait(i)
                await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcomes = await asyncio.gather(*(ask_outcome(remote, ("a", i), 0.1) for i in range(20)))
        assert all(isinstance(o, cf.AskTimeout) for o in outcomes)
        assert loop.time() - started < 2  # the queue did not hold them past the deadline
        events.setdefault("jam", asyncio.Event()).set()
        assert await remote.ask("after", timeout=5) == "after"
        transport = a._transport
        assert isinstance(transport, MemoryTransport)
        assert transport.abandoned == 20  # never sent
        assert not any(isinstance(m, tuple) and m[0] == "a" for m in handled)


async def test_asks_to_one_remote_actor_do_not_queue_ahead_of_its_neighbours() -> None:
    async with members(2) as (a, b):
        events: dict[str, asyncio.Event] = {}
        await b.spawn(KeyGate, events, name="hung", mailbox_capacity=100_000)
        await b.spawn(Gate, name="idle")
        hung = a.ref("hung", at=b.address)
        idle = a.ref("idle", at=b.address)
        await hung.tell(("wait", "never"))
        flood = [asyncio.ensure_future(ask_outcome(hung, i, 1.0)) for i in range(3000)]
        await asyncio.sleep(0)
        assert await idle.ask("ping", timeout=5) == "ping"
        # Only REMOTE_ASK_WINDOW of the flood went to the transport; the rest wait in
        # the asking member, under their deadline, and end there.
        transport = b.statistics().transport
        assert transport is not None
        assert transport.frames_received <= REMOTE_ASK_WINDOW + 10
        assert not all(task.done() for task in flood)
        outcomes = await asyncio.wait_for(asyncio.gather(*flood), 10)
        assert all(isinstance(o, cf.AskTimeout) for o in outcomes)
        events.setdefault("never", asyncio.Event()).set()


async def test_a_flood_of_tells_to_one_remote_actor_is_held_per_actor() -> None:
    async with members(2) as (a, b):
        events: dict[str, asyncio.Event] = {}
        handled: list[Any] = []
        await b.spawn(KeyGate, events, handled, name="hung")
        await b.spawn(Gate, name="idle")
        hung = a.ref("hung", at=b.address)
        idle = a.ref("idle", at=b.address)
        await hung.tell(("wait", "gate"))
        count = 30_000  # more than the mailbox, the credit window and the send queue

        async def flood() -> None:
            for i in range(count):
                await hung.tell(i)

        sender = asyncio.create_task(flood())
        await asyncio.sleep(0.3)
        assert not sender.done()  # held: the actor's member asked it to wait
        with pytest.raises(cf.MailboxFull, match="hold tells"):
            hung.tell_nowait("overtaking")
        # The neighbour is not behind the flood (before: behind 10,000 queued tells).
        assert await idle.ask("ping", timeout=2) == "ping"
        events.setdefault("gate", asyncio.Event()).set()
        await asyncio.wait_for(sender, 30)
        assert await hung.ask("last", timeout=10) == "last"
        # Nothing accepted was lost, and order held.
        assert [m for m in handled if isinstance(m, int)] == list(range(count))
        assert b.statistics().refused_full == 0
        assert b.statistics().dead_letters == 0
