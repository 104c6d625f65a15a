from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

import pytest

import cfactor as cf
from cfactor.testing import ManualClock, settle
from tests.core.actors import Counter, Gate

pytestmark = pytest.mark.anyio


async def test_ask_times_out_with_a_typed_error_on_the_systems_clock() -> None:
    clock = ManualClock()
    async with cf.ActorSystem(clock=clock) as system:
        ref = await system.spawn(Gate)
        event = asyncio.Event()
        ask = asyncio.create_task(ref.ask(("wait", event), timeout=2.0))
        await asyncio.sleep(0)
        clock.advance(1.9)
        await asyncio.sleep(0)
        assert not ask.done()
        clock.advance(0.2)
        with pytest.raises(cf.AskTimeout, match="2 s") as info:
            await ask
        assert isinstance(info.value, TimeoutError)
        event.set()
        # The late answer is dropped quietly; the actor keeps serving.
        assert await ref.ask("ping") == "ping"
        assert system.deadlines.pending == 0  # answered asks leave no deadline behind


async def test_the_default_timeout_comes_from_the_system() -> None:
    clock = ManualClock()
    async with cf.ActorSystem(clock=clock, ask_timeout_s=7.0) as system:
        ref = await system.spawn(Gate)
        event = asyncio.Event()
        ask = asyncio.create_task(ref.ask(("wait", event)))
        await asyncio.sleep(0)
        clock.advance(6.9)
        await asyncio.sleep(0)
        assert not ask.done()
        clock.advance(0.2)
        with pytest.raises(cf.AskTimeout):
            await ask
        event.set()


async def test_an_infinite_timeout_sets_no_timer() -> None:
    clock = ManualClock()
    async with cf.ActorSystem(clock=clock) as system:
        ref = await system.spawn(Counter, 3)
        assert await ref.ask("get", timeout=math.inf) == 3
        assert clock.pending == 0


@pytest.mark.parametrize("bad", [0, -1.0, math.nan])
async def test_a_timeout_that_is_not_positive_is_a_config_error(bad: float) -> None:
    async with cf.ActorSystem() as system:
        ref = await system.spawn(Counter)
        with pytest.raises(cf.ConfigError):
            await ref.ask("get", timeout=bad)


async def test_a_handler_error_reaches_the_asker_with_its_traceback() -> None:
    async with cf.ActorSystem() as system:
        ref = await system.spawn(Counter, 5)
        await ref.tell(("add", 1))
        with pytest.raises(cf.RemoteActorError) as info:
            await ref.ask(("fail", "bad input"))
        error = info.value
        assert error.type_name == "ValueError"
        assert error.message == "bad input"
        assert "in receive" in error.traceback
        assert "raise ValueError(text)" in error.traceback
        # Restarted (permanent, one_for_one): a fresh instance with the same arguments.
        assert await ref.ask("get") == 5
        assert system.statistics().restarts == 1


async def test_a_custom_exception_is_named_with_its_module() -> None:
    class QuotaExceeded(Exception):
        pass

    class Strict(cf.Actor):
        async def receive(self, message: Any) -> Any:
            raise QuotaExceeded(str(message))

    async with cf.ActorSystem() as system:
        ref = await system.spawn(Strict)
        with pytest.raises(cf.RemoteActorError) as info:
            await ref.ask("too much")
        assert info.value.type_name.endswith("QuotaExceeded")
        assert info.value.type_name.startswith(__name__)


async def test_asks_queued_in_a_stopping_actor_fail_at_once_not_at_their_timeout() -> None:
    async with cf.ActorSystem() as system:
        ref = await system.spawn(Gate, name="g")
        event = asyncio.Event()
        busy = asyncio.create_task(ref.ask(("wait", event), timeout=60))
        await asyncio.sleep(0)
        queued = [asyncio.create_task(ref.ask(i, timeout=60)) for i in range(3)]
        await ref.tell("a tell that will never be handled")
        await asyncio.sleep(0)
        stopping = asyncio.create_task(ref.stop())
        for task in queued:
            with pytest.raises(cf.ActorStopped):
                await asyncio.wait_for(task, 1.0)
        assert not stopping.done()  # still finishing the message in progress
        event.set()
        assert await busy == ("wait", event)  # the message in progress completes
        await stopping
        assert system.statistics().dead_letters == 1
        with pytest.raises(cf.ActorStopped):
            await ref.ask("late")


async def test_a_stuck_handler_is_cancelled_after_the_stop_timeout() -> None:
    clock = ManualClock()
    async with cf.ActorSystem(clock=clock, stop_timeout_s=3.0) as system:
        ref = await system.spawn(Gate)
        stuck = asyncio.create_task(ref.ask(("wait", asyncio.Event()), timeout=math.inf))
        await asyncio.sleep(0)
        stopping = asyncio.create_task(ref.stop())
        for _ in range(5):  # let the stop reach the point where it waits on the clock
            await asyncio.sleep(0)
        assert not stopping.done()
        clock.advance(3.0)
        await stopping
        with pytest.raises(cf.ActorStopped):
            await stuck


async def test_tell_to_a_stopped_actor_is_a_dead_letter_logged_at_most_once_a_second(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    caplog.set_level(logging.DEBUG, logger="cfactor")
    async with cf.ActorSystem(clock=clock) as system:
        ref = await system.spawn(Counter, name="gone")
        await ref.stop()
        for i in range(100):
            await ref.tell(i)
        ref.tell_nowait("x")
        clock.advance(1.0)
        await ref.tell("after a second")
        assert system.statistics().dead_letters == 102
    records = [r for r in caplog.records if "dead letter" in r.getMessage()]
    assert len(records) == 2
    assert "'gone'" in records[0].getMessage()
    assert "101 since the last report" in records[1].getMessage()


async def test_a_cancelled_asker_does_not_disturb_the_actor() -> None:
    async with cf.ActorSystem() as system:
        ref = await system.spawn(Gate)
        event = asyncio.Event()
        ask = asyncio.create_task(ref.ask(("wait", event)))
        await asyncio.sleep(0)
        ask.cancel()
        with pytest.raises(asyncio.CancelledError):
            await ask
        event.set()
        assert await ref.ask("next") == "next"
        await settle(system)
        assert system.statistics().restarts == 0


async def test_deadlines_share_one_timer_per_bucket_and_never_fire_early() -> None:
    clock = ManualClock()
    async with cf.ActorSystem(clock=clock) as system:
        ref = await system.spawn(Gate)
        event = asyncio.Event()
        asks = [asyncio.create_task(ref.ask(("wait", event), timeout=1.0)) for _ in range(50)]
        await asyncio.sleep(0)
        assert system.deadlines.pending == 50
        assert clock.pending == 1  # fifty asks, one timer
        clock.advance(0.999)
        await asyncio.sleep(0)
        assert not any(task.done() for task in asks)
        clock.advance(0.011)  # at most one 10 ms bucket late
        results = await asyncio.gather(*asks, return_exceptions=True)
        assert all(isinstance(r, cf.AskTimeout) for r in results)
        assert system.deadlines.pending == 0
        event.set()


async def test_a_timeout_spent_waiting_for_room_is_reported_as_asked() -> None:
    clock = ManualClock()
    async with cf.ActorSystem(clock=clock) as system:
        ref = await system.spawn(Gate, mailbox_capacity=1)
        first, second = asyncio.Event(), asyncio.Event()
        await ref.tell(("wait", first))
        await asyncio.sleep(0)
        await ref.tell(("wait", second))  # fills the mailbox
        ask = asyncio.create_task(ref.ask("late", timeout=2.0))
        await asyncio.sleep(0)
        clock.advance(1.5)
        first.set()  # room after 1.5 s: the ask enters the mailbox with 0.5 s left
        for _ in range(5):
            await asyncio.sleep(0)
        assert ref.statistics().depth == 1
        clock.advance(0.4)
        await asyncio.sleep(0)
        assert not ask.done()
        clock.advance(0.2)
        with pytest.raises(cf.AskTimeout, match="within 2 s"):
            await ask
        second.set()
