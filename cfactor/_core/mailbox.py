"""A bounded FIFO mailbox with waiting senders and statistics.

The mailbox is a base class of the actor cell rather than an object of its own: one
object less per actor, one attribute hop less per message. Its deque is allocated on
the first message and dropped when the actor drains it, so an idle actor pays nothing
for it (an empty deque alone is 760 bytes).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from cfactor.errors import AskTimeout

if TYPE_CHECKING:
    import asyncio

    from cfactor.abc import Clock

    #: What a mailbox holds: the message and where its answer goes (``None`` for a tell).
    Item = tuple[Any, Any]


class Admission(Protocol):
    """What a blocked sender waits on: an ``asyncio.Future``, or for a message that
    came from another member, an object that returns the transport's credit."""

    def done(self) -> bool: ...

    def set_result(self, result: None, /) -> None: ...


class Unawaited:
    """The admission of a parked message that no coroutine awaits.

    Local asks park with ``LOCAL_ASK`` and remote asks that carry a deadline with
    ``REMOTE_ASK`` (their transport credit went back at once): an ask's own deadline
    ends its wait, so it needs no future or timer of its own. Whether such a message
    is still wanted is read from its reply (``reply.done()``), not from the admission.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def done(self) -> bool:
        return False

    def set_result(self, _result: None, /) -> None:
        return None

    def __repr__(self) -> str:
        return f"<{self.name}>"


LOCAL_ASK: Final = Unawaited("local ask")
REMOTE_ASK: Final = Unawaited("remote ask")


class HeldCredit:
    """Base of admissions that hold a remote sender's credit while parked
    (``remote.Credit``): the mailbox counts them per actor, to bound them."""

    __slots__ = ()

    def done(self) -> bool:
        return False

    def set_result(self, _result: None, /) -> None:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class MailboxStatistics:
    """A snapshot of one mailbox, as the autoscaler reads it.

    Attributes:
        depth: Messages waiting, not counting the one being processed.
        capacity: The most messages the mailbox holds.
        peak: The largest depth seen since the actor was spawned.
        waiting_senders: Senders blocked in ``tell``/``ask`` because the mailbox is full.
        in_progress: 1 while a message is being processed, else 0.
        processed: Messages handled since the actor was spawned (all incarnations).
        asks_expired: Asks dropped unhandled because their asker had given up (timed
            out or cancelled) before the actor took them.
    """

    depth: int
    capacity: int
    peak: int
    waiting_senders: int
    in_progress: int
    processed: int
    asks_expired: int = 0


class Mailbox:
    """The queue half of an actor cell. Not safe across threads (one event loop).

    A sender that finds the mailbox full waits in ``waiters`` together with its
    message; when the actor takes a message, the first waiter's message moves into the
    freed slot at once (a hand-off). So blocked senders keep strict FIFO order, a
    newcomer never overtakes them, and while anyone waits the mailbox stays full.
    """

    __slots__ = (
        "asks_expired",
        "capacity",
        "compacted_at",
        "current",
        "parked_asks",
        "parked_held",
        "peak",
        "processed",
        "queue",
        "stale",
        "waiters",
    )

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.queue: deque[Item] | None = None
        #: Blocked senders, oldest first: their message and what frees them.
        self.waiters: deque[tuple[Item, Admission]] | None = None
        self.peak = 0
        self.processed = 0
        #: The item being processed, so a cancelled run can still answer its ask.
        self.current: Item | None = None
        #: Parked remote messages holding their sender's credit (tells, asks with no
        #: deadline), and parked remote asks with a deadline (credit given back).
        self.parked_held = 0
        self.parked_asks = 0
        #: Asks dropped unhandled (their asker gave up); and asks that timed out
        #: since the last ``compact`` (a hint of how much it would free).
        self.asks_expired = 0
        self.stale = 0
        #: When a remote sender last made this mailbox ``compact`` (rate limit).
        self.compacted_at = -math.inf

    @property
    def depth(self) -> int:
        queue = self.queue
        return len(queue) if queue is not None else 0

    def has_room(self) -> bool:
        """True if a message can be enqueued now without waiting."""
        if self.waiters:
            return False
        queue = self.queue
        return queue is None or len(queue) < self.capacity

    def append(self, item: Item) -> None:
        """Enqueue without a capacity check (the caller checked ``has_room``)."""
        queue = self.queue
        if queue is None:
            queue = self.queue = deque()
        queue.append(item)
        depth = len(queue)
        if depth > self.peak:  # noqa: PLR1730 - cheaper than max() on the hot path
            self.peak = depth

    async def append_when_room(
        self,
        item: Item,
        loop: asyncio.AbstractEventLoop,
        clock: Clock,
        timeout: float | None = None,
    ) -> None:
        """Wait behind the blocked senders until ``item`` is in the mailbox.

        Raises:
            AskTimeout: ``timeout`` seconds passed first; the item was not enqueued.
        """
        waiters = self.waiters
        if waiters is None:
            waiters = self.waiters = deque()
        admitted: asyncio.Future[None] = loop.create_future()
        entry = (item, admitted)
        waiters.append(entry)
        timer = None
        if timeout is not None and timeout != math.inf:
            timer = clock.call_later(timeout, _expire, admitted, timeout)
        try:
            await admitted
        except BaseException:
            if entry in waiters:  # cancelled or timed out before admission
                waiters.remove(entry)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def park(self, item: Item, admission: Admission) -> None:
        """Queue ``item`` behind the blocked senders without waiting for it.

        ``admission.set_result(None)`` is called when the item enters the mailbox (or
        the actor stops). Used for messages from other members: the transport's credit
        comes back only then, which slows the remote sender.
        """
        waiters = self.waiters
        if waiters is None:
            waiters = self.waiters = deque()
        waiters.append((item, admission))
        if admission is REMOTE_ASK:
            self.parked_asks += 1
        elif isinstance(admission, HeldCredit):
            self.parked_held += 1

    def _unpark(self, admitted: Admission) -> None:
        if admitted is REMOTE_ASK:
            self.parked_asks -= 1
        elif isinstance(admitted, HeldCredit):
            self.parked_held -= 1

    def admit_waiter(self) -> None:
        """Move the oldest blocked sender's message into the slot just freed.

        A parked ask whose asker gave up meanwhile is dropped here (never handled).
        """
        waiters = self.waiters
        while waiters:
            item, admitted = waiters.popleft()
            if admitted.done():  # a local sender that gave up: skip it
                continue
            self._unpark(admitted)
            reply = item[1]
            if reply is not None and reply.done():
                self.asks_expired += 1
                admitted.set_result(None)  # gives a held credit back
                continue
            self.append(item)
            admitted.set_result(None)
            return

    def compact(self) -> int:
        """Drop the asks whose asker gave up from the mailbox and its parked messages,
        so they hold no memory; parked messages move into the freed slots.

        Returns:
            How many asks were dropped.
        """
        self.stale = 0
        dropped = 0
        queue = self.queue
        if queue:
            kept = [item for item in queue if item[1] is None or not item[1].done()]
            if len(kept) != len(queue):
                dropped = len(queue) - len(kept)
                # In place: a running actor's run loop holds this very deque.
                queue.clear()
                queue.extend(kept)
        waiters = self.waiters
        if waiters:
            live: list[tuple[Item, Admission]] = []
            for entry in waiters:
                item, admitted = entry
                if admitted.done():
                    continue  # a local sender that gave up
                reply = item[1]
                if reply is not None and reply.done():
                    dropped += 1
                    self._unpark(admitted)
                    admitted.set_result(None)
                else:
                    live.append(entry)
            if len(live) != len(waiters):
                waiters.clear()
                waiters.extend(live)
            while waiters and (self.queue is None or len(self.queue) < self.capacity):
                self.admit_waiter()
        self.asks_expired += dropped
        return dropped

    def take_all(self) -> list[Item]:
        """Empty the mailbox and release the blocked senders; their items, oldest first."""
        queue = self.queue
        self.queue = None
        items: list[Item] = []
        if queue is not None:
            items.extend(queue)
            queue.clear()  # a run loop still holding this deque must see it empty
        waiters = self.waiters
        self.waiters = None
        while waiters:
            item, admitted = waiters.popleft()
            if not admitted.done():
                items.append(item)
                admitted.set_result(None)
        self.parked_held = self.parked_asks = 0
        return items

    def statistics(self) -> MailboxStatistics:
        return MailboxStatistics(
            depth=self.depth,
            capacity=self.capacity,
            peak=self.peak,
            waiting_senders=len(self.waiters) if self.waiters else 0,
            in_progress=1 if self.current is not None else 0,
            processed=self.processed,
            asks_expired=self.asks_expired,
        )


def _expire(admitted: asyncio.Future[None], timeout: float) -> None:
    if not admitted.done():
        admitted.set_exception(AskTimeout(f"no mailbox space within {timeout:g} s"))
