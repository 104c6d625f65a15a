"""Network namespaces for partition tests: members on their own links, which a test cuts.

This machine has no tc/netem or iptables, but as root ``ip netns`` works: ``Network``
builds one bridge in the root namespace on ``10.213.N.0/24`` (``.1`` is the bridge, the
address etcd and the test's own member listen on) and, per member, a namespace holding
one end of a veth pair (``10.213.N.(i+2)``), whose other end is a port of the bridge.
``cut(i)`` sets that port down (``ip link set ... down``): every frame between member
``i`` and the rest (etcd included) is lost, sockets stay open, as in a real partition;
``restore(i)`` sets it up again.

Names are unique per run (built from the pid) so parallel runs do not clash, the subnet
is one no interface uses yet, and ``close`` removes everything, also when the set-up
failed half way. No traffic leaves the namespaces a test creates (plus loopback).
``unavailable()`` says why namespaces cannot be used here (a skip reason), or None.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Self

from cfactor.tools.etcd_server import EtcdServer
from tests.cluster.harness import Worker

if TYPE_CHECKING:
    from types import TracebackType

IP = shutil.which("ip") or "/usr/sbin/ip"
SUBNETS = ipaddress.ip_network("10.213.0.0/16")


def _ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    command = [IP, "netns", "exec", netns, IP, *args] if netns else [IP, *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return done.stdout


def unavailable() -> str | None:
    """Why network namespaces cannot be used by this process (None: they can)."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if not Path(IP).exists():
        return "the ip command (iproute2) is not installed"
    probe = f"cfprobe{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        return f"ip netns add does not work here: {exc}"
    _ip("netns", "del", probe, check=False)
    return None


def _free_subnet() -> int:
    """A third octet N such that no interface has an address in 10.213.N.0/24."""
    used = set()
    for line in _ip("-o", "-4", "addr", "show").splitlines():
        for word in line.split():
            if "/" in word and word[0].isdigit():
                address = ipaddress.ip_interface(word).ip
                if address in SUBNETS:
                    used.add(int(str(address).split(".")[2]))
    start = os.getpid() % 250 + 1
    for step in range(250):
        n = (start + step) % 250 + 1
        if n not in used:
            return n
    raise RuntimeError("no free 10.213.N.0/24 subnet")


def _dead(pid: str) -> bool:
    return not Path(f"/proc/{pid}").exists()


def sweep_leftovers() -> None:
    """Remove namespaces and bridges left by runs whose process is gone (a run killed
    before its clean-up, e.g. by pytest-timeout)."""
    for line in _ip("netns", "list").splitlines():
        found = re.fullmatch(r"cf(\d+)n\d+", line.split()[0]) if line.split() else None
        if found and _dead(found.group(1)):
            _ip("netns", "del", found.group(0), check=False)
    for line in _ip("-o", "link", "show").splitlines():
        found = re.search(r"^\d+: (cf(?:br|v)(\d+)\S*?)[@:]", line)
        if found and _dead(found.group(2)):
            _ip("link", "del", found.group(1), check=False)


class Network:
    """A bridge in the root namespace and ``members`` namespaces, one veth each."""

    def __init__(self, members: int) -> None:
        tag = str(os.getpid())
        self.members = members
        self.bridge = f"cfbr{tag}"
        self.namespaces = [f"cf{tag}n{i}" for i in range(members)]
        self.ports = [f"cfv{tag}n{i}" for i in range(members)]  # root side, bridge ports
        self.subnet = 0
        self._made: list[tuple[str, ...]] = []  # what close() removes, newest last

    @property
    def host(self) -> str:
        """The bridge's address in the root namespace (etcd and the test listen here)."""
        return f"10.213.{self.subnet}.1"

    def address(self, i: int) -> str:
        """Member ``i``'s address inside its namespace."""
        return f"10.213.{self.subnet}.{i + 2}"

    def open(self) -> None:
        """Build the network; on any failure remove what was built and raise."""
        try:
            sweep_leftovers()
            self.subnet = _free_subnet()
            _ip("link", "add", self.bridge, "type", "bridge")
            self._made.append(("link", "del", self.bridge))
            _ip("addr", "add", f"{self.host}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for i, (ns, port) in enumerate(zip(self.namespaces, self.ports, strict=True)):
                _ip("netns", "add", ns)
                self._made.append(("netns", "del", ns))
                _ip("link", "add", port, "type", "veth", "peer", "name", f"cfp{os.getpid()}n{i}")
                self._made.append(("link", "del", port))  # deletes both ends
                _ip("link", "set", f"cfp{os.getpid()}n{i}", "netns", ns)
                _ip("link", "set", f"cfp{os.getpid()}n{i}", "name", "eth0", netns=ns)
                _ip("addr", "add", f"{self.address(i)}/24", "dev", "eth0", netns=ns)
                _ip("link", "set", "eth0", "up", netns=ns)
                _ip("link", "set", "lo", "up", netns=ns)
                _ip("link", "set", port, "master", self.bridge)
                _ip("link", "set", port, "up")
        except BaseException:
            self.close()
            raise

    def cut(self, i: int) -> None:
        """Cut member ``i``'s link: its bridge port goes down."""
        _ip("link", "set", self.ports[i], "down")

    def restore(self, i: int) -> None:
        """Undo ``cut(i)``."""
        _ip("link", "set", self.ports[i], "up")

    def close(self) -> None:
        """Remove everything ``open`` made (idempotent; errors of one step don't stop
        the others)."""
        while self._made:
            _ip(*self._made.pop(), check=False)

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class BridgeEtcd(EtcdServer):
    """An ``EtcdServer`` that also listens on the bridge's address, so members in the
    namespaces reach it; ``endpoint`` is that address (local to the root namespace). It
    keeps listening on loopback too."""

    def __init__(self, host: str) -> None:
        super().__init__()
        self.host = host

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    def _command(self) -> list[str]:
        loopback = f"http://127.0.0.1:{self.client_port}"
        command = super()._command()
        return [
            f"--listen-client-urls={loopback},{self.endpoint}"
            if arg.startswith("--listen-client-urls=")
            else arg
            for arg in command
        ]


class NetnsWorker(Worker):
    """A ``cfactor cluster join`` process inside a namespace (``ip netns exec``, which
    execs the member itself: signals reach it directly)."""

    def __init__(
        self, netns: str, listen_host: str, etcd: str, name: str, *, ttl_s: float, label: str
    ) -> None:
        super().__init__(
            etcd,
            name,
            ttl_s,
            listen_host=listen_host,
            label=f"side={label}",
            prefix=(IP, "netns", "exec", netns),
        )
