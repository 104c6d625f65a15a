"""The ZeroMQ transport's framing, sans IO: headers, control messages, addresses."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from cfactor_zmq import _protocol as proto
from hypothesis import given, settings
from hypothesis import strategies as st

from cfactor.errors import ConfigError, MalformedFrame, ProtocolError, UnsupportedVersion
from cfactor.wire import MsgpackCodec

HOSTILE = settings(deadline=None, max_examples=300)
U64 = st.integers(0, 2**64 - 1)


@given(address=st.sampled_from(["tcp://127.0.0.1:7001", "ipc:///tmp/x.sock"]), inc=U64)
def test_hello_round_trips(address: str, inc: int) -> None:
    assert proto.decode_control(proto.HELLO, proto.encode_hello(address, inc)) == proto.Hello(
        address, inc
    )


@given(inc=U64, sent=U64, peer=U64)
def test_beat_and_credit_round_trip(inc: int, sent: int, peer: int) -> None:
    assert proto.decode_control(proto.BEAT, proto.encode_beat(inc, sent)) == proto.Beat(inc, sent)
    credit = proto.encode_credit(inc, peer, sent)
    assert len(credit) <= proto.MAX_CONTROL_SIZE
    assert proto.decode_control(proto.CREDIT, credit) == proto.Credit(inc, peer, sent)


@HOSTILE
@given(kind=st.sampled_from([proto.HELLO, proto.BEAT, proto.CREDIT, b"Z", b""]), body=st.binary())
def test_any_control_bytes_raise_only_protocol_errors(kind: bytes, body: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        proto.decode_control(kind, body)


@HOSTILE
@given(
    kind=st.sampled_from([proto.HELLO, proto.BEAT, proto.CREDIT]),
    fields=st.lists(
        st.one_of(st.integers(-(2**63), 2**64 - 1), st.text(max_size=20), st.none(), st.floats()),
        max_size=4,
    ),
)
def test_wrong_control_shapes_are_malformed(kind: bytes, fields: list[object]) -> None:
    try:
        message = proto.decode_control(kind, msgpack.packb(fields))
    except ProtocolError:
        return
    # What is accepted has exactly the declared types.
    if isinstance(message, proto.Hello):
        assert type(message.address) is str
    numbers = [v for v in message if not isinstance(v, str)]
    assert all(type(v) is int and 0 <= v < 2**64 for v in numbers)


def test_a_hello_of_another_version_is_unsupported() -> None:
    with pytest.raises(UnsupportedVersion):
        proto.decode_control(
            proto.HELLO, msgpack.packb([proto.PROTOCOL_VERSION + 1, "tcp://127.0.0.1:1", 1])
        )


def test_oversized_control_messages_are_refused_unread() -> None:
    with pytest.raises(MalformedFrame, match="control message of"):
        proto.decode_control(proto.BEAT, b"\x92" + b"\x00" * 1000)


def test_a_part_holds_a_full_batch_and_one_largest_frame() -> None:
    size = 4 * 1024 * 1024
    batch = MsgpackCodec.join_items([b"x" * 2000] * 524 + [b"y" * (size - 1)])
    assert len(batch) <= proto.max_part_size(size)


@pytest.mark.parametrize(
    "address",
    [
        "tcp://127.0.0.1:7001",
        "tcp://localhost:1",
        "tcp://[::1]:65535",
        "tcp://member-b.example.org:7001",
        "ipc:///tmp/cfactor/member.sock",
        "ipc://@abstract",
    ],
)
def test_peer_addresses(address: str) -> None:
    assert proto.is_peer_address(address)
    rid = proto.routing_id(address, b"\x00\xff" * 4)
    assert rid == address.encode() + b"\x00" + b"\x00\xff" * 4
    assert proto.routing_id_address(rid) == address
    # A bare address is protocol 2's routing id: not one any more.
    assert proto.routing_id_address(address.encode()) is None


@pytest.mark.parametrize(
    "address",
    [
        "tcp://127.0.0.1:0",
        "tcp://127.0.0.1:65536",
        "tcp://*:7001",
        "tcp://0.0.0.0:7001",
        "tcp://127.0.0.1",
        "tcp://127.0.0.1:7001/x",
        "tcp://a b:1",
        "udp://127.0.0.1:1",
        "ipc://",
        "ipc://a\x00b",
        "inproc://x",
        "tcp://" + "a" * 250 + ":1",
        "",
    ],
)
def test_not_peer_addresses(address: str) -> None:
    assert not proto.is_peer_address(address)
    assert proto.routing_id_address(address.encode()) is None
    assert proto.routing_id_address(address.encode() + b"\x00" + b"n" * 8) is None


def test_addresses_are_limited_so_a_routing_id_fits_in_255_bytes() -> None:
    longest = "ipc://" + "a" * (proto.MAX_ADDRESS_BYTES - 6)
    assert len(longest) == 246
    assert proto.is_peer_address(longest)
    assert proto.check_listen(longest) == longest
    rid = proto.routing_id(longest, b"n" * 8)
    assert len(rid) == 255
    assert proto.routing_id_address(rid) == longest
    too_long = longest + "a"
    assert not proto.is_peer_address(too_long)
    with pytest.raises(ConfigError, match="longer than 246 bytes"):
        proto.check_listen(too_long)
    with pytest.raises(ConfigError, match="longer than 246 bytes"):
        proto.routing_id(too_long, b"n" * 8)
    with pytest.raises(ConfigError, match="nonce"):
        proto.routing_id(longest, b"short")
    assert proto.routing_id_address(too_long.encode() + b"\x00" + b"n" * 8) is None


@pytest.mark.parametrize(
    "rid",
    [
        b"tcp://127.0.0.1:7001\x00" + b"n" * 7,  # nonce too short: no NUL where it must be
        b"tcp://127.0.0.1:7001\x01" + b"n" * 8,  # no NUL before the nonce
        b"\x00" + b"n" * 8,  # no address
        b"tcp://127.0.0.1:7001" + b"n" * 9,
    ],
)
def test_malformed_routing_ids(rid: bytes) -> None:
    assert proto.routing_id_address(rid) is None


@given(rid=st.binary(max_size=300))
def test_any_routing_id_is_an_address_or_none(rid: bytes) -> None:
    address = proto.routing_id_address(rid)
    assert address is None or (proto.is_peer_address(address) and rid[-9] == 0)


@given(inc=U64)
def test_bye_round_trips(inc: int) -> None:
    assert proto.decode_control(proto.BYE, proto.encode_bye(inc)) == proto.Bye(inc)
    with pytest.raises(MalformedFrame):
        proto.decode_control(proto.BYE, msgpack.packb([inc, 1]))


def test_routing_ids_that_are_not_text_are_not_addresses() -> None:
    assert proto.routing_id_address(b"\x00\x80\x00\x41\xa7") is None
    assert proto.routing_id_address(b"tcp://127.0.0.1:\xff") is None
    assert proto.routing_id_address(b"") is None


@pytest.mark.parametrize("listen", ["tcp://127.0.0.1:0", "tcp://[::1]:0", "ipc:///tmp/m.sock"])
def test_listen_addresses(listen: str) -> None:
    assert proto.check_listen(listen) == listen


@pytest.mark.parametrize(
    "listen", ["tcp://*:0", "tcp://0.0.0.0:1", "tcp://[::]:0", "tcp://h:70000", "x", None]
)
def test_bad_listen_addresses(listen: object) -> None:
    with pytest.raises(ConfigError):
        proto.check_listen(listen)
