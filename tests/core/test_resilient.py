"""Restart.RESILIENT: input never exhausts a supervisor; loops without input back off."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import cfactor as cf
from cfactor._core.supervision import BACKOFF_MAX_S, BACKOFF_MIN_S, backoff_s
from cfactor.testing import ManualClock, settle

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]


class Service(cf.Actor):
    """Counts the messages this instance handled; raises on ``"fail"``."""

    starts = 0
    broken = False

    def __init__(self) -> None:
        self.handled = 0

    async def on_start(self) -> None:
        type(self).starts += 1
        if type(self).broken:
            raise OSError("dependency down")

    async def receive(self, message: Any) -> Any:
        self.handled += 1
        if message == "fail":
            raise RuntimeError("bad input")
        return self.handled


def test_the_backoff_doubles_up_to_its_cap() -> None:
    delays = [backoff_s(n) for n in range(1, 12)]
    assert delays[0] == BACKOFF_MIN_S
    assert delays[1] == 2 * BACKOFF_MIN_S
    assert delays[-1] == BACKOFF_MAX_S
    assert delays == sorted(delays)
    assert backoff_s(10_000) == BACKOFF_MAX_S  # no overflow


async def test_failing_input_restarts_at_once_and_spares_the_supervisors_budget() -> None:
    class Svc(Service):
        starts = 0
        broken = False

    async with cf.ActorSystem(
        clock=ManualClock(), supervision=cf.Supervision(max_restarts=1, within_s=60)
    ) as system:
        svc = await system.spawn(Svc, name="svc", restart="resilient")
        other = await system.spawn(Service, name="other")
        for _ in range(25):
            with pytest.raises(cf.RemoteActorError, match="bad input"):
                await svc.ask("fail")
        await settle(system)
        assert await svc.ask("get") == 1  # a fresh instance, no clock advance needed
        assert Svc.starts == 26
        # The root's window was not charged: a permanent sibling still gets its restart.
        with pytest.raises(cf.RemoteActorError):
            await other.ask("fail")
        await settle(system)
        assert await other.ask("get") == 1
        assert system.statistics().escalations == 0
        assert system.statistics().restarts == 26


async def test_a_resilient_actor_that_cannot_start_backs_off_and_comes_back() -> None:
    class Svc(Service):
        starts = 0
        broken = False

    clock = ManualClock()
    async with cf.ActorSystem(clock=clock) as system:
        svc = await system.spawn(Svc, name="svc", restart="resilient")
        Svc.broken = True
        with pytest.raises(cf.RemoteActorError):
            await svc.ask("fail")
        await settle(system)
        assert Svc.starts == 2  # the immediate restart failed in on_start
        # Each failed start waits longer: 0.1, 0.2, 0.4 s, ... (not a spin).
        for n in range(1, 5):
            clock.advance(backoff_s(n) * 0.9)
            await settle(system)
            assert Svc.starts == 1 + n, n
            clock.advance(backoff_s(n) * 0.2)
            await settle(system)
            assert Svc.starts == 2 + n, n
        assert svc.is_alive
        pending = svc.ask("get", timeout=60)  # waits in the mailbox meanwhile
        Svc.broken = False
        clock.advance(BACKOFF_MAX_S)
        await settle(system)
        assert await pending == 1
        assert system.statistics().escalations == 0
        # A start after the run of failures resets the backoff: the next immediate.
        Svc.broken = True
        starts = Svc.starts
        with pytest.raises(cf.RemoteActorError):
            await svc.ask("fail")
        await settle(system)
        assert Svc.starts == starts + 1
        clock.advance(BACKOFF_MIN_S * 1.1)
        await settle(system)
        assert Svc.starts == starts + 2


async def test_a_resilient_actor_stopped_while_backing_off_stays_stopped() -> None:
    class Svc(Service):
        starts = 0
        broken = False

    clock = ManualClock()
    async with cf.ActorSystem(clock=clock) as system:
        svc = await system.spawn(Svc, name="svc", restart="resilient")
        Svc.broken = True
        with pytest.raises(cf.RemoteActorError):
            await svc.ask("fail")
        await settle(system)
        await svc.stop()
        clock.advance(BACKOFF_MAX_S)
        await settle(system)
        assert Svc.starts == 2
        assert not svc.is_alive
        with pytest.raises(cf.ActorStopped):
            await svc.ask("get")


async def test_self_stops_before_any_message_back_off_too() -> None:
    starts: list[int] = []

    class Quitter(cf.Actor):
        async def on_start(self) -> None:
            starts.append(1)
            self.stop()

        async def receive(self, message: Any) -> Any:
            return message

    clock = ManualClock()
    async with cf.ActorSystem(clock=clock) as system:
        await system.spawn(Quitter, name="quitter", restart="resilient")
        await settle(system)
        assert len(starts) == 1  # the exit consumed no message: backoff, not a spin
        clock.advance(BACKOFF_MIN_S * 1.1)
        await settle(system)
        assert len(starts) == 2


async def test_failures_of_a_resilient_actor_are_logged_at_most_once_a_second(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Svc(Service):
        starts = 0
        broken = False

    clock = ManualClock()
    caplog.set_level(logging.WARNING, logger="cfactor.actor")
    async with cf.ActorSystem(clock=clock) as system:
        svc = await system.spawn(Svc, name="svc", restart="resilient")
        for _ in range(25):
            with pytest.raises(cf.RemoteActorError):
                await svc.ask("fail")
        await settle(system)
        lines = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
        assert lines == ["actor 'svc' failed: RuntimeError('bad input')"]
        clock.advance(1.5)
        with pytest.raises(cf.RemoteActorError):
            await svc.ask("fail")
        await settle(system)
        lines = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
        assert lines[1:] == [
            "actor 'svc' failed: RuntimeError('bad input') (24 more failures since the last line)"
        ]
        assert system.statistics().restarts == 26  # every failure still counted
