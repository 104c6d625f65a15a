"""Transport throughput probe: envelopes/s from one member to another, two processes, TCP.

Run it as ``.venv/bin/python benchmarks/transport_probe.py`` (``--count N``, ``--repeat R``,
``--curve`` to turn CurveZMQ on). Each run starts a receiving process with a
``ZmqTransport`` whose handler counts each envelope and credits it at once (as a
tell to an actor with room in its mailbox would), and sends ``--count`` envelopes to it
from this process with ``send_nowait`` (``await send`` when the queue is full). The rate
is measured by the receiver, from the first envelope to the last.

In the same run, the baseline of docs/measured.md is measured again: raw sync pyzmq, one
msgpack message per zmq message, DEALER to ROUTER, drained with NOBLOCK.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time

import msgpack
import uvloop
import zmq
from cfactor_zmq import ZmqTransport, generate_keypair

from cfactor.abc import Envelope, Kind, RefAddress
from cfactor.errors import MailboxFull
from cfactor.security import Curve

ENVELOPE = Envelope(Kind.TELL, "counter", None, 0, None, ("add", 1))


# -- the transport ----------------------------------------------------------------------


class CountingHandler:
    def __init__(self, count: int) -> None:
        self.count = count
        self.seen = 0
        self.first = 0.0
        self.last = 0.0
        self.transport: ZmqTransport | None = None
        self.done = asyncio.Event()

    def envelope_received(self, peer: str, envelope: Envelope) -> None:
        seen = self.seen
        if not seen:
            self.first = time.perf_counter()
        self.seen = seen + 1
        assert self.transport is not None
        self.transport.credit(peer)
        if seen + 1 == self.count:
            self.last = time.perf_counter()
            self.done.set()

    def peer_lost(self, peer: str) -> None:
        pass

    def make_ref(self, address: RefAddress) -> RefAddress:
        return address


def _security(keys: list[str] | None) -> Curve | None:
    if not keys:
        return None
    public, secret = keys
    return Curve(secret, public, [public])


async def receive(count: int, keys: list[str] | None) -> None:
    handler = CountingHandler(count)
    transport = ZmqTransport(security=_security(keys))
    handler.transport = transport
    await transport.start("tcp://127.0.0.1:0", handler)
    print(transport.address, flush=True)
    await asyncio.wait_for(handler.done.wait(), 120)
    print(json.dumps({"rate": count / (handler.last - handler.first)}), flush=True)
    await transport.aclose()


async def send(address: str, count: int, keys: list[str] | None) -> float:
    transport = ZmqTransport(security=_security(keys))
    await transport.start("tcp://127.0.0.1:0", CountingHandler(0))
    send_nowait = transport.send_nowait
    envelope = ENVELOPE
    start = time.perf_counter()
    sent = 0
    while sent < count:
        try:
            send_nowait(address, envelope)
        except MailboxFull:
            await transport.send(address, envelope)
        sent += 1
        if not sent % 4096:
            await asyncio.sleep(0)  # as a busy actor would: let the loop flush
    while transport.statistics().queued:  # noqa: ASYNC110 - polling what is measured
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - start
    await asyncio.sleep(0.5)
    await transport.aclose()
    return count / elapsed


def run_transport(count: int, curve: bool) -> tuple[float, float]:
    keys = list(generate_keypair()) if curve else []
    child = subprocess.Popen(
        [sys.executable, __file__, "--role", "recv", "--count", str(count), "--keys", *keys],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    address = child.stdout.readline().strip()
    send_rate = uvloop.run(send(address, count, keys))
    line = child.stdout.readline()
    child.wait(30)
    return json.loads(line)["rate"], send_rate


# -- the raw baseline ---------------------------------------------------------------------


def raw_receive(count: int) -> None:
    context = zmq.Context()
    router = context.socket(zmq.PULL)
    router.rcvhwm = 100_000
    port = router.bind_to_random_port("tcp://127.0.0.1")
    print(f"tcp://127.0.0.1:{port}", flush=True)
    poller = zmq.Poller()
    poller.register(router, zmq.POLLIN)
    seen = 0
    first = 0.0
    unpackb = msgpack.unpackb
    while seen < count:
        poller.poll(1000)
        while True:
            try:
                data = router.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if not seen:
                first = time.perf_counter()
            unpackb(data)
            seen += 1
    print(json.dumps({"rate": count / (time.perf_counter() - first)}), flush=True)
    context.destroy(linger=0)


def run_raw(count: int) -> float:
    child = subprocess.Popen(
        [sys.executable, __file__, "--role", "raw-recv", "--count", str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    address = child.stdout.readline().strip()
    context = zmq.Context()
    dealer = context.socket(zmq.PUSH)
    dealer.sndhwm = 100_000
    dealer.connect(address)
    packb = msgpack.packb
    message = [1, "counter", None, 0, None, ["add", 1]]
    for _ in range(count):
        dealer.send(packb(message))
    line = child.stdout.readline()
    child.wait(30)
    context.destroy(linger=0)
    return float(json.loads(line)["rate"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--role", default="main", choices=["main", "recv", "raw-recv"])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--curve", action="store_true")
    parser.add_argument("--keys", nargs="*")
    args = parser.parse_args()
    if args.role == "recv":
        uvloop.run(receive(args.count, args.keys))
        return
    if args.role == "raw-recv":
        raw_receive(args.count)
        return
    raw, received, sent = [], [], []
    for _ in range(args.repeat):
        raw.append(run_raw(args.count))
        rate, send_rate = run_transport(args.count, args.curve)
        received.append(rate)
        sent.append(send_rate)
    print(f"envelopes: {args.count:,} per run, {args.repeat} runs, curve={args.curve}")
    print(f"raw pyzmq sync + msgpack: median {statistics.median(raw) / 1e3:,.0f} k msgs/s")
    print(
        f"ZmqTransport, received:  median {statistics.median(received) / 1e3:,.0f} k env/s"
        f"  (runs: {', '.join(f'{r / 1e3:,.0f}' for r in received)})"
    )
    print(
        f"ZmqTransport, sender:    median {statistics.median(sent) / 1e3:,.0f} k env/s "
        "(until its queue was empty)"
    )
    ratio = statistics.median(received) / statistics.median(raw)
    print(f"transport / raw: {ratio:.0%}")


if __name__ == "__main__":
    main()
