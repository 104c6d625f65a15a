"""Helpers for testing code built on cfactor (and cfactor itself).

``ManualClock`` is a ``cf.abc.Clock`` whose time moves only when the test says so, so
timeouts and restart-intensity windows are tested exactly, without sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from cfactor._core.system import ActorSystem


class ManualTimer:
    """A callback scheduled on a ``ManualClock``."""

    __slots__ = ("args", "callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock that stands still until ``advance`` is called."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._heap: list[tuple[float, int, ManualTimer]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> ManualTimer:
        timer = ManualTimer(self._now + delay, callback, args)
        heapq.heappush(self._heap, (timer.when, next(self._order), timer))
        return timer

    def advance(self, seconds: float) -> None:
        """Move time forward, running every timer that falls due, in order."""
        target = self._now + seconds
        heap = self._heap
        while heap and heap[0][0] <= target:
            when, _, timer = heapq.heappop(heap)
            self._now = max(self._now, when)
            if not timer.cancelled:
                timer.callback(*timer.args)
        self._now = target

    @property
    def pending(self) -> int:
        """Timers not yet run or cancelled."""
        return sum(1 for _, _, timer in self._heap if not timer.cancelled)


async def settle(system: ActorSystem, rounds: int = 1000) -> None:
    """Wait until the system has no runtime housekeeping left (supervision, stops).

    For tests: after an actor fails, this returns once its supervisor has acted.

    Raises:
        TimeoutError: housekeeping still runs after ``rounds`` loop iterations.
    """
    for _ in range(rounds):
        await asyncio.sleep(0)
        if not system._background and all(
            cell.task is None or not cell.queue for cell in system._names.values()
        ):
            # Twice idle in a row: a task done callback may still be queued.
            await asyncio.sleep(0)
            if not system._background:
                return
    raise TimeoutError("the actor system did not settle")
