"""The Clock's waiting: ``sleep``, ``timeout``, ``timeout_at``, ``wait_for`` and ``wait``
behave the same on the loop's time (``LoopClock``) and on virtual time (``ManualClock``),
where nothing wakes until the test moves time past it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from cfactor._core.clock import LoopClock
from cfactor.abc import Clock
from cfactor.testing import ManualClock

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

pytestmark = pytest.mark.anyio


async def spin(rounds: int = 10) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def hang(scope: AbstractAsyncContextManager[Any]) -> None:
    """Wait forever inside ``scope`` (a clock's timeout)."""
    async with scope:
        await asyncio.Event().wait()


async def times_out_at(clock: ManualClock, task: asyncio.Task[Any], at: float) -> None:
    """``task`` still waits just before virtual time ``at`` and times out at it."""
    await spin()
    clock.advance(at - 0.01 - clock.now())
    await spin()
    assert not task.done()
    clock.advance(0.01)
    with pytest.raises(TimeoutError):
        await task


def test_both_clocks_are_clocks() -> None:
    assert isinstance(LoopClock(), Clock)
    assert isinstance(ManualClock(), Clock)


async def test_a_manual_sleep_wakes_when_time_passes_its_end() -> None:
    clock = ManualClock()
    sleeper = asyncio.create_task(clock.sleep(2.0))
    await spin()
    clock.advance(1.9)
    await spin()
    assert not sleeper.done()
    clock.advance(0.1)
    await spin()
    assert sleeper.done()
    assert clock.pending == 0


async def test_a_cancelled_manual_sleep_leaves_no_timer() -> None:
    clock = ManualClock()
    sleeper = asyncio.create_task(clock.sleep(5.0))
    await spin()
    assert clock.pending == 1
    sleeper.cancel()
    await spin()
    assert sleeper.cancelled()
    assert clock.pending == 0


async def test_a_zero_manual_sleep_needs_no_advance() -> None:
    clock = ManualClock()
    await clock.sleep(0)
    await clock.sleep(-1.0)
    assert clock.pending == 0


async def test_a_manual_timeout_fires_when_time_passes_the_deadline() -> None:
    clock = ManualClock()
    await times_out_at(clock, asyncio.create_task(hang(clock.timeout(3.0))), 3.0)


async def test_a_manual_timeout_that_does_not_fire_changes_nothing() -> None:
    clock = ManualClock()
    async with clock.timeout(1.0) as scope:
        await asyncio.sleep(0)
    assert not scope.expired()
    assert clock.pending == 0


async def test_a_past_deadline_fires_without_advancing() -> None:
    clock = ManualClock(10.0)
    with pytest.raises(TimeoutError):
        await hang(clock.timeout_at(9.0))


async def test_a_timeout_at_a_deadline_on_the_clocks_scale() -> None:
    clock = ManualClock(100.0)
    await times_out_at(clock, asyncio.create_task(hang(clock.timeout_at(101.0))), 101.0)


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    clock = ManualClock()
    task = asyncio.create_task(hang(clock.timeout(1.0)))
    await spin()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.pending == 0


async def test_a_reschedule_moves_the_deadline() -> None:
    clock = ManualClock()

    async def wait() -> None:
        async with clock.timeout(1.0) as scope:
            scope.reschedule(clock.now() + 5.0)
            await asyncio.Event().wait()

    await times_out_at(clock, asyncio.create_task(wait()), 5.0)


async def test_manual_wait_for_returns_or_cancels_what_it_waits_on() -> None:
    clock = ManualClock()
    assert await clock.wait_for(asyncio.sleep(0, "done"), 1.0) == "done"
    inner = asyncio.create_task(asyncio.Event().wait())
    waiting = asyncio.create_task(clock.wait_for(inner, 1.0))
    await spin()
    clock.advance(1.0)
    with pytest.raises(TimeoutError):
        await waiting
    assert inner.cancelled()


async def test_manual_wait_returns_what_is_done_at_the_timeout_and_cancels_nothing() -> None:
    clock = ManualClock()
    gate = asyncio.Event()
    quick = asyncio.create_task(asyncio.sleep(0))
    slow = asyncio.create_task(gate.wait())
    waiting = asyncio.create_task(clock.wait({quick, slow}, timeout=1.0))
    await spin()
    assert not waiting.done()
    clock.advance(1.0)
    done, pending = await waiting
    assert done == {quick}
    assert pending == {slow}
    assert not slow.cancelled()
    gate.set()
    done, pending = await clock.wait({quick, slow})
    assert done == {quick, slow}
    assert pending == set()


async def test_run_for_lets_a_sleeping_loop_run_once_per_period() -> None:
    clock = ManualClock()
    ticks: list[float] = []

    async def heartbeat() -> None:
        while True:
            await clock.sleep(1.0)
            ticks.append(clock.now())

    task = asyncio.create_task(heartbeat())
    await spin()
    await clock.run_for(10.0, step=0.25)
    task.cancel()
    assert len(ticks) == 10
    assert ticks[-1] == pytest.approx(10.0)


async def test_the_loop_clock_waits_on_the_loops_time() -> None:
    clock = LoopClock()
    started = clock.now()
    await clock.sleep(0.01)
    assert clock.now() - started >= 0.009  # uvloop keeps time in whole milliseconds
    with pytest.raises(TimeoutError):
        await hang(clock.timeout(0.01))
    with pytest.raises(TimeoutError):
        await clock.wait_for(asyncio.Event().wait(), 0.01)
    with pytest.raises(TimeoutError):
        await hang(clock.timeout_at(clock.now() + 0.01))
    never = asyncio.create_task(asyncio.Event().wait())
    done, pending = await clock.wait({never}, timeout=0.01)
    assert (done, pending) == (set(), {never})
    never.cancel()
