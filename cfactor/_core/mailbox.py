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
from typing import TYPE_CHECKING, Any

from cfactor.errors import AskTimeout

if TYPE_CHECKING:
    import asyncio

    from cfactor.abc import Clock

    #: What a mailbox holds: the message and where its answer goes (``None`` for a tell).
    Item = tuple[Any, Any]


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
    """The queue half of an actor cell. Not safe across threads (one event loop)."""

    __slots__ = ("capacity", "current", "peak", "processed", "queue", "waiters")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.queue: deque[Item] | None = None
        self.waiters: deque[asyncio.Future[None]] | None = None
        self.peak = 0
        self.processed = 0
        #: The item being processed, so a cancelled run can still answer its ask.
        self.current: Item | None = None

    @property
    def depth(self) -> int:
        queue = self.queue
        return len(queue) if queue is not None else 0

    def is_full(self) -> bool:
        queue = self.queue
        return queue is not None and len(queue) >= self.capacity

    def append(self, item: Item) -> None:
        """Enqueue without a capacity check (the caller checked ``is_full``)."""
        queue = self.queue
        if queue is None:
            queue = self.queue = deque()
        queue.append(item)
        depth = len(queue)
        if depth > self.peak:  # noqa: PLR1730 - cheaper than max() on the hot path
            self.peak = depth

    async def wait_for_space(
        self,
        loop: asyncio.AbstractEventLoop,
        clock: Clock,
        timeout: float | None = None,
    ) -> None:
        """Wait until one more message fits (FIFO among waiting senders).

        The caller re-checks the mailbox afterwards: a stopping actor wakes its
        waiters too, and another sender may have been faster.

        Raises:
            AskTimeout: ``timeout`` seconds passed first.
        """
        waiters = self.waiters
        if waiters is None:
            waiters = self.waiters = deque()
        waiter: asyncio.Future[None] = loop.create_future()
        waiters.append(waiter)
        timer = None
        if timeout is not None and timeout != math.inf:
            timer = clock.call_later(timeout, _expire, waiter, timeout)
        try:
            await waiter
        except BaseException:
            # Cancelled or timed out. If we had been woken already, pass the wake-up on
            # so the free slot is not lost to the senders still waiting.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.wake_sender()
            elif waiter in waiters:
                waiters.remove(waiter)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def wake_sender(self) -> None:
        """Wake the longest-waiting sender, if any (called when a slot frees)."""
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def wake_all_senders(self) -> None:
        waiters = self.waiters
        self.waiters = None
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def take_all(self) -> list[Item]:
        """Empty the mailbox and return what it held, oldest first."""
        queue = self.queue
        self.queue = None
        if queue is None:
            return []
        items = list(queue)
        queue.clear()  # a run loop still holding this deque must see it empty
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


def _expire(waiter: asyncio.Future[None], timeout: float) -> None:
    if not waiter.done():
        waiter.set_exception(AskTimeout(f"no mailbox space within {timeout:g} s"))
