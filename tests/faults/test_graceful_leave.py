"""Graceful leave (issue 10 item 7): a member that gets SIGTERM under load stops taking
new tells, drains what it accepted, runs ``on_stop``, and only then releases its names;
the tells it held meanwhile go to the new activation. 0 accepted tells lost.

Real etcd, real member processes (``tests/cluster/harness.py``), real ZeroMQ on loopback.
"""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING

import pytest

import cfactor as cf
from tests.cluster.harness import real_cluster
from tests.faults.actors_spawnleave import Recorder, read_events

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio

TTL = 2.0
SENT = 3000


async def send_steadily(ref: cf.ActorRef, accepted: list[int], refused: list[str]) -> None:
    """``SENT`` tells with sequence numbers, about one every 2 ms."""
    for n in range(SENT):
        try:
            await ref.tell(("seq", n))
        except cf.CfactorError as exc:
            refused.append(f"{n}: {exc!r}")
        else:
            accepted.append(n)
        await asyncio.sleep(0.002)


@pytest.mark.timeout(90)
async def test_sigterm_under_load_loses_no_accepted_tell(tmp_path: Path) -> None:
    async with real_cluster(2, ttl_s=TTL) as c:
        assert c.me is not None
        leader = c.leader()
        leaving = next(w for w in c.workers if w.member_id != leader)
        await asyncio.sleep(TTL)  # past placement's grace after joining
        log = tmp_path / "recorder.log"
        ref = await c.me.spawn(Recorder, str(log), name="rec", placement=cf.Pin(leaving.address))
        accepted: list[int] = []
        refused: list[str] = []
        sender = asyncio.get_running_loop().create_task(send_steadily(ref, accepted, refused))
        await asyncio.sleep(1.5)
        await asyncio.to_thread(leaving.stop)  # SIGTERM, and wait for the process to end
        await sender
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20.0
        while True:
            handled = [int(e[1]) for e in read_events(log) if e[0] == "seq"]
            if len(handled) >= len(accepted) or loop.time() > deadline:
                break
            await asyncio.sleep(0.2)
        events = read_events(log)
        counts = collections.Counter(handled)
        lost = sorted(set(accepted) - set(counts))
        twice = sorted(n for n, k in counts.items() if k > 1)
        old_stop = [float(e[2]) for e in events if e[0] == "stop" and e[1] == leaving.address]
        new_start = [float(e[2]) for e in events if e[0] == "start" and e[1] != leaving.address]
        gap_ms = (new_start[0] - old_stop[0]) * 1000 if old_stop and new_start else None
        print(
            f"graceful leave: sent={SENT} accepted={len(accepted)} handled={len(counts)} "
            f"lost={len(lost)} twice={len(twice)} on_stop->new start={gap_ms} ms"
        )
        assert refused == [], refused[:5]
        assert lost == [], lost[:20]
        assert twice == [], twice[:20]
        assert len(old_stop) == 1, events[:3]
        assert len(new_start) == 1, events[:3]
        assert new_start[0] > old_stop[0]  # the new activation began after the old on_stop
