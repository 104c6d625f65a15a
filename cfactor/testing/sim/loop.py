# mypy: disable-error-code="attr-defined,override"
# (it replaces BaseEventLoop._run_once, so it works on asyncio's private handle state)
"""The simulation's event loop: virtual time, a seeded order, members that crash or pause.

``SimLoop`` is an asyncio event loop with no I/O. Its ``time()`` is virtual: when no
callback is ready, time jumps to the next timer, so a run that waits a minute of leases
and heartbeats takes milliseconds. Each iteration runs the callbacks that are ready in
an order drawn from the seed (they are concurrent: asyncio promises only that one
callback sees the effects of those that ran before it), so one seed is one interleaving,
and another seed another. Everything the runtime waits on reads this time: its default
clock is the loop's.

Each simulated member runs in its own ``contextvars`` context (``MEMBER`` holds its
name); every task and callback it starts inherits it, so the loop can tell whose a
callback is. A *paused* member's callbacks are held until it resumes (a process
stopped by SIGSTOP: its timers come due but do not run); a *crashed* member's timers are
cancelled and it can start no task or timer again (a SIGKILL; cancelled tasks still
unwind, but the network and the store no longer hear them).

Sync functions that the runtime would run on a thread (``loop.run_in_executor``) run
inline, at once: threads would make the order depend on the OS scheduler.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
from asyncio import events
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import random
    from collections import deque
    from collections.abc import Callable
    from concurrent.futures import Executor

#: The simulated member the running code belongs to (``None``: the simulation's own).
MEMBER: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "cfactor_sim_member", default=None
)


class SimulationError(Exception):
    """The simulation itself cannot go on (not an invariant of the system under test)."""


class Stuck(SimulationError):
    """Nothing is ready and no timer is set, yet the simulation waits: a deadlock."""


class _NoIO:
    """The selector of a loop with no I/O: ``SimLoop._run_once`` never calls it."""

    def select(self, timeout: float | None = None) -> list[Any]:
        del timeout
        raise SimulationError("a simulated loop has no I/O")

    def close(self) -> None:
        pass


class SimLoop(asyncio.BaseEventLoop):
    """An event loop on virtual time whose callback order is drawn from ``rng``.

    Args:
        rng: The one source of randomness of the run (the order of callbacks here; the
            faults and the runtime's own ids draw from it too).
        start: Virtual time at the start.
        max_iterations: Iterations before the run counts as a livelock.
    """

    # BaseEventLoop's own state, which ``_run_once`` (replaced here) works on.
    _scheduled: list[asyncio.TimerHandle]
    _ready: deque[events.Handle]
    _stopping: bool
    _timer_cancelled_count: int

    def __init__(
        self, rng: random.Random, *, start: float = 1000.0, max_iterations: int = 1_000_000
    ) -> None:
        super().__init__()
        self._selector = _NoIO()
        self.rng = rng
        self._now = start
        self.iterations = 0
        self.max_iterations = max_iterations
        self.paused: set[str] = set()
        self.crashed: set[str] = set()
        self._held: dict[str, list[events.Handle]] = {}
        self._tasks: dict[str, dict[asyncio.Task[Any], None]] = {}

    # -- time -------------------------------------------------------------------------

    def time(self) -> float:
        return self._now

    def timers(self) -> list[asyncio.TimerHandle]:
        """The timers still set (not cancelled, not yet run)."""
        return [timer for timer in self._scheduled if not timer.cancelled()]

    # -- members ----------------------------------------------------------------------

    def member_of(self, handle: events.Handle) -> str | None:
        """The member whose code ``handle`` runs (``None``: the simulation's own)."""
        context: contextvars.Context | None = handle._context
        return None if context is None else context.get(MEMBER)

    def pause(self, member: str) -> None:
        """Hold ``member``'s callbacks (ready ones and timers as they come due)."""
        self.paused.add(member)
        self._held.setdefault(member, [])

    def resume(self, member: str) -> None:
        """Run ``member``'s held callbacks again (their order drawn with the others)."""
        self.paused.discard(member)
        self._ready.extend(self._held.pop(member, []))

    def crash(self, member: str) -> list[asyncio.Task[Any]]:
        """Cancel ``member``'s timers and tasks; from now on it starts none.

        Returns:
            The tasks cancelled (they unwind on the next iterations).
        """
        self.crashed.add(member)
        self.paused.discard(member)
        # Held callbacks run after all: among them are the steps of the tasks cancelled
        # below, which would otherwise never unwind.
        self._ready.extend(self._held.pop(member, []))
        for timer in self._scheduled:
            if not timer.cancelled() and self.member_of(timer) == member:
                timer.cancel()
        tasks = [task for task in self._tasks.pop(member, {}) if not task.done()]
        for task in tasks:
            task.cancel()
        return tasks

    def call_at(
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        timer = super().call_at(when, callback, *args, context=context)
        if self.crashed and self.member_of(timer) in self.crashed:
            timer.cancel()  # a killed process sets no timer
        return timer

    def create_task(
        self, coro: Any, *, name: str | None = None, context: contextvars.Context | None = None
    ) -> asyncio.Task[Any]:
        task = super().create_task(coro, name=name, context=context)
        member = MEMBER.get() if context is None else context.get(MEMBER)
        if member is not None:
            if member in self.crashed:
                task.cancel()  # a killed process starts nothing
            else:
                # Insertion-ordered (not a WeakSet, whose order follows addresses), so
                # a crash cancels its tasks in the same order in every run.
                mine = self._tasks.setdefault(member, {})
                mine[task] = None
                task.add_done_callback(mine.pop)
        return task

    # -- threads: none ----------------------------------------------------------------

    #: Read by the runtime's flow layer: sync functions run inline here, so it needs no
    #: thread pools (cfactor/flow/threads.py).
    runs_functions_inline = True

    def run_in_executor(
        self, executor: Executor | None, func: Callable[..., Any], *args: Any
    ) -> asyncio.Future[Any]:
        del executor
        future = self.create_future()
        try:
            future.set_result(func(*args))
        except BaseException as exc:
            future.set_exception(exc)
        return future

    def call_soon_threadsafe(
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        del callback, args, context
        raise SimulationError(
            "code waits on the loop from a thread; in a simulation sync functions run on the "
            "loop itself, so a sync function that calls back into the loop (ctx.call from a "
            "sync Node function) cannot run here: make the function async"
        )

    def _write_to_self(self) -> None:
        pass

    def _process_events(self, event_list: list[Any]) -> None:
        pass

    # -- one iteration ----------------------------------------------------------------

    def _run_once(self) -> None:
        self.iterations += 1
        if self.iterations > self.max_iterations:
            raise SimulationError(
                f"no end after {self.max_iterations:,} loop iterations: a livelock"
            )
        scheduled = self._scheduled
        while scheduled and scheduled[0]._cancelled:
            self._timer_cancelled_count -= 1
            heapq.heappop(scheduled)._scheduled = False
        ready = self._ready
        if not ready and not self._stopping:
            if not scheduled:
                raise Stuck("nothing is ready and no timer is set: every task waits on another")
            self._now = max(self._now, scheduled[0]._when)
        now = self._now
        while scheduled and scheduled[0]._when <= now:
            timer = heapq.heappop(scheduled)
            timer._scheduled = False
            ready.append(timer)
        batch = list(ready)
        ready.clear()
        if len(batch) > 1:
            self.rng.shuffle(batch)
        paused = self.paused
        for handle in batch:
            if handle._cancelled:
                continue
            if paused:
                member = self.member_of(handle)
                if member in paused:
                    self._held[member].append(handle)
                    continue
            handle._run()
