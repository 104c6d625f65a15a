"""etcd outages with the default lease (5 s): existing refs keep working, spawns fail
fast and typed, and a member cut off from etcd alone still fences in time.

Real etcd (``EtcdServer``), real member processes (``tests/cluster/harness.py``), real
ZeroMQ on 127.0.0.1. The design and its safety argument: docs/cluster.md ("Fencing, and
how long etcd may be away").
"""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING

import pytest

import cfactor as cf
from tests.cluster.actors import Counter, eventually
from tests.cluster.harness import Worker, real_cluster
from tests.faults.actors_etcd_outage import Witness
from tests.membership.etcd_server import TcpProxy

if TYPE_CHECKING:
    from pathlib import Path

    from tests.cluster.harness import RealCluster

pytestmark = pytest.mark.anyio

TTL = 5.0  # cf.Cluster's default


class Load:
    """A steady ask load on some refs: one ask per ref every ``period`` seconds, each
    with a 5 s timeout; counts answers and errors by type."""

    def __init__(self, refs: dict[str, cf.ActorRef], period: float = 0.02) -> None:
        self.refs = refs
        self.period = period
        self.ok = 0
        self.added: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.first: dict[str, str] = {}  # the first message of each kind of error
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run(name)) for name in self.refs]

    async def _run(self, name: str) -> None:
        ref = self.refs[name]
        while not self._stop.is_set():
            try:
                await ref.ask(("add", 1), timeout=5.0)
            except cf.CfactorError as exc:
                key = f"{name}: {type(exc).__name__}"
                self.errors[key] += 1
                self.first.setdefault(key, str(exc))
            else:
                self.ok += 1
                self.added[name] += 1
            await asyncio.sleep(self.period)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def spawn_spread(c: RealCluster) -> dict[str, cf.ActorRef]:
    """One counter on each worker (remote refs) and one on the test member (local)."""
    assert c.me is not None
    refs = {}
    for i, worker in enumerate(c.workers):
        refs[f"w{i}"] = await c.me.spawn(Counter, name=f"w{i}", placement=cf.Pin(worker.address))
    refs["here"] = await c.me.spawn(Counter, name="here", placement=cf.Pin(c.me.address))
    return refs


async def spawn_fails_fast(c: RealCluster) -> float:
    """A spawn during the outage: it must raise MembershipUnavailable, within 5 s."""
    assert c.me is not None
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(cf.MembershipUnavailable):
        await c.me.spawn(Counter, name="during-outage", placement=cf.Pin(c.me.address))
    took = loop.time() - started
    assert took < 5.0
    return took


async def check_same_instances(c: RealCluster, load: Load) -> None:
    """Every counter holds exactly the adds the load saw answered: the same instance
    served throughout (nothing was fenced and re-placed from its spec)."""
    assert c.me is not None
    for name, added in load.added.items():
        assert await c.me.ref(name).ask("get", timeout=5.0) == added, name


@pytest.mark.timeout(90)
async def test_etcd_paused_for_30_s_breaks_no_existing_ref() -> None:
    async with real_cluster(2, ttl_s=TTL) as c:
        refs = await spawn_spread(c)
        load = Load(refs)
        load.start()
        await asyncio.sleep(1.0)
        c.etcd.pause()  # SIGSTOP: every call hangs; leases keep running out in etcd
        try:
            await asyncio.sleep(8.0)  # well past the lease deadline (TTL)
            await spawn_fails_fast(c)
            await asyncio.sleep(22.0)
        finally:
            c.etcd.resume()  # etcd revokes every lease at once (docs/cluster.md)
        # Owners re-claim their names under new leases; placement waits for them.
        await asyncio.sleep(TTL + 2.0)
        await load.stop()
        assert dict(load.errors) == {}, load.first
        assert load.ok > 1000
        await check_same_instances(c, load)
        assert c.runtime.ride.reclaimed == 1  # "here" was re-claimed, not re-placed
        assert await eventually(lambda: c.me.spawn(Counter, name="after"), timeout=10)  # type: ignore[union-attr]


@pytest.mark.timeout(60)
async def test_etcd_killed_and_restarted_after_15_s_breaks_no_existing_ref() -> None:
    async with real_cluster(2, ttl_s=TTL) as c:
        refs = await spawn_spread(c)
        load = Load(refs)
        load.start()
        await asyncio.sleep(1.0)
        await c.etcd.astop(kill=True)  # SIGKILL; the same data dir comes back
        try:
            await asyncio.sleep(7.0)
            await spawn_fails_fast(c)
            await asyncio.sleep(8.0)
        finally:
            await c.etcd.astart()  # leases restored, their TTLs refreshed
        await asyncio.sleep(3.0)
        await load.stop()
        assert dict(load.errors) == {}, load.first
        assert load.ok > 500
        await check_same_instances(c, load)
        assert c.runtime.ride.reclaimed == 0  # the lease survived: nothing to re-claim
        await c.me.spawn(Counter, name="after")  # type: ignore[union-attr]


def read_witness(path: Path) -> list[tuple[str, str, float]]:
    lines = path.read_text().split("\n") if path.exists() else []
    return [(e, a, float(t)) for e, a, t in (line.split() for line in lines if line)]


@pytest.mark.timeout(60)
async def test_a_member_cut_off_from_etcd_alone_fences_before_its_names_move(
    tmp_path: Path,
) -> None:
    async with real_cluster(1, ttl_s=TTL) as c:
        assert c.me is not None
        proxy = TcpProxy("127.0.0.1", c.etcd.client_port)
        await proxy.start()
        loop = asyncio.get_running_loop()
        alone = await loop.run_in_executor(None, Worker, proxy.endpoint, c.name, TTL)
        c.workers.append(alone)
        log = tmp_path / "witness.log"
        await c.me.spawn(Witness, str(log), name="moving", placement=cf.Pin(alone.address))
        steady = {
            "steady": await c.me.spawn(
                Counter, name="steady", placement=cf.Pin(c.workers[0].address)
            )
        }
        load = Load(steady)
        load.start()
        await proxy.cut()  # the member alone loses etcd; its peers and etcd are fine
        try:

            async def moved() -> bool:
                where = await c.me.ref("moving").ask("where", timeout=1.0)  # type: ignore[union-attr]
                return bool(where != alone.address)

            await eventually(moved, timeout=25)
        finally:
            await load.stop()
            await proxy.aclose()
        events = read_witness(log)
        stops = [t for e, a, t in events if e == "stop" and a == alone.address]
        starts = [t for e, a, t in events if e == "start" and a != alone.address]
        assert len(stops) == 1, events
        assert len(starts) == 1, events
        assert stops[0] < starts[0], events  # fenced before the new activation began
        assert dict(load.errors) == {}, load.first
