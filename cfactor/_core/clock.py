"""Time and randomness: the only two things the runtime reads from the outside world.

Everything that waits (ask timeouts, restart-intensity windows, log rate limits) reads
a ``Clock``; everything that chooses (ids, routing) draws from one seedable
``random.Random``. A simulation swaps both and replays a run exactly.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from cfactor.abc import Cancellable


class LoopClock:
    """The default clock: the running event loop's monotonic time and timers."""

    __slots__ = ("_loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def now(self) -> float:
        return self.loop.time()

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Cancellable:
        return self.loop.call_later(delay, callback, *args)

    def __repr__(self) -> str:
        return "<LoopClock>"


def make_random(seed: int | None) -> random.Random:
    """The system's one source of randomness; ``seed=None`` seeds from the OS."""
    return random.Random(seed)
