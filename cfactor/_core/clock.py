"""Time and randomness: the only two things the runtime reads from the outside world.

Everything that waits (ask timeouts, restart-intensity windows, log rate limits,
heartbeats, lease renewals, backoff, polling) reads a ``Clock``; everything that
chooses (ids, routing) draws from one seedable ``random.Random``. A simulation swaps
both and replays a run exactly. This module is the only one in the runtime that calls
``asyncio.sleep``/``wait_for``/``timeout``/``loop.time`` or ``time`` (``tests/test_layers.py``
checks it).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from typing import TYPE_CHECKING, Any, Self, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Iterable
    from types import TracebackType

    from cfactor.abc import Cancellable, Clock

T = TypeVar("T")


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class ClockTimeout:
    """``asyncio.timeout`` on any clock: cancels the task when the clock passes ``when``.

    On leaving the block, a cancellation it caused becomes ``TimeoutError`` (one that
    came from elsewhere stays a cancellation), exactly as ``asyncio.Timeout`` does.
    """

    __slots__ = ("_cancelling", "_clock", "_expired", "_task", "_timer", "_when")

    def __init__(self, clock: Clock, when: float | None) -> None:
        self._clock = clock
        self._when = when
        self._task: asyncio.Task[Any] | None = None
        self._timer: Cancellable | None = None
        self._cancelling = 0
        self._expired = False

    def when(self) -> float | None:
        """The deadline on the clock's scale (``None``: never)."""
        return self._when

    def expired(self) -> bool:
        """Whether the deadline passed and cancelled the block."""
        return self._expired

    def reschedule(self, when: float | None) -> None:
        """Move the deadline (``None``: never)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._when = when
        if when is None or self._task is None or self._expired:
            return
        delay = when - self._clock.now()
        if delay <= 0:
            # Due already: on the next loop iteration, as asyncio.timeout does (a manual
            # clock would hold a zero-delay timer until the test advances it).
            self._timer = asyncio.get_running_loop().call_soon(self._on_timeout)
        else:
            self._timer = self._clock.call_later(delay, self._on_timeout)

    def _on_timeout(self) -> None:
        assert self._task is not None
        self._timer = None
        self._expired = True
        self._task.cancel()

    async def __aenter__(self) -> Self:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a clock timeout must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self.reschedule(self._when)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._expired:
            assert self._task is not None
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc

    def __repr__(self) -> str:
        state = "expired" if self._expired else "active" if self._task else "created"
        return f"<ClockTimeout {state} when={self._when}>"


class TimerClock:
    """A clock's waiting built on its ``now`` and ``call_later`` alone.

    A clock that subclasses this and implements those two gets ``sleep``, ``timeout``,
    ``timeout_at``, ``wait_for`` and ``wait`` that follow its time (``ManualClock``
    does); ``LoopClock`` overrides them with asyncio's own, which are the same on the
    loop's time.
    """

    __slots__ = ()

    def now(self) -> float:
        raise NotImplementedError

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Cancellable:
        raise NotImplementedError

    async def sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds of this clock's time (``0``: just yield to the loop)."""
        if delay <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        timer = self.call_later(delay, _resolve, future)
        try:
            await future
        finally:
            timer.cancel()

    def timeout(self, delay: float | None) -> contextlib.AbstractAsyncContextManager[Any]:
        """``async with clock.timeout(s):`` raises ``TimeoutError`` after ``s`` seconds."""
        return ClockTimeout(self, None if delay is None else self.now() + delay)

    def timeout_at(self, when: float | None) -> contextlib.AbstractAsyncContextManager[Any]:
        """As ``timeout``, with a deadline on this clock's scale (``now() + s``)."""
        return ClockTimeout(self, when)

    async def wait_for(self, aw: Awaitable[T], timeout: float | None) -> T:
        """Await ``aw``; past ``timeout`` seconds cancel it and raise ``TimeoutError``."""
        if timeout is None:
            return await aw
        async with self.timeout(timeout):
            return await aw

    async def wait(
        self,
        aws: Iterable[asyncio.Future[Any]],
        *,
        timeout: float | None = None,
        return_when: str = asyncio.ALL_COMPLETED,
    ) -> tuple[set[asyncio.Future[Any]], set[asyncio.Future[Any]]]:
        """``asyncio.wait`` on this clock: ``(done, pending)``; cancels nothing."""
        futures = set(aws)
        if timeout is None:
            return await asyncio.wait(futures, return_when=return_when)
        with contextlib.suppress(TimeoutError):
            async with self.timeout(timeout):
                await asyncio.wait(futures, return_when=return_when)
        done = {f for f in futures if f.done()}
        return done, futures - done


class LoopClock(TimerClock):
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

    # asyncio's own on the loop's time: the same behaviour as TimerClock's, one call less
    # (plain functions that return asyncio's coroutine: no extra coroutine frame).
    def sleep(self, delay: float) -> Coroutine[Any, Any, None]:
        return asyncio.sleep(delay)

    def timeout(self, delay: float | None) -> contextlib.AbstractAsyncContextManager[Any]:
        return asyncio.timeout(delay)

    def timeout_at(self, when: float | None) -> contextlib.AbstractAsyncContextManager[Any]:
        return asyncio.timeout_at(when)

    def wait_for(self, aw: Awaitable[T], timeout: float | None) -> Coroutine[Any, Any, T]:
        return asyncio.wait_for(aw, timeout)

    def wait(
        self,
        aws: Iterable[asyncio.Future[Any]],
        *,
        timeout: float | None = None,
        return_when: str = asyncio.ALL_COMPLETED,
    ) -> Coroutine[Any, Any, tuple[set[asyncio.Future[Any]], set[asyncio.Future[Any]]]]:
        return asyncio.wait(set(aws), timeout=timeout, return_when=return_when)

    def __repr__(self) -> str:
        return "<LoopClock>"


def wall_time() -> float:
    """Seconds since the epoch: only for showing when something happened (uptime)."""
    return time.time()


def make_random(seed: int | None) -> random.Random:
    """The system's one source of randomness; ``seed=None`` seeds from the OS."""
    return random.Random(seed)


class Deadlines:
    """Ask timeouts in coarse buckets: one clock timer per bucket, not per ask.

    An ask registers its future in the bucket its deadline falls in (rounded up to
    ``resolution``) and removes it when answered; a bucket's single timer fails what
    is still waiting. A ``call_later`` + ``cancel`` per ask cost about half of a local
    ask's time; a dict insert and pop cost a tenth of that. The price: a timeout fires
    up to ``resolution`` seconds late, never early: 2 ms (10 ms used up half of the
    20 ms p99 lateness budget; a timer every 2 ms while asks wait costs nothing
    measurable).
    """

    __slots__ = ("_buckets", "_clock", "_per_s", "_timers")

    def __init__(self, clock: Clock, resolution: float = 0.002) -> None:
        self._clock = clock
        # Buckets per second, an integer, so that a deadline on a bucket's edge (1.0 s at
        # 2 ms) does not round up into the next bucket (1.0 / 0.002 is 500.00000000000006).
        self._per_s = max(1, round(1 / resolution))
        self._buckets: dict[int, dict[asyncio.Future[Any], Callable[[], BaseException]]] = {}
        self._timers: dict[int, Cancellable] = {}

    def add(
        self, future: asyncio.Future[Any], timeout: float, error: Callable[[], BaseException]
    ) -> int:
        """Fail ``future`` with ``error()`` after ``timeout`` s; returns a key for ``discard``."""
        now = self._clock.now()
        per_s = self._per_s
        key = math.ceil((now + timeout) * per_s)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = {}
            self._timers[key] = self._clock.call_later(key / per_s - now, self._expire, key)
        bucket[future] = error
        return key

    def discard(self, key: int, future: asyncio.Future[Any]) -> None:
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.pop(future, None)

    def close(self, error: BaseException) -> None:
        """Fail every ask still waiting with ``error`` and cancel the timers (the system
        closed: nothing of it stays scheduled)."""
        timers, self._timers = self._timers, {}
        for timer in timers.values():
            timer.cancel()
        buckets, self._buckets = self._buckets, {}
        for bucket in buckets.values():
            for future in bucket:
                if not future.done():
                    future.set_exception(error)

    def _expire(self, key: int) -> None:
        self._timers.pop(key, None)
        bucket = self._buckets.pop(key, None)
        if bucket:
            for future, error in bucket.items():
                if not future.done():
                    future.set_exception(error())

    @property
    def pending(self) -> int:
        """Asks now waiting on a deadline."""
        return sum(len(bucket) for bucket in self._buckets.values())
