"""Module-level actors for cluster tests (members import them by path), and helpers."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import cfactor as cf
from cfactor._core.cell import STOPPING
from cfactor._core.remote_replica import RemoteReplica

if TYPE_CHECKING:
    from cfactor._core.replicas import ReplicaSet


class Counter(cf.Actor):
    def __init__(self, start: int = 0) -> None:
        self.n = start

    async def receive(self, message: Any) -> Any:
        match message:
            case ("add", int(k)):
                self.n += k
                return self.n
            case "get":
                return self.n
            case "where":
                return self.system.address
            case ("sleep", float(seconds)):
                await asyncio.sleep(seconds)
                return seconds
        raise ValueError(f"unknown message {message!r}")


async def eventually(check: Any, timeout: float = 5.0) -> Any:
    """Await ``check()`` until it returns something true (errors count as not yet).

    Raises:
        AssertionError: Not true within ``timeout`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            result = await check()
        except cf.CfactorError:
            result = None
        if result:
            return result
        if loop.time() >= deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


class Reporting(cf.Actor):
    """A replica that tells a sink on the test's member which message it handled, and
    where (so a test counts every message across processes)."""

    def __init__(self, sink_address: str, delay: float = 0.01) -> None:
        self.sink_address = sink_address
        self.delay = delay

    async def receive(self, message: Any) -> Any:
        match message:
            case ("sleep", float(seconds)):
                await asyncio.sleep(seconds)
                return self.system.address
            case int(seq):
                await asyncio.sleep(self.delay)
                sink = self.system.ref("tally", at=self.sink_address)
                await sink.tell(("done", seq, self.system.address))
                return seq
            case (str(key), int(seq)):
                # CLOCK_MONOTONIC is one clock for every process of a machine: the sink
                # orders handlings across members by it.
                started = time.monotonic()
                await asyncio.sleep(self.delay)
                sink = self.system.ref("tally", at=self.sink_address)
                await sink.tell(("keyed", key, seq, started, self.system.address))
                return seq
        raise ValueError(f"unknown message {message!r}")


def addresses_of(group: ReplicaSet) -> set[str]:
    """Where a group's replicas taking work run (member addresses)."""
    found = set()
    for replica in group.replicas:
        cell = replica.cell
        if not replica.draining and cell.state < STOPPING:
            found.add(cell.address if isinstance(cell, RemoteReplica) else group.system.address)
    return found
