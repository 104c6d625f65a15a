"""``ManualClock``: virtual time that moves only when a test says so, and ``settle``."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import TYPE_CHECKING, Any

from cfactor._core.clock import TimerClock

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


class ManualClock(TimerClock):
    """A clock that stands still until ``advance`` is called.

    Everything the runtime waits on follows it: ``sleep`` wakes, ``timeout`` fires and
    timers run when the test moves time past them (``advance`` at once, ``run_for`` in
    steps that let the event loop run in between), so a whole cluster runs on it
    without sleeping.
    """

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

    async def run_for(self, seconds: float, *, step: float = 0.05, yields: int = 20) -> None:
        """Move time forward by ``seconds`` in ``step``s, letting the event loop run
        ``yields`` iterations after each: what a timer wakes (a heartbeat that sleeps
        again, a lease renewal) runs before time moves on, as it would in real time."""
        end = self._now + seconds
        while self._now < end:
            self.advance(min(step, end - self._now))
            for _ in range(yields):
                await asyncio.sleep(0)

    @property
    def pending(self) -> int:
        """Timers not yet run or cancelled."""
        return sum(1 for _, _, timer in self._heap if not timer.cancelled)

    def __repr__(self) -> str:
        return f"<ManualClock now={self._now:g} pending={self.pending}>"


async def settle(system: ActorSystem, rounds: int = 1000) -> None:
    """Wait until the system has no runtime housekeeping left (supervision, stops).

    For tests: after an actor fails, this returns once its supervisor has acted.

    Raises:
        TimeoutError: housekeeping still runs after ``rounds`` loop iterations.
    """
    for _ in range(rounds):
        await asyncio.sleep(0)
        if system.hosting.settled():
            # Twice idle in a row: a task done callback may still be queued.
            await asyncio.sleep(0)
            if not system.hosting.housekeeping:
                return
    raise TimeoutError("the actor system did not settle")
