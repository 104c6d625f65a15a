"""A member process for the transport fault tests and benchmarks.

``python -m tests.faults.member_process --listen tcp://127.0.0.1:0 [--nofile 1024]``
listens, spawns an ``echo`` actor, prints ``ADDRESS <url>`` on one line, and serves until
it is killed or its stdin closes (so a crashed test leaves no orphan). ``--nofile`` sets
the open-file limit, soft and hard, before anything opens a file (as ``ulimit -n`` would);
``--soft-nofile`` the soft limit only (as a login shell's default 1,024 under a higher
hard limit).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import zmq

import cfactor as cf

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self

ROOT = Path(__file__).resolve().parents[2]


class Echo(cf.Actor):
    async def receive(self, message: Any) -> Any:
        return message


class Stats(cf.Actor):
    """This member's transport figures: peers, and its own limits."""

    async def receive(self, message: Any) -> Any:
        transport = self.system.statistics().transport
        return {
            "peers": transport.peers if transport else -1,
            "unreachable": transport.unreachable if transport else -1,
            "frames_rejected": transport.frames_rejected if transport else -1,
            "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        }


async def serve(listen: str, options: dict[str, float]) -> None:
    async with cf.ActorSystem(listen=listen, transport_options=options) as system:
        await system.spawn(Echo, name="echo")
        await system.spawn(Stats, name="stats")
        print(f"ADDRESS {system.address}", flush=True)
        loop = asyncio.get_running_loop()
        # Serve until stdin closes: the parent ended or died.
        await loop.run_in_executor(None, sys.stdin.read)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def timing(heartbeat_timeout_s: float) -> dict[str, float]:
    """The transport options every process of a fault test uses."""
    return {
        "heartbeat_interval_s": heartbeat_timeout_s / 5,
        "heartbeat_timeout_s": heartbeat_timeout_s,
    }


class MemberProcess:
    """Runs this module as a child process; ``address`` once it serves."""

    def __init__(
        self,
        listen: str = "tcp://127.0.0.1:0",
        *,
        heartbeat_timeout_s: float = 1.0,
        nofile: int | None = None,
        soft_nofile: int | None = None,
    ) -> None:
        self.listen = listen
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.nofile = nofile
        self.soft_nofile = soft_nofile
        self.address = ""
        self.process: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 20.0) -> Self:
        command = [
            sys.executable,
            "-m",
            "tests.faults.member_process",
            "--listen",
            self.listen,
            "--heartbeat-timeout",
            str(self.heartbeat_timeout_s),
        ]
        if self.nofile is not None:
            command += ["--nofile", str(self.nofile)]
        if self.soft_nofile is not None:
            command += ["--soft-nofile", str(self.soft_nofile)]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        stdout = self.process.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout
        line = _readline(stdout, deadline)
        if not line.startswith("ADDRESS "):
            self.stop()
            raise RuntimeError(f"member did not start: {line!r}")
        self.address = line.split()[1]
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        os.kill(self.process.pid, sig)

    def open_files(self) -> int:
        """The process's open file descriptors, from /proc."""
        return sum(1 for _ in Path(f"/proc/{self.pid}/fd").iterdir())

    def rss_mib(self) -> float:
        """The process's resident memory, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)  # a stopped process cannot exit
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=5)
        self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def raw_peers(
    context: zmq.Context[zmq.Socket[bytes]], member: str, count: int, first: int = 0
) -> list[zmq.Socket[bytes]]:
    """``count`` raw DEALERs, each claiming another address, each sending the member one
    tell: ``count`` peers at once for the member, at the cost of one socket each here
    (nothing listens on the claimed addresses; the member dials them in vain)."""
    from cfactor_zmq import _protocol as proto

    from cfactor.abc import Envelope, Kind
    from cfactor.wire import MsgpackCodec

    frame = MsgpackCodec().encode_item(Envelope(Kind.TELL, "echo", None, 0, None, "hi"))
    body = MsgpackCodec.join_items([frame])
    sockets = []
    for i in range(first, first + count):
        dealer = context.socket(zmq.DEALER)
        sockets.append(dealer)
        dealer.setsockopt(zmq.LINGER, 0)
        claimed = f"tcp://127.0.0.2:{1024 + i}"
        dealer.setsockopt(zmq.ROUTING_ID, proto.routing_id(claimed, os.urandom(8)))
        dealer.connect(member)
        header = proto.DATA_HEADER.pack(proto.DATA, 1 + i, 0, 0, 0)
        dealer.send_multipart([header, body])
    return sockets


def _readline(stream: IO[str], deadline: float) -> str:
    # The child prints one line once it serves; a child that dies prints nothing.
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(max(0.0, deadline - time.monotonic())):
            return ""
    return stream.readline().strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", default="tcp://127.0.0.1:0")
    parser.add_argument("--heartbeat-timeout", type=float, default=1.0)
    parser.add_argument("--nofile", type=int, help="open-file limit, soft and hard")
    parser.add_argument("--soft-nofile", type=int, help="open-file soft limit only")
    args = parser.parse_args()
    if args.nofile is not None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, args.nofile))
    if args.soft_nofile is not None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.soft_nofile, hard))
    cf.run(serve(args.listen, timing(args.heartbeat_timeout)))


if __name__ == "__main__":
    main()
