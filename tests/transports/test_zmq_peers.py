"""ZmqTransport's peer bookkeeping: routing ids, BYE, forgetting departed peers, limits.

Issue 10 items 3 and 4; docs/transport.md ("Reconnecting after a gray failure", "Peer
churn and limits").
"""

from __future__ import annotations

import errno
import logging
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import zmq
from cfactor_zmq import _protocol as proto
from cfactor_zmq import _transport

from cfactor.errors import MemberUnreachable
from cfactor.wire import MsgpackCodec
from tests.transports.test_zmq_transport import (
    Cluster,
    cluster,
    eventually,
    free_port,
    open_fds,
    tell,
)

pytestmark = pytest.mark.anyio

__all__ = ["cluster"]  # the fixture, used by name


async def test_dealer_routing_ids_are_the_address_a_nul_and_a_fresh_nonce(
    cluster: Cluster,
) -> None:
    a, _ = await cluster.start()
    b, _ = await cluster.start()
    c, _ = await cluster.start()
    a.send_nowait(b.address, tell(1))
    a.send_nowait(c.address, tell(2))
    rids = [p.dealer.getsockopt(zmq.ROUTING_ID) for p in a._peers.values()]
    assert all(isinstance(rid, bytes) for rid in rids)
    assert {proto.routing_id_address(rid) for rid in rids} == {a.address}  # type: ignore[arg-type]
    assert len(set(rids)) == 2  # one nonce per socket
    # B knows A by the routing id A's DEALER to B wrote with.
    await eventually(lambda: a.address in b._peers and b._peers[a.address].rid != b"")
    assert b._peers[a.address].rid == a._peers[b.address].dealer.getsockopt(zmq.ROUTING_ID)


async def test_a_redial_with_the_same_routing_id_takes_the_stale_connection_over(
    cluster: Cluster,
) -> None:
    # What a DEALER does after a gray failure: a new connection with its routing id
    # while the ROUTER still holds the old one. Without ROUTER_HANDOVER zmq parked it
    # unread (issue 10 item 3).
    a, got = await cluster.start()
    assert a._context is not None
    assert a._context.get(zmq.MAX_SOCKETS) == _transport.MAX_SOCKETS == _transport.MAX_PEERS + 16
    rid = proto.routing_id(f"tcp://127.0.0.1:{free_port()}", b"12345678")
    frame = MsgpackCodec().encode_item(tell("x"))
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        sockets = []
        for seq in range(3):
            raw = context.socket(zmq.DEALER)
            sockets.append(raw)  # the older ones stay connected
            raw.setsockopt(zmq.LINGER, 0)
            raw.setsockopt(zmq.ROUTING_ID, rid)
            raw.connect(a.address)
            header = proto.DATA_HEADER.pack(proto.DATA, 4242, seq, 0, 0)
            raw.send_multipart([header, MsgpackCodec.join_items([frame])])
            await eventually(lambda seq=seq: len(got.received) == seq + 1)  # type: ignore[misc]
    finally:
        context.destroy(linger=0)


async def test_a_closing_peer_says_bye_and_its_socket_is_closed_at_once(
    cluster: Cluster,
) -> None:
    a, a_got = await cluster.start(heartbeat_timeout_s=30.0, heartbeat_interval_s=1.0)
    before = open_fds()
    for _ in range(20):
        b, _ = await cluster.start(heartbeat_timeout_s=30.0, heartbeat_interval_s=1.0)
        b.send_nowait(a.address, tell("hi"))
        await eventually(lambda b=b: b.address in a._peers)  # type: ignore[misc]
        await b.aclose()
        # Forgotten at once, not after the 30 s heartbeat timeout.
        await eventually(lambda b=b: b.address not in a._peers, timeout=3)  # type: ignore[misc]
        assert b.address in a_got.lost  # what waited on it failed
    assert a.statistics().peers == 0
    assert open_fds() <= before + 4


async def test_a_lost_peer_is_forgotten_after_a_while_and_its_socket_closed(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_transport, "FORGET_AFTER_S", 0.5)
    a, a_got = await cluster.start()
    b, _ = await cluster.start()
    a.send_nowait(b.address, tell("hi"))
    await eventually(lambda: b.address in a._peers and a._peers[b.address].incarnation != 0)
    b._say_bye = lambda: None  # type: ignore[method-assign] # as if it crashed
    await b.aclose()
    await eventually(lambda: a_got.lost == [b.address], timeout=3)
    assert not a.is_reachable(b.address)
    await eventually(lambda: a.statistics().peers == 0, timeout=3)
    # Forgotten: a later send dials afresh (and the address is lost again, in time).
    assert a.is_reachable(b.address)
    a.send_nowait(b.address, tell("anyone?"))
    await eventually(lambda: a_got.lost == [b.address, b.address], timeout=3)


async def test_peers_beyond_the_limit_get_a_typed_error_and_a_log_line(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_transport, "MAX_PEERS", 2)
    a, a_got = await cluster.start()
    b, _ = await cluster.start()
    c, c_got = await cluster.start()
    with caplog.at_level(logging.WARNING, logger="cfactor.transport"):
        a.send_nowait(b.address, tell("one"))
        a.send_nowait(f"tcp://127.0.0.1:{free_port()}", tell("two"))
        with pytest.raises(MemberUnreachable, match="too many peers"):
            a.send_nowait(f"tcp://127.0.0.1:{free_port()}", tell("three"))
        # A new peer that contacts A is refused (counted, logged); it loses A, typed.
        c.send_nowait(a.address, tell("let me in"))
        await eventually(lambda: c_got.lost == [a.address], timeout=3)
        assert a.statistics().frames_rejected >= 1
    assert any("too many peers" in r.message for r in caplog.records)
    # A still serves the peers it has.
    b.send_nowait(a.address, tell("still here"))
    await eventually(lambda: a_got.payloads() == ["still here"])


async def test_a_socket_that_cannot_be_opened_is_a_typed_error_and_a_log_line(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    a, a_got = await cluster.start()
    b, _ = await cluster.start()
    assert a._context is not None
    context = a._context

    def no_more_files(kind: int, **_: Any) -> zmq.Socket[bytes]:
        raise zmq.ZMQError(errno.EMFILE)

    with caplog.at_level(logging.WARNING, logger="cfactor.transport"):
        monkeypatch.setattr(context, "socket", no_more_files)
        with pytest.raises(MemberUnreachable, match="open-file limit"):
            a.send_nowait(f"tcp://127.0.0.1:{free_port()}", tell("x"))
        # A peer that contacts A meanwhile is refused, and A goes on reading.
        b.send_nowait(a.address, tell("refused"))
        await eventually(lambda: a.statistics().frames_rejected >= 1)
        monkeypatch.undo()
    assert any("open-file limit" in r.message for r in caplog.records)
    b.send_nowait(a.address, tell("let in"))
    await eventually(lambda: "let in" in a_got.payloads())


def _limits_in_a_child(soft: int, hard: int) -> tuple[int, int, str]:
    # The open-file limit is the process's: change it in a child, not in pytest.
    code = textwrap.dedent(
        f"""
        import logging, resource, sys
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))
        from cfactor_zmq import _transport
        peers = _transport._raise_open_file_limit()
        print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], peers)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    got_soft, peers = map(int, done.stdout.split())
    return got_soft, peers, done.stderr


def test_the_open_file_limit_is_raised_toward_what_max_peers_needs() -> None:
    assert _transport.WANTED_NOFILE == 4096 * 3 + 128 == 12_416
    soft, peers, log = _limits_in_a_child(1024, 20_000)
    assert (soft, peers) == (12_416, 4096)
    assert log == ""
    # Up to the hard limit only; then fewer peers, and a line that says so.
    soft, peers, log = _limits_in_a_child(1024, 4096)
    assert (soft, peers) == (4096, (4096 - 128) // 3)
    assert "open-file limit 4096" in log
    soft, peers, log = _limits_in_a_child(1024, 1024)
    assert (soft, peers) == (1024, 298)
    assert "allows about 298 peers" in log
