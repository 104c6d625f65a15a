"""Transports under test: every check in test_conformance.py runs against each."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

import pytest

from cfactor.testing import MemoryNetwork, MemoryTransport

if TYPE_CHECKING:
    from pathlib import Path

    from cfactor.abc import Transport

HAVE_ZMQ_TRANSPORT = importlib.util.find_spec("cfactor_zmq") is not None

# Short heartbeats so loss is detected within a test's patience.
ZMQ_TIMING = {"heartbeat_interval_s": 0.05, "heartbeat_timeout_s": 0.4}


class TransportKit:
    """Makes transports of one kind, and the addresses they listen on."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self.network = MemoryNetwork()
        self._count = 0

    def make(self, **options: Any) -> Transport:
        if self.kind == "memory":
            return MemoryTransport(self.network, **options)
        from cfactor_zmq import ZmqTransport

        transport: Transport = ZmqTransport(**{**ZMQ_TIMING, **options})
        return transport

    def listen(self) -> str:
        self._count += 1
        if self.kind == "memory":
            return "mem://"
        if self.kind == "zmq-tcp":
            return "tcp://127.0.0.1:0"
        return f"ipc://{self.tmp_path}/member-{self._count}.sock"

    def unused_address(self) -> str:
        if self.kind == "memory":
            return "mem://nobody"
        if self.kind == "zmq-tcp":
            return "tcp://127.0.0.1:1"  # port 1: nothing listens there
        return f"ipc://{self.tmp_path}/nobody.sock"

    @property
    def loss_bound_s(self) -> float:
        """How long a peer's loss may take to notice."""
        return 0.1 if self.kind == "memory" else ZMQ_TIMING["heartbeat_timeout_s"] + 1.0


@pytest.fixture(
    params=[
        "memory",
        pytest.param(
            "zmq-tcp",
            marks=pytest.mark.skipif(not HAVE_ZMQ_TRANSPORT, reason="no cfactor_zmq"),
        ),
        pytest.param(
            "zmq-ipc",
            marks=pytest.mark.skipif(not HAVE_ZMQ_TRANSPORT, reason="no cfactor_zmq"),
        ),
    ]
)
def kit(request: pytest.FixtureRequest, tmp_path: Path) -> TransportKit:
    return TransportKit(request.param, tmp_path)
