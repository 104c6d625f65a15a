"""The memory transport's opt-in heartbeats: liveness from ``cfactor.transport_state``, the
zmq transport's, on whatever clock the transport is given."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cfactor.errors import ConfigError, MemberUnreachable
from cfactor.testing import ManualClock, MemoryNetwork, MemoryTransport
from cfactor.testing._check_transport import Recorder, tell

pytestmark = pytest.mark.anyio


class CuttableNetwork(MemoryNetwork):
    """Carries nothing from the members in ``cut``: frames, credits and heartbeats."""

    def __init__(self) -> None:
        super().__init__()
        self.cut: set[str] = set()

    def deliver(self, source: str, dest: MemoryTransport, frames: list[bytes]) -> None:
        if source not in self.cut:
            super().deliver(source, dest, frames)

    def deliver_credit(self, source: str, dest: MemoryTransport, count: int) -> None:
        if source not in self.cut:
            super().deliver_credit(source, dest, count)

    def deliver_beat(self, source: str, dest: MemoryTransport) -> None:
        if source not in self.cut:
            super().deliver_beat(source, dest)


async def member(
    network: MemoryNetwork, clock: ManualClock, **options: Any
) -> tuple[MemoryTransport, Recorder]:
    handler = Recorder()
    transport = MemoryTransport(network, clock=clock, **options)
    handler.transport = transport
    await transport.start("mem://", handler)
    return transport, handler


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_member_cut_off_without_a_word_is_lost_by_its_silence_then_found() -> None:
    clock = ManualClock()
    network = CuttableNetwork()
    timing: dict[str, Any] = {"heartbeat_interval_s": 0.5, "heartbeat_timeout_s": 2.0}
    a, ha = await member(network, clock, **timing)
    b, hb = await member(network, clock, **timing)
    a.send_nowait(b.address, tell(1))
    await settle()
    assert [peer for peer, _ in hb.received] == [a.address]
    await clock.run_for(5.0)  # both beat: nobody is lost
    assert ha.lost == hb.lost == []

    network.cut.add(b.address)  # b still hears a; a hears nothing of b
    await clock.run_for(2.0)
    assert ha.lost == []  # not within the timeout
    await clock.run_for(1.0)
    assert ha.lost == [b.address]
    assert not a.is_reachable(b.address)
    assert a.statistics().unreachable == 1
    with pytest.raises(MemberUnreachable):
        a.send_nowait(b.address, tell(2))
    assert hb.lost == []

    network.cut.clear()
    await clock.run_for(1.0)
    assert a.is_reachable(b.address)
    a.send_nowait(b.address, tell(3))
    await settle()
    assert len(hb.received) == 2
    assert ha.lost == [b.address]  # reported once
    await a.aclose()
    await b.aclose()
    assert clock.pending == 0


async def test_without_heartbeats_the_memory_transport_sets_no_timer() -> None:
    clock = ManualClock()
    network = MemoryNetwork()
    a, _ = await member(network, clock)
    b, hb = await member(network, clock)
    a.send_nowait(b.address, tell(1))
    await settle()
    assert len(hb.received) == 1
    assert clock.pending == 0
    await clock.run_for(60.0)
    assert a.is_reachable(b.address)
    await a.aclose()
    await b.aclose()


@pytest.mark.parametrize(
    "options",
    [
        {"heartbeat_interval_s": 0.0},
        {"heartbeat_interval_s": 1.0, "heartbeat_timeout_s": 1.0},
    ],
)
def test_bad_heartbeat_timing_is_a_config_error(options: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        MemoryTransport(MemoryNetwork(), **options)  # type: ignore[arg-type]
