"""What etcd 3.5 does to leases across an outage: the facts docs/cluster.md relies on.

Run it as ``.venv/bin/python benchmarks/etcd_lease_facts.py [--slow]``. On a
single-member etcd (``EtcdServer``; ``--slow`` for etcd's default raft timings instead
of the test timings) it grants 5 s leases, binds a key to each, and prints what the
lease and key look like after:

1. SIGSTOP for 8 s (longer than the TTL), then SIGCONT: a keepalive sent at once;
2. the same, asking ``TimeToLive`` first (no keepalive);
3. SIGSTOP for 3 s (shorter than the TTL): the TTL left;
4. SIGKILL, 8 s down, started again on the same data dir: the TTL left when it answers;
5. the same with SIGTERM.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aetcd  # noqa: E402 - after the path set-up

from cfactor.tools.etcd_server import EtcdServer  # noqa: E402

TTL = 5
DOWN_S = 8.0


async def ttl_left(client: aetcd.Client, lease_id: int) -> Any:
    try:
        reply = await asyncio.wait_for(client.get_lease_info(lease_id), 3)
    except (aetcd.ClientError, TimeoutError) as exc:
        return repr(exc)[:80]
    return int(reply.TTL)  # -1: etcd no longer has the lease


async def keepalive(client: aetcd.Client, lease_id: int) -> Any:
    try:
        reply = await asyncio.wait_for(client.refresh_lease(lease_id), 3)
    except (aetcd.ClientError, TimeoutError) as exc:
        return repr(exc)[:80]
    return None if reply is None else int(reply.TTL)  # 0: the lease is gone


async def main(*, fast: bool) -> None:
    server = EtcdServer(fast=fast)
    server.start()
    client = aetcd.Client(host="127.0.0.1", port=server.client_port, timeout=3)
    try:
        lease_id = int((await client.lease(TTL)).id)
        await client.put(b"k1", b"v", lease=lease_id)
        server.pause()
        await asyncio.sleep(DOWN_S)
        server.resume()
        reply = await keepalive(client, lease_id)
        present = await client.get(b"k1") is not None
        print(f"1. paused {DOWN_S:g} s > TTL {TTL}: keepalive at once -> {reply}; key: {present}")

        lease_id = int((await client.lease(TTL)).id)
        server.pause()
        await asyncio.sleep(DOWN_S)
        server.resume()
        left = await ttl_left(client, lease_id)
        print(f"2. paused again: TimeToLive at once -> {left}")

        lease_id = int((await client.lease(TTL)).id)
        server.pause()
        await asyncio.sleep(3.0)
        server.resume()
        print(f"3. paused 3 s < TTL: TTL left at once -> {await ttl_left(client, lease_id)}")

        for how in ("SIGKILL", "SIGTERM"):
            lease_id = int((await client.lease(TTL)).id)
            await client.put(b"k2", b"v", lease=lease_id)
            server.stop(kill=how == "SIGKILL")
            await asyncio.sleep(DOWN_S)
            server.start()
            started = time.monotonic()
            left = await ttl_left(client, lease_id)
            present = await client.get(b"k2") is not None
            print(
                f"4. {how}, {DOWN_S:g} s down, restarted: TTL left "
                f"{time.monotonic() - started:.2f} s after healthy -> {left}; key: {present}"
            )
    finally:
        await client.close()
        server.close()


if __name__ == "__main__":
    asyncio.run(main(fast="--slow" not in sys.argv))
