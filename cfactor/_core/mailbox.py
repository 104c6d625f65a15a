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
from typing import TYPE_CHECKING, Any, Protocol

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
    """

    depth: int
    capacity: int
    peak: int
    waiting_senders: int
    in_progress: int
    processed: int


class Mailbox:
    """The queue half of an actor cell. Not safe across threads (one event loop).

    A sender that finds the mailbox full waits in ``waiters`` together with its
    message; when the actor takes a message, the first waiter's message moves into the
    freed slot at once (a hand-off). So blocked senders keep strict FIFO order, a
    newcomer never overtakes them, and while anyone waits the mailbox stays full.
    """

    __slots__ = ("capacity", "current", "peak", "processed", "queue", "waiters")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.queue: deque[Item] | None = None
        #: Blocked senders, oldest first: their message and what frees them.
        self.waiters: deque[tuple[Item, Admission]] | None = None
        self.peak = 0
        self.processed = 0
        #: The item being processed, so a cancelled run can still answer its ask.
        self.current: Item | None = None

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

    def admit_waiter(self) -> None:
        """Move the oldest blocked sender's message into the slot just freed."""
        waiters = self.waiters
        while waiters:
            item, admitted = waiters.popleft()
            if not admitted.done():  # else it timed out or was cancelled: skip it
                self.append(item)
                admitted.set_result(None)
                return

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
        return items

    def statistics(self) -> MailboxStatistics:
        return MailboxStatistics(
            depth=self.depth,
            capacity=self.capacity,
            peak=self.peak,
            waiting_senders=len(self.waiters) if self.waiters else 0,
            in_progress=1 if self.current is not None else 0,
            processed=self.processed,
        )


def _expire(admitted: asyncio.Future[None], timeout: float) -> None:
    if not admitted.done():
        admitted.set_exception(AskTimeout(f"no mailbox space within {timeout:g} s"))
