"""etcd outage benchmark: errors on existing refs while etcd is away, default settings.

Run it as ``.venv/bin/python benchmarks/etcd_outage.py`` (``--outage 30`` seconds by
default, ``--kinds pause,kill``). For each kind it starts a fresh etcd
(``EtcdServer(fast=False)``: etcd's default raft timings, fsync on) and a real cluster
with the default lease (``cf.Cluster``'s ``ttl_s``, 5 s): two worker member processes
(``tests/cluster/harness.py``) and this process. It places one counter on each worker and
one here, then asks each of the three every 20 ms (timeout 5 s) while etcd is

- ``pause``: SIGSTOPped for the outage, then SIGCONTed (etcd revokes every lease that ran
  out at once on resume), or
- ``kill``: SIGKILLed, then started again on the same data dir after the outage (leases
  are restored with their TTL refreshed).

Halfway through the outage it spawns one more named actor (it must fail, typed and
fast). The load goes on for the TTL + 3 s after etcd is back. It prints, per kind: asks
answered, errors by type, whether each counter still holds every add (same instance,
nothing re-placed), the spawn's outcome and time, and names re-claimed here. The target:
0 errors. ``run_outage(kind, outage_s)`` returns the same figures as a dict, for
``benchmarks/faults.py``. Every loop is bounded by its count and a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import cfactor as cf  # noqa: E402 - after the path set-up
from cfactor.tools.etcd_server import EtcdServer  # noqa: E402
from tests.cluster.actors import Counter  # noqa: E402
from tests.cluster.harness import real_cluster  # noqa: E402

PERIOD_S = 0.02
ASK_TIMEOUT_S = 5.0


async def _load(ref: cf.ActorRef, name: str, stop: asyncio.Event, tally: dict[str, Any]) -> None:
    while not stop.is_set():
        try:
            await ref.ask(("add", 1), timeout=ASK_TIMEOUT_S)
        except cf.CfactorError as exc:
            tally["errors"][f"{name}: {type(exc).__name__}"] += 1
        else:
            tally["ok"] += 1
            tally["added"][name] += 1
        await asyncio.sleep(PERIOD_S)


async def run_outage(kind: str, outage_s: float = 30.0) -> dict[str, Any]:
    """One outage of ``kind`` (``"pause"`` or ``"kill"``) on a fresh cluster: figures."""
    ttl = cf.Cluster().ttl_s
    etcd = EtcdServer(fast=False)
    await etcd.astart()
    tally: dict[str, Any] = {
        "kind": kind,
        "outage_s": outage_s,
        "ttl_s": ttl,
        "ok": 0,
        "errors": collections.Counter(),
        "added": collections.Counter(),
    }
    try:
        async with real_cluster(2, ttl_s=ttl, etcd=etcd) as c:
            me = c.me
            assert me is not None
            refs = {}
            for i, worker in enumerate(c.workers):
                pin = cf.Pin(worker.address)
                refs[f"w{i}"] = await me.spawn(Counter, name=f"w{i}", placement=pin)
            refs["here"] = await me.spawn(Counter, name="here", placement=cf.Pin(me.address))
            stop = asyncio.Event()
            tasks = [asyncio.create_task(_load(r, n, stop, tally)) for n, r in refs.items()]
            await asyncio.sleep(1.0)
            if kind == "pause":
                etcd.pause()
            else:
                await etcd.astop(kill=True)
            try:
                await asyncio.sleep(outage_s / 2)
                started = time.monotonic()
                try:
                    await me.spawn(Counter, name="during", placement=cf.Pin(me.address))
                    tally["spawn"] = "succeeded (wrong)"
                except cf.CfactorError as exc:
                    tally["spawn"] = type(exc).__name__
                tally["spawn_s"] = round(time.monotonic() - started, 2)
                await asyncio.sleep(max(0.0, outage_s / 2 - tally["spawn_s"]))
            finally:
                if kind == "pause":
                    etcd.resume()
                else:
                    await etcd.astart()
            await asyncio.sleep(ttl + 3.0)
            stop.set()
            await asyncio.gather(*tasks)
            kept = {}
            for name, added in tally["added"].items():
                try:
                    kept[name] = await me.ref(name).ask("get", timeout=ASK_TIMEOUT_S) == added
                except cf.CfactorError as exc:
                    kept[name] = type(exc).__name__
            tally["same_instance"] = kept
            tally["reclaimed_here"] = c.runtime.ride.reclaimed
    finally:
        await asyncio.to_thread(etcd.close)
    tally["errors"] = dict(tally["errors"])
    tally["added"] = dict(tally["added"])
    return tally


def report(result: dict[str, Any]) -> str:
    errors = sum(result["errors"].values())
    return (
        f"{result['kind']:>5} {result['outage_s']:>4.0f} s outage (ttl {result['ttl_s']:g} s): "
        f"asks ok {result['ok']}, errors {errors} (target 0) {result['errors'] or ''}; "
        f"same instances {result['same_instance']}; spawn during outage: {result['spawn']} "
        f"in {result['spawn_s']} s; re-claimed here: {result['reclaimed_here']}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=30.0, help="seconds etcd is away")
    parser.add_argument("--kinds", default="pause,kill", help="pause, kill, or both")
    args = parser.parse_args()
    for kind in args.kinds.split(","):
        print(report(asyncio.run(run_outage(kind.strip(), args.outage))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
