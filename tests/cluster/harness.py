"""A real cluster for tests: a real etcd, member processes (``cfactor cluster join``)
on loopback, and the test process as one more member.

``Worker`` is one member process that a test can kill (SIGKILL), stop (SIGTERM), pause
(SIGSTOP, a gray failure) and resume; ``real_cluster`` starts etcd (unless given one),
the workers, and joins the test process after them (so a worker leads placement).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cfactor as cf
from cfactor.tools.etcd_server import EtcdServer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

ROOT = Path(__file__).resolve().parents[2]
WORKERS = cf.Labels(role="worker")


class Worker:
    """A ``cfactor cluster join`` process."""

    def __init__(
        self,
        etcd: str,
        name: str,
        ttl_s: float,
        *,
        listen_host: str = "127.0.0.1",
        label: str = "role=worker",
        prefix: Sequence[str] = (),
    ) -> None:
        """``prefix`` runs the member through another command (``ip netns exec ns``)."""
        # stderr goes to a file, not a pipe: nobody reads the pipe while the member
        # runs, and a member that logs a lot (tracebacks of a crash storm) would block
        # once the pipe's 64 KiB buffer is full.
        self.stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                *prefix,
                sys.executable,
                "-m",
                "cfactor.cli",
                "cluster",
                "join",
                "--etcd",
                etcd,
                "--listen",
                f"tcp://{listen_host}:0",
                "--name",
                name,
                "--ttl",
                str(ttl_s),
                "--label",
                label,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if " listening on " not in line:
            self.kill()
            raise AssertionError(f"member did not join: {line!r} {self.stderr_text()}")
        self.member_id = line.split()[1]
        self.address = line.split(" listening on ")[1].split()[0]

    def stderr_text(self) -> str:
        """What the member wrote on stderr so far (its log); empty once it ended."""
        if self.stderr.closed:
            return ""
        self.stderr.flush()
        self.stderr.seek(0)
        return self.stderr.read()

    def pause(self) -> None:
        """Freeze the member (SIGSTOP): its sockets stay open and nothing answers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Undo ``pause`` (SIGCONT)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.send_signal(signal.SIGCONT)
        self.process.communicate(timeout=10)
        self.stderr.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        else:
            self.process.communicate(timeout=10)
        self.stderr.close()


class RealCluster:
    def __init__(self, etcd: EtcdServer, ttl_s: float) -> None:
        self.etcd = etcd
        self.ttl_s = ttl_s
        self.name = "t" + os.urandom(4).hex()
        self.workers: list[Worker] = []
        self.me: cf.ActorSystem | None = None

    async def add_workers(self, count: int) -> None:
        loop = asyncio.get_running_loop()
        started = await asyncio.gather(
            *(
                loop.run_in_executor(None, Worker, self.etcd.endpoint, self.name, self.ttl_s)
                for _ in range(count)
            )
        )
        self.workers.extend(started)

    @property
    def runtime(self) -> Any:
        assert self.me is not None
        return self.me.cluster

    def leader(self) -> str | None:
        found: str | None = self.runtime.membership.leader("placement")
        return found


@asynccontextmanager
async def real_cluster(
    workers: int, ttl_s: float, etcd: EtcdServer | None = None
) -> AsyncIterator[RealCluster]:
    own = etcd is None
    server = etcd or EtcdServer()
    if own:
        await server.astart()
    c = RealCluster(server, ttl_s)
    try:
        await c.add_workers(workers)
        c.me = cf.ActorSystem(
            listen="tcp://127.0.0.1:0",
            cluster=cf.Cluster(etcd=server.endpoint, name=c.name, ttl_s=ttl_s),
            transport_options={"heartbeat_interval_s": 0.2, "heartbeat_timeout_s": 1.0},
            ask_timeout_s=5.0,
        )
        await c.me.start()
        yield c
    finally:
        if c.me is not None:
            await c.me.aclose()
        for worker in c.workers:
            worker.stop()
        if own:
            await asyncio.to_thread(server.close)
