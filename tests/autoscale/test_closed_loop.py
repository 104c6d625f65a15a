"""The autoscaler closed loop on a real event loop: a burst grows the replicas,
idleness shrinks them, and every message is handled exactly once throughout."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter as Tally
from typing import Any

import pytest

import cfactor as cf
from cfactor._core.replicas import ReplicaSet

pytestmark = pytest.mark.anyio


def fast(**overrides: Any) -> cf.Replicas:
    """Short windows so the loop turns within a test's patience."""
    settings: dict[str, Any] = {
        "min": 1,
        "max": 6,
        "target_depth": 5,
        "scale_out_window_s": 0.2,
        "scale_in_cooldown_s": 0.8,
        "report_interval_s": 0.05,
        "in_flight": 2,
    }
    return cf.Replicas(**{**settings, **overrides})


class IOBound(cf.Actor):
    """Waits 10 ms per message (I/O-bound): more replicas add real capacity."""

    def __init__(self, handled: Tally[int]) -> None:
        self.handled = handled

    async def receive(self, message: Any) -> Any:
        await asyncio.sleep(0.01)
        self.handled[message] += 1
        return message


async def test_a_burst_scales_out_then_idleness_scales_in_and_nothing_is_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cfactor.autoscale")
    handled: Tally[int] = Tally()
    async with cf.ActorSystem() as system:
        ref = await system.spawn(IOBound, handled, name="work", replicas=fast())
        group = ref._cell
        assert isinstance(group, ReplicaSet)
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(600):
            await ref.tell(i)  # a burst: far more than one replica takes
        peak = 1
        while len(handled) < 600 and loop.time() - started < 20:
            peak = max(peak, group.count)
            await asyncio.sleep(0.02)
        assert peak >= 4, "the burst did not scale out"
        # Every message exactly once, across the scale-out.
        assert sorted(handled) == list(range(600))
        assert set(handled.values()) == {1}
        # Idle now: after the cooldown the count drains back to min.
        deadline = loop.time() + 10
        while group.count > 1 and loop.time() < deadline:
            await asyncio.sleep(0.05)
        assert group.count == 1
        assert set(handled.values()) == {1}  # drained scale-in lost and repeated nothing
        controller: Any = group.controller
        directions = [d.direction for d in controller.decisions]
        assert "out" in directions
        assert "in" in directions
    messages = [r.getMessage() for r in caplog.records if r.name == "cfactor.autoscale"]
    assert any("target" in m and "->" in m for m in messages), messages


async def test_a_steady_light_load_stays_at_min() -> None:
    handled: Tally[int] = Tally()
    async with cf.ActorSystem() as system:
        ref = await system.spawn(IOBound, handled, name="work", replicas=fast())
        group = ref._cell
        assert isinstance(group, ReplicaSet)
        for i in range(40):  # 20 msgs/s, a tenth of one replica's capacity
            await ref.tell(i)
            await asyncio.sleep(0.05)
            assert group.count == 1
        controller: Any = group.controller
        assert list(controller.decisions) == []


class KeyedIOBound(cf.Actor):
    """Records (key, seq) per message; 10 ms each."""

    def __init__(self, handled: list[tuple[str, int]]) -> None:
        self.handled = handled

    async def receive(self, message: tuple[str, int]) -> None:
        await asyncio.sleep(0.01)
        self.handled.append(message)


def first(message: tuple[str, int]) -> str:
    return message[0]


async def test_a_keyed_group_scales_out_and_in_keeping_each_keys_order() -> None:
    handled: list[tuple[str, int]] = []
    async with cf.ActorSystem() as system:
        ref = await system.spawn(KeyedIOBound, handled, name="work", replicas=fast(key=first))
        group = ref._cell
        assert isinstance(group, ReplicaSet)
        loop = asyncio.get_running_loop()
        keys = [f"k{i}" for i in range(30)]
        for seq in range(20):
            for key in keys:
                await ref.tell((key, seq))
        peak = 1
        deadline = loop.time() + 20
        while len(handled) < 600 and loop.time() < deadline:
            peak = max(peak, group.count)
            await asyncio.sleep(0.02)
        assert peak >= 4, "the burst did not scale out"
        deadline = loop.time() + 10
        while group.count > 1 and loop.time() < deadline:
            await asyncio.sleep(0.05)
        assert group.count == 1
        for key in keys:
            assert [seq for k, seq in handled if k == key] == list(range(20)), key
