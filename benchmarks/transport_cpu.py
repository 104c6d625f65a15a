"""CPU time per envelope of ``ZmqTransport``, both ends in one process: for A/B runs of the
transport's own code on a shared machine.

Run it as ``.venv/bin/python benchmarks/transport_cpu.py`` (``--tells N``, ``--round-trips
N``, ``--in-flight N``, ``--repeat R``). Two transports on one uvloop talk over ``ipc://``;
the handler credits each envelope at once. Three figures, each the process's CPU time
(``time.process_time``: every thread, zmq's I/O threads included) divided by the envelopes
handled, so another process's load on the machine changes them far less than it changes
a rate:

- **tell**: ``send_nowait`` of N envelopes one way (``await send`` when the queue is full);
- **pipelined**: ``--in-flight`` envelopes always in flight, each answered by the other
  end with an envelope of its own (a pipelined ask's traffic, without the runtime);
- **round trip**: one envelope, its answer, then the next (a sequential ask's traffic).

To compare two checkouts, run this file from each with
``PYTHONPATH=<checkout>:<checkout>/transports``, alternated (benchmarks/RESULTS.md, "Issue 11
item 6").
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from typing import Any

import uvloop
from cfactor_zmq import ZmqTransport

from cfactor.abc import Envelope, Kind, RefAddress
from cfactor.errors import MailboxFull

ENVELOPE = Envelope(Kind.TELL, "counter", payload=("add", 1))


class Handler:
    """Counts and credits each envelope; answers it if ``answer`` is set."""

    def __init__(self) -> None:
        self.transport: ZmqTransport | None = None
        self.count = 0
        self.answer = False
        self.waiting: asyncio.Future[None] | None = None
        self.target = 0
        self.on_envelope: Any = None

    def envelope_received(self, peer: str, envelope: Envelope) -> None:
        transport = self.transport
        assert transport is not None
        self.count += 1
        transport.credit(peer)
        if self.answer:
            transport.send_nowait(peer, envelope)
        if self.on_envelope is not None:
            self.on_envelope()
        if self.count >= self.target and self.waiting is not None and not self.waiting.done():
            self.waiting.set_result(None)

    def peer_lost(self, peer: str) -> None:
        pass

    def make_ref(self, address: RefAddress) -> RefAddress:
        return address

    def expect(self, count: int) -> asyncio.Future[None]:
        self.count = 0
        self.target = count
        self.waiting = asyncio.get_running_loop().create_future()
        return self.waiting


async def measure(tells: int, round_trips: int, in_flight: int) -> dict[str, float]:
    ha, hb = Handler(), Handler()
    a, b = ZmqTransport(), ZmqTransport()
    ha.transport, hb.transport = a, b
    with tempfile.TemporaryDirectory() as directory:
        await a.start(f"ipc://{directory}/a", ha)
        await b.start(f"ipc://{directory}/b", hb)
        try:
            done = hb.expect(1)
            a.send_nowait(b.address, ENVELOPE)  # connect first
            await done
            figures = {"tell": await tell(a, b, hb, tells)}
            hb.answer = True
            figures["pipelined"] = await pipelined(a, b, ha, tells, in_flight)
            figures["round trip"] = await round_trip(a, b, ha, round_trips)
        finally:
            await a.aclose()
            await b.aclose()
    return figures


async def tell(a: ZmqTransport, b: ZmqTransport, hb: Handler, count: int) -> float:
    done = hb.expect(count)
    start = time.process_time()
    for i in range(count):
        if not i % 4096:
            await asyncio.sleep(0)
        try:
            a.send_nowait(b.address, ENVELOPE)
        except MailboxFull:
            await a.send(b.address, ENVELOPE)
    await done
    return (time.process_time() - start) / count * 1e6


async def pipelined(
    a: ZmqTransport, b: ZmqTransport, ha: Handler, count: int, in_flight: int
) -> float:
    sent = in_flight

    def next_one() -> None:
        nonlocal sent
        if sent < count:
            sent += 1
            a.send_nowait(b.address, ENVELOPE)

    ha.on_envelope = next_one
    done = ha.expect(count)
    start = time.process_time()
    for _ in range(in_flight):
        a.send_nowait(b.address, ENVELOPE)
    await done
    elapsed = time.process_time() - start
    ha.on_envelope = None
    return elapsed / count * 1e6


async def round_trip(a: ZmqTransport, b: ZmqTransport, ha: Handler, count: int) -> float:
    start = time.process_time()
    for _ in range(count):
        done = ha.expect(1)
        a.send_nowait(b.address, ENVELOPE)
        await done
    return (time.process_time() - start) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tells", type=int, default=200_000)
    parser.add_argument("--round-trips", type=int, default=5_000)
    parser.add_argument("--in-flight", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        figures = uvloop.run(measure(args.tells, args.round_trips, args.in_flight))
        for name, value in figures.items():
            runs.setdefault(name, []).append(value)
    for name, values in runs.items():
        each = ", ".join(f"{v:.3f}" for v in values)
        print(f"{name:10s} CPU µs per envelope: median {statistics.median(values):.3f} ({each})")


if __name__ == "__main__":
    main()
