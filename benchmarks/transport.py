"""Transport benchmark: cfactor across two processes, next to raw pyzmq baselines, same run.

Run it as ``.venv/bin/python benchmarks/transport.py`` (``--quick`` for a smoke run of a
few seconds, ``--json PATH`` to also write the figures). This process is the client; every
server, cfactor's and each raw baseline's, is a child process started from this same file
(``--serve KIND``), bound to ``tcp://127.0.0.1`` or to a socket in a temporary directory
(``ipc://``). Both transports are measured in one run.

- **tell**: ``await ref.tell(i)`` N times to a counting actor in the server, then one ask
  for the count (checked). Baselines: msgpack ints over PUSH/PULL, then a count marker the
  server acknowledges on a second PUSH/PULL pair: sync pyzmq on both ends; zmq.asyncio
  draining (poll, then receive or send with NOBLOCK until ``zmq.Again``); zmq.asyncio with
  one awaited send (client) and one awaited receive (server) per message.
- **pipelined ask**: a number of worker tasks (the requests in flight), each doing asks one
  after the other against an echo actor. Baselines: DEALER/ROUTER echoing msgpack
  ``[id, i]``: sync, a window of requests in flight and then one receive, one send; and
  zmq.asyncio, the same worker tasks awaiting futures that one reader task completes by id
  (the reader polls, then drains with NOBLOCK).
- **sequential ask latency**: one ask at a time, each timed; p50 and p99. Baselines: a
  DEALER/ROUTER round trip with zmq.asyncio (awaited send, awaited receive; the server
  drains) and with sync pyzmq.

Each figure is measured ``--repeat`` times (3 by default), rotating which side goes first;
the table reports the median and a second table every run. Every loop is bounded in count
and in time; servers are stopped by closing their stdin (and killed if they linger), and
exit by themselves when their parent goes away or their lifetime ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import itertools
import math
import os
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter, perf_counter_ns
from typing import IO, TYPE_CHECKING, Any

import core
import harness
import msgpack
import zmq
import zmq.asyncio
from harness import progress

import cfactor as cf

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

CHUNK = core.CHUNK
#: The message that asks a counting server for its count (and resets it).
COUNT = core.COUNT
#: zmq high-water marks of the raw sockets: above anything in flight, so nothing is dropped.
HWM = 10_000
TRANSPORTS = ("tcp", "ipc")
SERVER_KINDS = (
    "cf",
    "sync-pull",
    "async-pull-drain",
    "async-pull-await",
    "sync-router",
    "async-router",
)

_NOBLOCK = zmq.NOBLOCK
_pack = msgpack.Packer().pack
_unpackb = msgpack.unpackb


@dataclass(frozen=True)
class Sizes:
    tell: int
    asks: int
    in_flight: int
    latency: int
    #: Wall-clock bound of one measurement (one side, one run).
    deadline_s: float
    #: How long the servers may take to start and say where they listen.
    startup_s: float
    #: A server exits after this long whatever happens (its parent may be stuck).
    lifetime_s: float


FULL = Sizes(
    tell=200_000,
    asks=20_000,
    in_flight=1_000,
    latency=5_000,
    deadline_s=30.0,
    startup_s=30.0,
    lifetime_s=1800.0,
)
QUICK = Sizes(
    tell=20_000,
    asks=5_000,
    in_flight=500,
    latency=1_000,
    deadline_s=5.0,
    startup_s=10.0,
    lifetime_s=120.0,
)


def remaining_ms(deadline: float) -> int:
    return max(1, int((deadline - perf_counter()) * 1000))


# == servers (child processes) ================================================================


class Sink(cf.Actor):
    """Counts the ints it is told; answers ``COUNT`` with the count, and starts again."""

    def __init__(self) -> None:
        self.n = 0

    async def receive(self, message: Any) -> Any:
        if message.__class__ is int:
            self.n += 1
            return None
        n, self.n = self.n, 0
        return n


class Echo(cf.Actor):
    async def receive(self, message: Any) -> Any:
        return message


def bind_address(transport: str, directory: str, name: str) -> str:
    if transport == "tcp":
        return "tcp://127.0.0.1:0"
    return f"ipc://{directory}/{name}.sock"


def bound(sock: zmq.Socket[Any]) -> str:
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


def raw_socket(context: zmq.Context[Any], kind: int) -> zmq.Socket[Any]:
    sock = context.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, HWM)
    sock.setsockopt(zmq.RCVHWM, HWM)
    if kind == zmq.ROUTER:
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    return sock


def ready(address: str, ack: str = "-") -> None:
    try:
        loop = asyncio.get_running_loop()
        loop_name = f"{type(loop).__module__}.{type(loop).__qualname__}"
    except RuntimeError:
        loop_name = "sync"
    print(f"READY {address} {ack} {loop_name}", flush=True)


def serve_sync(kind: str, transport: str, directory: str, lifetime_s: float) -> None:
    """A sync pyzmq server: receive with NOBLOCK until Again, then poll (with stdin)."""
    end = perf_counter() + lifetime_s
    context: zmq.Context[Any] = zmq.Context()
    stdin = sys.stdin.fileno()
    try:
        ack = None
        if kind == "sync-pull":
            sock = raw_socket(context, zmq.PULL)
            sock.bind(bind_address(transport, directory, kind))
            ack = raw_socket(context, zmq.PUSH)
            ack.bind(bind_address(transport, directory, kind + "-ack"))
            ready(bound(sock), bound(ack))
        else:
            sock = raw_socket(context, zmq.ROUTER)
            sock.bind(bind_address(transport, directory, kind))
            ready(bound(sock))
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(stdin, zmq.POLLIN)
        recv = sock.recv
        recv_multipart = sock.recv_multipart
        send_multipart = sock.send_multipart
        unpackb = _unpackb
        pack = _pack
        n = 0
        while perf_counter() < end:
            try:
                if ack is not None:
                    for _ in range(CHUNK):
                        message = unpackb(recv(_NOBLOCK))
                        if message.__class__ is int:
                            n += 1
                        else:
                            ack.send(pack(n))
                            n = 0
                else:
                    for _ in range(CHUNK):
                        rid, body = recv_multipart(_NOBLOCK)
                        send_multipart([rid, pack(unpackb(body))])
                continue  # a full chunk: look again before polling
            except zmq.Again:
                pass
            events = dict(poller.poll(1000))
            if stdin in events and not os.read(stdin, 4096):
                return  # the parent closed our stdin (or went away)
    finally:
        context.destroy(linger=0)


async def until_stopped(lifetime_s: float) -> None:
    """Return when stdin reaches end of file (the parent is done or gone), or at lifetime."""
    loop = asyncio.get_running_loop()
    stopped = loop.create_future()
    stdin = sys.stdin.fileno()

    def on_stdin() -> None:
        if not os.read(stdin, 4096) and not stopped.done():
            stopped.set_result(None)

    loop.add_reader(stdin, on_stdin)
    try:
        await asyncio.wait_for(stopped, lifetime_s)
    except TimeoutError:
        pass
    finally:
        loop.remove_reader(stdin)


async def serve_cf(transport: str, directory: str, lifetime_s: float) -> None:
    async with cf.ActorSystem(listen=bind_address(transport, directory, "cf")) as system:
        await system.spawn(Sink, name="sink")
        await system.spawn(Echo, name="echo")
        ready(system.address)
        await until_stopped(lifetime_s)


async def pull_drain(sock: zmq.asyncio.Socket, ack: zmq.asyncio.Socket) -> None:
    shadow = zmq.Socket.shadow(sock.underlying)
    recv = shadow.recv
    unpackb = _unpackb
    n = 0
    while True:  # bounded by the server's lifetime: the task is cancelled
        await sock.poll(flags=zmq.POLLIN)
        for _ in range(CHUNK):
            try:
                message = unpackb(recv(_NOBLOCK))
            except zmq.Again:
                break
            if message.__class__ is int:
                n += 1
            else:
                await ack.send(_pack(n))
                n = 0


async def pull_await(sock: zmq.asyncio.Socket, ack: zmq.asyncio.Socket) -> None:
    recv = sock.recv
    unpackb = _unpackb
    n = 0
    while True:  # bounded by the server's lifetime: the task is cancelled
        message = unpackb(await recv())
        if message.__class__ is int:
            n += 1
        else:
            await ack.send(_pack(n))
            n = 0


async def router_drain(sock: zmq.asyncio.Socket) -> None:
    shadow = zmq.Socket.shadow(sock.underlying)
    recv_multipart = shadow.recv_multipart
    send_multipart = shadow.send_multipart
    unpackb = _unpackb
    pack = _pack
    while True:  # bounded by the server's lifetime: the task is cancelled
        await sock.poll(flags=zmq.POLLIN)
        for _ in range(CHUNK):
            try:
                rid, body = recv_multipart(_NOBLOCK)
            except zmq.Again:
                break
            reply = [rid, pack(unpackb(body))]
            try:
                send_multipart(reply, _NOBLOCK)
            except zmq.Again:
                await sock.send_multipart(reply)  # waits for room


async def serve_async(kind: str, transport: str, directory: str, lifetime_s: float) -> None:
    context = zmq.asyncio.Context()
    try:
        if kind == "async-router":
            sock = raw_socket(context, zmq.ROUTER)
            sock.bind(bind_address(transport, directory, kind))
            ready(bound(sock))
            serving = router_drain(sock)
        else:
            sock = raw_socket(context, zmq.PULL)
            sock.bind(bind_address(transport, directory, kind))
            ack = raw_socket(context, zmq.PUSH)
            ack.bind(bind_address(transport, directory, kind + "-ack"))
            ready(bound(sock), bound(ack))
            serving = (pull_drain if kind == "async-pull-drain" else pull_await)(sock, ack)
        task = asyncio.get_running_loop().create_task(serving)
        try:
            await until_stopped(lifetime_s)
        finally:
            task.cancel()
            await asyncio.wait((task,))
    finally:
        context.destroy(linger=0)


def serve(kind: str, transport: str, directory: str, lifetime_s: float, profile: str) -> int:
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    try:
        if kind == "cf":
            cf.run(serve_cf(transport, directory, lifetime_s))
        elif kind.startswith("sync"):
            serve_sync(kind, transport, directory, lifetime_s)
        else:
            cf.run(serve_async(kind, transport, directory, lifetime_s))
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)
    return 0


# == managing the servers =====================================================================


@dataclass
class Server:
    kind: str
    transport: str
    proc: subprocess.Popen[bytes]
    stderr: IO[bytes]
    address: str = ""
    ack: str = ""
    loop: str = ""
    error: str | None = None
    _buffer: bytes = b""

    def alive_or_error(self) -> str | None:
        """Why this server cannot be used, or None."""
        if self.error is not None:
            return self.error
        code = self.proc.poll()
        if code is not None:
            self.error = f"server exited ({code}): {self.stderr_tail()}"
        return self.error

    def stderr_tail(self) -> str:
        """The last line the server wrote to stderr (its exception, when it crashed)."""
        try:
            self.stderr.seek(0)
            text = self.stderr.read().decode(errors="replace")
        except (OSError, ValueError):
            return "(no stderr)"
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[-1][-300:] if lines else "(no stderr)"


def start_servers(
    sizes: Sizes, transports: list[str], directory: str, profile_dir: Path | None
) -> list[Server]:
    servers: list[Server] = []
    for transport in transports:
        for kind in SERVER_KINDS:
            args = [
                sys.executable,
                __file__,
                "--serve",
                kind,
                "--transport",
                transport,
                "--dir",
                directory,
                "--lifetime",
                str(sizes.lifetime_s),
            ]
            if profile_dir is not None and kind == "cf":
                args += ["--profile-out", str(profile_dir / f"server-{transport}.prof")]
            stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop_servers
            proc = subprocess.Popen(
                args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr
            )
            servers.append(Server(kind, transport, proc, stderr))
    return servers


def wait_ready(servers: list[Server], timeout_s: float) -> None:
    """Read each server's ``READY address ack loop`` line, for at most ``timeout_s``."""
    deadline = perf_counter() + timeout_s
    waiting: dict[int, Server] = {}
    with selectors.DefaultSelector() as selector:
        for server in servers:
            assert server.proc.stdout is not None
            fd = server.proc.stdout.fileno()
            waiting[fd] = server
            selector.register(fd, selectors.EVENT_READ)
        while waiting and perf_counter() < deadline:
            for key, _ in selector.select(max(0.01, deadline - perf_counter())):
                fd = int(key.fd)
                server = waiting[fd]
                chunk = os.read(fd, 4096)
                if not chunk:
                    server.proc.wait(timeout=5)
                    server.error = (
                        f"server exited ({server.proc.returncode}) before listening: "
                        f"{server.stderr_tail()}"
                    )
                else:
                    server._buffer += chunk
                    if b"\n" not in server._buffer:
                        continue
                    line = server._buffer.split(b"\n", 1)[0].decode(errors="replace").split()
                    if len(line) != 4 or line[0] != "READY":
                        server.error = f"server said {line!r} instead of READY"
                    else:
                        server.address, ack, server.loop = line[1], line[2], line[3]
                        server.ack = "" if ack == "-" else ack
                selector.unregister(fd)
                del waiting[fd]
    for server in waiting.values():
        server.error = f"server not listening after {timeout_s:g} s: {server.stderr_tail()}"


def stop_servers(servers: list[Server], grace_s: float = 5.0) -> None:
    """Close every server's stdin, wait a little, then kill what is left. Never raises."""
    for server in servers:
        with contextlib.suppress(OSError, ValueError):
            if server.proc.stdin is not None:
                server.proc.stdin.close()
    deadline = perf_counter() + grace_s
    for server in servers:
        try:
            server.proc.wait(timeout=max(0.01, deadline - perf_counter()))
        except subprocess.TimeoutExpired:
            server.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.proc.wait(timeout=5)
        for stream in (server.proc.stdout, server.stderr):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()


# == the client's sides =======================================================================


class Clients:
    """The raw client sockets, one set per server, kept for all runs against it.

    Keeping them connected means each run's timing holds no connection setup and each
    server has one client (a PUSH socket of the server's has one peer to send acks to).
    """

    def __init__(self) -> None:
        self.sync_context: zmq.Context[Any] = zmq.Context()
        self.async_context = zmq.asyncio.Context()
        self.sockets: dict[tuple[str, str], Any] = {}

    def close(self) -> None:
        self.sync_context.destroy(linger=0)
        self.async_context.destroy(linger=0)

    def _pair(self, context: Any, server: Server) -> Any:
        key = (server.transport, server.kind)
        if key not in self.sockets:
            push = raw_socket(context, zmq.PUSH)
            push.connect(server.address)
            ack = raw_socket(context, zmq.PULL)
            ack.connect(server.ack)
            self.sockets[key] = (push, ack)
        return self.sockets[key]

    def _dealer(self, context: Any, server: Server) -> Any:
        key = (server.transport, server.kind)
        if key not in self.sockets:
            dealer = raw_socket(context, zmq.DEALER)
            dealer.connect(server.address)
            self.sockets[key] = dealer
        return self.sockets[key]

    def sync_pair(self, server: Server) -> tuple[zmq.Socket[Any], zmq.Socket[Any]]:
        return self._pair(self.sync_context, server)  # type: ignore[no-any-return]

    def async_pair(self, server: Server) -> tuple[zmq.asyncio.Socket, zmq.asyncio.Socket]:
        return self._pair(self.async_context, server)  # type: ignore[no-any-return]

    def sync_dealer(self, server: Server) -> zmq.Socket[Any]:
        return self._dealer(self.sync_context, server)  # type: ignore[no-any-return]

    def async_dealer(self, server: Server) -> zmq.asyncio.Socket:
        return self._dealer(self.async_context, server)  # type: ignore[no-any-return]


class ClientListen:
    """Where each cfactor client system listens: a fresh address per run."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.counter = itertools.count()

    def __call__(self, transport: str) -> str:
        if transport == "tcp":
            return "tcp://127.0.0.1:0"
        return f"ipc://{self.directory}/cf-client-{next(self.counter)}.sock"


@dataclass
class Profiling:
    """With ``--profile DIR``: cProfile around each cfactor run in this process."""

    directory: Path | None
    profiles: dict[str, cProfile.Profile] = field(default_factory=dict)

    @contextlib.contextmanager
    def __call__(self, name: str) -> Any:
        if self.directory is None:
            yield
            return
        profiler = self.profiles.setdefault(name, cProfile.Profile())
        profiler.enable()
        try:
            yield
        finally:
            profiler.disable()

    def dump(self) -> None:
        if self.directory is None:
            return
        for name, profiler in self.profiles.items():
            profiler.dump_stats(self.directory / f"client-{name}.prof")


# -- tell ---------------------------------------------------------------------------------------


async def cf_tell(address: str, listen: str, n: int, deadline: float) -> core.Run:
    async with cf.ActorSystem(listen=listen) as system:
        ref = system.ref("sink", at=address)
        await ref.ask(COUNT, timeout=harness.remaining(deadline))  # connected, count reset
        tell = ref.tell
        sent = 0
        t0 = perf_counter()
        for start in range(0, n, CHUNK):
            stop = min(n, start + CHUNK)
            for i in range(start, stop):
                await tell(i)
            sent = stop
            if perf_counter() > deadline:
                break
        counted = await ref.ask(COUNT, timeout=harness.remaining(deadline))
        elapsed = perf_counter() - t0
    if counted != sent:
        raise AssertionError(f"the sink counted {counted} of {sent} tells")
    return core.Run({"rate": sent / elapsed}, truncated=sent < n)


def sync_count(push: zmq.Socket[Any], ack: zmq.Socket[Any], deadline: float) -> int:
    push.setsockopt(zmq.SNDTIMEO, remaining_ms(deadline))
    ack.setsockopt(zmq.RCVTIMEO, remaining_ms(deadline))
    try:
        push.send(_pack(COUNT))
        return int(_unpackb(ack.recv()))
    except zmq.Again:
        raise core.BenchmarkTimeout("no count from the server before the deadline") from None


async def sync_tell(clients: Clients, server: Server, n: int, deadline: float) -> core.Run:
    push, ack = clients.sync_pair(server)
    sync_count(push, ack, deadline)  # connected, count reset
    push.setsockopt(zmq.SNDTIMEO, remaining_ms(deadline))  # a blocked send ends by then
    send = push.send
    pack = _pack
    sent = 0
    t0 = perf_counter()
    try:
        for start in range(0, n, CHUNK):
            stop = min(n, start + CHUNK)
            for i in range(start, stop):
                send(pack(i))
            sent = stop
            if perf_counter() > deadline:
                break
    except zmq.Again:
        raise core.BenchmarkTimeout("the PUSH socket stayed full until the deadline") from None
    counted = sync_count(push, ack, deadline)
    elapsed = perf_counter() - t0
    if counted != sent:
        raise AssertionError(f"the server counted {counted} of {sent} messages")
    return core.Run({"rate": sent / elapsed}, truncated=sent < n)


async def async_count(push: zmq.asyncio.Socket, ack: zmq.asyncio.Socket, deadline: float) -> int:
    try:
        async with asyncio.timeout(harness.remaining(deadline)):
            await push.send(_pack(COUNT))
            return int(_unpackb(await ack.recv()))
    except TimeoutError:
        raise core.BenchmarkTimeout("no count from the server before the deadline") from None


async def async_tell_drain(clients: Clients, server: Server, n: int, deadline: float) -> core.Run:
    push, ack = clients.async_pair(server)
    await async_count(push, ack, deadline)
    shadow = zmq.Socket.shadow(push.underlying)
    send = shadow.send
    pack = _pack
    sent = 0
    t0 = perf_counter()
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        for i in range(start, stop):
            data = pack(i)
            while True:
                try:
                    send(data, _NOBLOCK)
                    break
                except zmq.Again:
                    if not await push.poll(remaining_ms(deadline), zmq.POLLOUT):
                        raise core.BenchmarkTimeout("the PUSH socket stayed full") from None
        sent = stop
        if perf_counter() > deadline:
            break
    counted = await async_count(push, ack, deadline)
    elapsed = perf_counter() - t0
    if counted != sent:
        raise AssertionError(f"the server counted {counted} of {sent} messages")
    return core.Run({"rate": sent / elapsed}, truncated=sent < n)


async def async_tell_await(clients: Clients, server: Server, n: int, deadline: float) -> core.Run:
    push, ack = clients.async_pair(server)
    await async_count(push, ack, deadline)
    send = push.send
    pack = _pack
    sent = 0
    t0 = perf_counter()
    async with asyncio.timeout(harness.remaining(deadline) + 1):
        for start in range(0, n, CHUNK):
            stop = min(n, start + CHUNK)
            for i in range(start, stop):
                await send(pack(i))
            sent = stop
            if perf_counter() > deadline:
                break
    counted = await async_count(push, ack, deadline)
    elapsed = perf_counter() - t0
    if counted != sent:
        raise AssertionError(f"the server counted {counted} of {sent} messages")
    return core.Run({"rate": sent / elapsed}, truncated=sent < n)


# -- pipelined asks ---------------------------------------------------------------------------


async def cf_pipelined(
    address: str, listen: str, n: int, in_flight: int, deadline: float
) -> core.Run:
    async with cf.ActorSystem(listen=listen) as system:
        ref = system.ref("echo", at=address)
        await ref.ask(0, timeout=harness.remaining(deadline))  # connected
        return await core.run_workers(n, in_flight, deadline, ref.ask)


def sync_echo_once(dealer: zmq.Socket[Any], deadline: float) -> None:
    dealer.setsockopt(zmq.SNDTIMEO, remaining_ms(deadline))
    dealer.setsockopt(zmq.RCVTIMEO, remaining_ms(deadline))
    try:
        dealer.send(_pack([-1, -1]))
        dealer.recv()
    except zmq.Again:
        raise core.BenchmarkTimeout("no echo from the server before the deadline") from None


async def sync_pipelined(
    clients: Clients, server: Server, n: int, window: int, deadline: float
) -> core.Run:
    dealer = clients.sync_dealer(server)
    sync_echo_once(dealer, deadline)  # connected
    send = dealer.send
    recv = dealer.recv
    pack = _pack
    unpackb = _unpackb
    received = 0
    t0 = perf_counter()
    try:
        sent = min(window, n)
        for i in range(sent):
            send(pack([i, i]))
        while received < n:
            for _ in range(min(CHUNK, n - received)):
                unpackb(recv())
                received += 1
                if sent < n:
                    send(pack([sent, sent]))
                    sent += 1
            if perf_counter() > deadline:
                raise core.BenchmarkTimeout(f"{received} of {n} replies before the deadline")
    except zmq.Again:
        raise core.BenchmarkTimeout(f"{received} of {n} replies before the deadline") from None
    elapsed = perf_counter() - t0
    return core.Run({"rate": n / elapsed})


async def async_pipelined(
    clients: Clients, server: Server, n: int, in_flight: int, deadline: float
) -> core.Run:
    dealer = clients.async_dealer(server)
    loop = asyncio.get_running_loop()
    shadow = zmq.Socket.shadow(dealer.underlying)
    futures: dict[int, asyncio.Future[Any]] = {}
    ids = itertools.count()

    async def reader() -> None:
        recv = shadow.recv
        unpackb = _unpackb
        pop = futures.pop
        while perf_counter() < deadline:
            if not await dealer.poll(remaining_ms(deadline), zmq.POLLIN):
                return
            for _ in range(CHUNK):
                try:
                    correlation_id, value = unpackb(recv(_NOBLOCK))
                except zmq.Again:
                    break
                future = pop(correlation_id, None)
                if future is not None and not future.done():
                    future.set_result(value)

    send = dealer.send
    create_future = loop.create_future
    pack = _pack

    async def ask_one(i: int) -> Any:
        correlation_id = next(ids)
        future = futures[correlation_id] = create_future()
        await send(pack([correlation_id, i]))
        return await future

    reading = loop.create_task(reader())
    try:
        async with asyncio.timeout(harness.remaining(deadline)):
            await ask_one(-1)  # connected
        return await core.run_workers(n, in_flight, deadline, ask_one)
    finally:
        reading.cancel()
        await asyncio.wait((reading,))
        futures.clear()


# -- sequential ask latency -------------------------------------------------------------------


async def cf_latency(address: str, listen: str, n: int, deadline: float) -> core.Run:
    async with cf.ActorSystem(listen=listen) as system:
        ref = system.ref("echo", at=address)
        await ref.ask(0, timeout=harness.remaining(deadline))  # connected
        return await core.time_sequential(n, deadline, ref.ask)


async def sync_latency(clients: Clients, server: Server, n: int, deadline: float) -> core.Run:
    dealer = clients.sync_dealer(server)
    sync_echo_once(dealer, deadline)  # connected; the timeouts set
    send = dealer.send
    recv = dealer.recv
    pack = _pack
    unpackb = _unpackb
    samples: list[int] = []
    record = samples.append
    try:
        for start in range(0, n, CHUNK):
            for i in range(start, min(n, start + CHUNK)):
                t0 = perf_counter_ns()
                send(pack([i, i]))
                unpackb(recv())
                record(perf_counter_ns() - t0)
            if perf_counter() > deadline:
                break
    except zmq.Again:
        raise core.BenchmarkTimeout("no echo from the server before the deadline") from None
    return latency_run(samples, n)


async def async_latency(clients: Clients, server: Server, n: int, deadline: float) -> core.Run:
    dealer = clients.async_dealer(server)
    send = dealer.send
    recv = dealer.recv
    pack = _pack
    unpackb = _unpackb

    async def ask_one(i: int) -> Any:
        await send(pack([i, i]))
        return unpackb(await recv())

    async with asyncio.timeout(harness.remaining(deadline) + 1):
        await ask_one(-1)  # connected
        return await core.time_sequential(n, deadline, ask_one)


def latency_run(samples: list[int], n: int) -> core.Run:
    samples.sort()
    return core.Run(
        {"p50": core.percentile(samples, 50), "p99": core.percentile(samples, 99)},
        truncated=len(samples) < n,
    )


# == measuring and reporting ==================================================================


@dataclass
class Side:
    """One side of a measurement (cfactor, or one baseline) and its runs."""

    name: str
    run: Callable[[float], Awaitable[core.Run]]
    server: Server
    runs: list[dict[str, float]] = field(default_factory=list)
    truncated: bool = False
    error: str | None = None

    def values(self, key: str) -> list[float]:
        return [run[key] for run in self.runs]


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


async def measure(
    sides: list[Side], repeat: int, deadline_s: float, profiling: Profiling, profile_name: str
) -> None:
    """Run every side ``repeat`` times, rotating which goes first, into ``side.runs``.

    A side whose server is gone, or that fails or runs out of time, keeps its error and
    is not run again; the others go on.
    """
    for r in range(repeat):
        k = r % len(sides)
        for side in sides[k:] + sides[:k]:
            if side.error is not None:
                continue
            side.error = side.server.alive_or_error()
            if side.error is not None:
                continue
            gc.collect()
            cpu = CpuMeter(side.server.proc.pid)
            deadline = perf_counter() + deadline_s
            try:
                with profiling(profile_name) if side.name == "cf" else contextlib.nullcontext():
                    async with asyncio.timeout(deadline_s * 2 + 5):
                        run = await side.run(deadline)
            except Exception as exc:
                side.error = side.server.alive_or_error() or describe(exc)
                continue
            side.runs.append(run.values | cpu.read())
            side.truncated |= run.truncated


class CpuMeter:
    """CPU time over one run as a share of one core: this process, the server, and the
    rest of the machine (other processes' load, which disturbs a run on a shared VM).

    The processes' shares include every thread (zmq's I/O thread too), so one can pass
    100 %. Without psutil (a dev dependency) there are no figures.
    """

    def __init__(self, server_pid: int) -> None:
        self.psutil: Any = None
        try:
            import psutil

            self.processes = [psutil.Process(), psutil.Process(server_pid)]
            self.start = [self._seconds(p) for p in self.processes]
            self.busy0 = self._busy(psutil)
            self.psutil = psutil
        except Exception:  # no psutil, or the server is gone: no figures
            self.psutil = None
        self.t0 = perf_counter()

    @staticmethod
    def _seconds(process: Any) -> float:
        times = process.cpu_times()
        return float(times.user + times.system)

    @staticmethod
    def _busy(psutil: Any) -> float:
        times = psutil.cpu_times()
        return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))

    def read(self) -> dict[str, float]:
        wall = perf_counter() - self.t0
        if self.psutil is None or wall <= 0:
            return {}
        try:
            used = [self._seconds(p) - t for p, t in zip(self.processes, self.start, strict=True)]
            busy = self._busy(self.psutil) - self.busy0
        except Exception:
            return {}
        return {
            "client_cpu": used[0] / wall,
            "server_cpu": used[1] / wall,
            "other_cpu": max(0.0, busy - used[0] - used[1]) / wall,
        }


async def warm_up(sides: list[Side], deadline_s: float) -> None:
    """One unrecorded run of each side (connections made, code paths warm)."""
    for side in sides:
        if side.server.alive_or_error() is not None:
            continue
        with contextlib.suppress(Exception):
            async with asyncio.timeout(deadline_s * 2 + 5):
                await side.run(perf_counter() + deadline_s)


@dataclass
class Row:
    """One row of the table: cfactor's figure, one baseline's, and maybe a target."""

    label: str
    unit: str  # "rate" or "us"
    key: str
    cf: Side
    baseline: Side
    target: str = "-"
    #: ("ratio>=", x) or ("ratio<=", x), or None.
    check: tuple[str, float] | None = None

    @property
    def cf_value(self) -> float:
        return harness.median(self.cf.values(self.key))

    @property
    def raw_value(self) -> float:
        return harness.median(self.baseline.values(self.key))

    @property
    def ratio(self) -> float:
        return harness.ratio(self.cf_value, self.raw_value)

    @property
    def met(self) -> bool | None:
        if self.check is None:
            return None
        op, bound = self.check
        ratio = self.ratio
        if math.isnan(ratio):
            return False
        return ratio >= bound if op == "ratio>=" else ratio <= bound


def cell(side: Side, value: float, unit: str) -> str:
    if side.error is not None and math.isnan(value):
        text = side.error
        return "error: " + (text if len(text) <= 60 else text[:57] + "...")
    text = harness.fmt(value, unit)
    if side.error is not None:
        text += " (then error)"
    elif side.truncated:
        text += " (cut short)"
    return text


def main_table(rows: list[Row]) -> str:
    return harness.results_table(
        [
            [
                row.label,
                cell(row.cf, row.cf_value, row.unit),
                cell(row.baseline, row.raw_value, row.unit),
                harness.fmt_ratio(row.ratio, row.unit),
                row.target,
                harness.met_flag(row.met),
            ]
            for row in rows
        ]
    )


def runs_table(measurements: list[tuple[str, str, str, list[Side]]]) -> str:
    lines = []
    for label, key, unit, sides in measurements:
        for side in sides:
            runs = side.values(key)
            lines.append(
                [
                    label,
                    SIDE_NAMES[side.name],
                    ", ".join(harness.fmt(v, unit) for v in runs) or "-",
                    harness.fmt(harness.median(runs), unit),
                    harness.spread(runs),
                ]
            )
    header = ["measurement", "side", "runs", "median", "spread"]
    return harness.markdown_table(header, lines, right={3, 4})


def cpu_table(figures: list[tuple[str, list[Side]]]) -> str:
    lines = []
    for label, sides in figures:
        for side in sides:
            cells = []
            for key in ("client_cpu", "server_cpu", "other_cpu"):
                runs = side.values(key) if all(key in run for run in side.runs) else []
                cells.append(f"{statistics.median(runs) * 100:.0f} %" if runs else "-")
            lines.append([label, SIDE_NAMES[side.name], *cells])
    header = ["measurement", "side", "client process", "server process", "rest of machine"]
    return harness.markdown_table(header, lines, right={2, 3, 4})


SIDE_NAMES = {
    "cf": "cfactor",
    "sync": "raw sync pyzmq",
    "async-drain": "zmq.asyncio, poll + NOBLOCK drain",
    "async-await": "zmq.asyncio, one awaited send/recv per msg",
    "async": "zmq.asyncio (futures by id, reader drains)",
    "async-rt": "zmq.asyncio, awaited send + awaited recv",
}


def transport_rows(
    t: str, in_flight: int, tell: list[Side], asks: list[Side], latency: list[Side]
) -> list[Row]:
    """The table's rows for one transport: cfactor next to each baseline."""
    half: tuple[str, tuple[str, float]] = (">= 50 % of raw sync", ("ratio>=", 0.5))
    return [
        Row(f"{t}: tell (msgs/s) vs raw sync PUSH/PULL", "rate", "rate", *tell[:2], *half),
        Row(f"{t}: tell vs zmq.asyncio drain", "rate", "rate", tell[0], tell[2]),
        Row(f"{t}: tell vs zmq.asyncio awaited per msg", "rate", "rate", tell[0], tell[3]),
        Row(
            f"{t}: pipelined ask, {in_flight:,} in flight (asks/s) vs raw sync DEALER/ROUTER",
            "rate",
            "rate",
            *asks[:2],
            *half,
        ),
        Row(f"{t}: pipelined ask vs zmq.asyncio", "rate", "rate", asks[0], asks[2]),
        Row(
            f"{t}: ask latency p50 vs zmq.asyncio round trip",
            "us",
            "p50",
            *latency[:2],
            "<= 1.5x raw asyncio",
            ("ratio<=", 1.5),
        ),
        Row(f"{t}: ask latency p99 vs zmq.asyncio round trip", "us", "p99", *latency[:2]),
        Row(f"{t}: ask latency p50 vs raw sync round trip", "us", "p50", latency[0], latency[2]),
        Row(f"{t}: ask latency p99 vs raw sync round trip", "us", "p99", latency[0], latency[2]),
    ]


def source_version() -> str:
    """The commit measured, and whether the runtime's or the transport's files differ."""
    return harness.source_version(
        ("cfactor", "transports"), "cfactor/ or transports/ differ from it: uncommitted changes"
    )


def facts(source: str, servers: list[Server]) -> dict[str, Any]:
    found = harness.machine_facts(asyncio.get_running_loop(), source)
    ordered: dict[str, Any] = {}
    for name, value in found.items():
        ordered[name] = value
        if name == "uvloop":
            ordered["pyzmq"] = zmq.pyzmq_version()
            ordered["libzmq"] = zmq.zmq_version()
            ordered["msgpack"] = ".".join(map(str, msgpack.version))
    loops = sorted({f"{s.kind}: {s.loop}" for s in servers if s.loop and s.loop != "sync"})
    ordered["server event loops"] = "; ".join(loops) or "none started"
    return ordered


async def benchmark(
    sizes: Sizes,
    repeat: int,
    *,
    transports: list[str],
    servers: list[Server],
    directory: str,
    profiling: Profiling,
) -> tuple[int, dict[str, Any]]:
    """Run every measurement, print the tables; the exit status and the JSON document."""
    found = facts(source_version(), servers)
    harness.print_header("cfactor transport benchmark", found)
    print(
        f"- sizes: tell {sizes.tell:,}; pipelined asks {sizes.asks:,} with "
        f"{sizes.in_flight:,} in flight; sequential asks {sizes.latency:,}; "
        f"{repeat} runs each, median reported; transports {', '.join(transports)}"
    )
    print(flush=True)

    by_key = {(s.transport, s.kind): s for s in servers}
    clients = Clients()
    listen = ClientListen(directory)
    rows: list[Row] = []
    measurements: list[tuple[str, str, str, list[Side]]] = []
    figures: list[tuple[str, list[Side]]] = []
    d = sizes.deadline_s
    try:
        for transport in transports:

            def tell_sides(n: int, t: str = transport) -> list[Side]:
                s_cf, s_sync = by_key[t, "cf"], by_key[t, "sync-pull"]
                s_drain, s_await = by_key[t, "async-pull-drain"], by_key[t, "async-pull-await"]
                return [
                    Side("cf", lambda dl: cf_tell(s_cf.address, listen(t), n, dl), s_cf),
                    Side("sync", lambda dl: sync_tell(clients, s_sync, n, dl), s_sync),
                    Side(
                        "async-drain",
                        lambda dl: async_tell_drain(clients, s_drain, n, dl),
                        s_drain,
                    ),
                    Side(
                        "async-await",
                        lambda dl: async_tell_await(clients, s_await, n, dl),
                        s_await,
                    ),
                ]

            def ask_sides(n: int, t: str = transport) -> list[Side]:
                s_cf, s_sync = by_key[t, "cf"], by_key[t, "sync-router"]
                s_async = by_key[t, "async-router"]
                k = sizes.in_flight
                return [
                    Side("cf", lambda dl: cf_pipelined(s_cf.address, listen(t), n, k, dl), s_cf),
                    Side("sync", lambda dl: sync_pipelined(clients, s_sync, n, k, dl), s_sync),
                    Side("async", lambda dl: async_pipelined(clients, s_async, n, k, dl), s_async),
                ]

            def latency_sides(n: int, t: str = transport) -> list[Side]:
                s_cf, s_sync = by_key[t, "cf"], by_key[t, "sync-router"]
                s_async = by_key[t, "async-router"]
                return [
                    Side("cf", lambda dl: cf_latency(s_cf.address, listen(t), n, dl), s_cf),
                    Side("async-rt", lambda dl: async_latency(clients, s_async, n, dl), s_async),
                    Side("sync", lambda dl: sync_latency(clients, s_sync, n, dl), s_sync),
                ]

            progress(f"{transport}: warming up ...")
            await warm_up(tell_sides(max(CHUNK, sizes.tell // 10)), d)
            await warm_up(ask_sides(max(sizes.in_flight, sizes.asks // 4)), d)
            await warm_up(latency_sides(max(100, sizes.latency // 10)), d)

            progress(f"{transport}: tell ...")
            tell = tell_sides(sizes.tell)
            await measure(tell, repeat, d, profiling, f"{transport}-tell")
            progress(f"{transport}: pipelined ask ...")
            asks = ask_sides(sizes.asks)
            await measure(asks, repeat, d, profiling, f"{transport}-pipelined")
            progress(f"{transport}: sequential ask latency ...")
            latency = latency_sides(sizes.latency)
            await measure(latency, repeat, d, profiling, f"{transport}-latency")

            rows += transport_rows(transport, sizes.in_flight, tell, asks, latency)
            figures += [
                (f"{transport} tell", tell),
                (f"{transport} pipelined ask", asks),
                (f"{transport} sequential ask", latency),
            ]
            measurements += [
                (f"{transport} tell (msgs/s)", "rate", "rate", tell),
                (f"{transport} pipelined ask (asks/s)", "rate", "rate", asks),
                (f"{transport} ask latency p50", "p50", "us", latency),
                (f"{transport} ask latency p99", "p99", "us", latency),
            ]
    finally:
        clients.close()
        profiling.dump()

    harness.print_section(harness.RESULTS, main_table(rows))
    harness.print_section(harness.EVERY_RUN, runs_table(measurements))
    harness.print_section(
        "CPU use during the runs (median; share of one core, all threads; the rest of "
        "the machine is other processes' load)",
        cpu_table(figures),
    )
    others = [
        run["other_cpu"]
        for _, sides in figures
        for side in sides
        for run in side.runs
        if "other_cpu" in run
    ]
    if others and max(others) > 0.25:
        disturbed = sum(1 for value in others if value > 0.25)
        print(
            f"Note: other processes used more than 25 % of a core during {disturbed} of "
            f"{len(others)} runs (up to {max(others) * 100:.0f} %): those figures are "
            "disturbed; compare them with care, or run again on a quiet machine."
        )
        print()
    errors = sorted(
        {
            (label.split()[0], SIDE_NAMES[side.name], side.error)
            for label, _, _, sides in measurements
            for side in sides
            if side.error is not None
        }
    )
    if errors:
        print("## Errors")
        print()
        for transport, name, error in errors:
            print(f"- {transport}, {name}: error: {error}")
        print()
    print(
        "Baselines (servers are separate processes, like cfactor's): tell = msgpack ints "
        "over PUSH/PULL, the server unpacks and counts, then acknowledges a count marker on "
        "a second PUSH/PULL; asks = msgpack [id, i] over DEALER/ROUTER, the server unpacks "
        "and packs each reply. Sync pipelined = a window of requests in flight, then one "
        "recv, one send; zmq.asyncio pipelined = the same worker tasks as cfactor's, awaiting "
        "futures that one reader task completes by id. zmq.asyncio servers poll, then drain "
        "with NOBLOCK (the awaited tell server awaits one recv per message)."
    )
    print(flush=True)

    missed = [row for row in rows if row.met is False]
    failed = bool(errors)
    document = {
        "facts": found,
        "sizes": sizes.__dict__,
        "repeat": repeat,
        "rows": [row_json(row) for row in rows],
        "errors": [{"transport": t, "side": n, "error": e} for t, n, e in errors],
    }
    return (2 if failed else 1 if missed else 0), document


def row_json(row: Row) -> dict[str, Any]:
    clean = harness.clean
    return {
        "label": row.label,
        "unit": {"rate": "per_second", "us": "microseconds"}[row.unit],
        "cfactor": clean(row.cf_value),
        "baseline": clean(row.raw_value),
        "baseline_side": SIDE_NAMES[row.baseline.name],
        "ratio": clean(row.ratio),
        "cfactor_runs": row.cf.values(row.key),
        "baseline_runs": row.baseline.values(row.key),
        "target": row.target,
        "met": row.met,
        "cfactor_error": row.cf.error,
        "baseline_error": row.baseline.error,
        "truncated": row.cf.truncated or row.baseline.truncated,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = harness.parser(
        "Measure cfactor across two processes (tell throughput, pipelined ask "
        "throughput, sequential ask latency; over tcp://127.0.0.1 and ipc://) next to "
        "raw pyzmq baselines measured in the same run, and print a table. Exits 1 when a "
        "target is missed, 2 when a side (cfactor's or a baseline's) failed.",
        "small sizes: a smoke run of a few seconds",
    )
    parser.add_argument(
        "--transport",
        choices=[*TRANSPORTS, "both"],
        default="both",
        help="which transports to measure (default both)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="write cProfile stats of cfactor's side (client runs, and each cf server) here",
    )
    parser.add_argument("--serve", choices=SERVER_KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--dir", default="", help=argparse.SUPPRESS)
    parser.add_argument("--lifetime", type=float, default=FULL.lifetime_s, help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", default="", help=argparse.SUPPRESS)
    return harness.parse(parser, argv)


def on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    args = parse_args()
    if args.serve:
        transport = "tcp" if args.transport == "both" else args.transport
        return serve(args.serve, transport, args.dir, args.lifetime, args.profile_out)
    signal.signal(signal.SIGTERM, on_sigterm)  # stop the servers on the way out
    sizes = QUICK if args.quick else FULL
    transports = list(TRANSPORTS) if args.transport == "both" else [args.transport]
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    directory = tempfile.mkdtemp(prefix="cfactor-bench-")
    servers: list[Server] = []
    try:
        progress("starting servers ...")
        servers = start_servers(sizes, transports, directory, args.profile)
        wait_ready(servers, sizes.startup_s)
        for server in servers:
            if server.error is not None:
                progress(f"{server.transport} {server.kind}: {server.error}")
        status, document = cf.run(
            benchmark(
                sizes,
                args.repeat,
                transports=transports,
                servers=servers,
                directory=directory,
                profiling=Profiling(args.profile),
            )
        )
    finally:
        stop_servers(servers)
        shutil.rmtree(directory, ignore_errors=True)
    harness.finish(args.json, document)
    return status


if __name__ == "__main__":
    sys.exit(main())
