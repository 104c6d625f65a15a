"""Batches of items (``encode_item``/``join_items``/``decode_items``): one msgpack pass
for a good batch, each bad item refused on its own, any bytes -> ProtocolError only."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfactor.abc import Envelope, Kind
from cfactor.errors import FrameTooLarge, MalformedFrame, MessageNotSerializable, ProtocolError
from cfactor.wire import MsgpackCodec
from tests.wire.samples import FakeRef, envelopes, ext, pack, payloads, same_envelope

HOSTILE = settings(deadline=None, max_examples=300)


def tell(payload: Any, target: str = "t") -> Envelope:
    return Envelope(Kind.TELL, target, None, 0, None, payload)


@settings(deadline=None, max_examples=100)
@given(sent=st.lists(envelopes(payloads(st.none())), min_size=1, max_size=40))
def test_batches_round_trip(sent: list[Envelope]) -> None:
    codec = MsgpackCodec()
    batch = codec.join_items([codec.encode_item(e) for e in sent])
    decoded = codec.decode_items(batch, 4096)
    assert len(decoded) == len(sent)
    for got, envelope in zip(decoded, sent, strict=True):
        assert isinstance(got, Envelope)
        assert same_envelope(got, envelope)


@pytest.mark.parametrize("count", [1, 15, 16, 65535, 65536])
def test_array_headers_of_every_size(count: int) -> None:
    codec = MsgpackCodec()
    item = codec.encode_item(tell(1))
    decoded = codec.decode_items(codec.join_items([item] * count), 1 << 20)
    assert len(decoded) == count
    assert all(type(e) is Envelope and e.payload == 1 for e in decoded)


def test_an_item_is_a_frame_without_its_version_byte() -> None:
    codec = MsgpackCodec()
    envelope = tell(("add", 1))
    assert codec.encode(envelope) == b"\x01" + codec.encode_item(envelope)


def test_each_bad_item_is_refused_alone_and_the_rest_delivered() -> None:
    codec = MsgpackCodec(make_ref=FakeRef, max_frame_size=1024)
    good = codec.encode_item(tell("good"))
    items = [
        good,
        pack([9, "t", None, 0, None, 1]),  # unknown kind
        pack("not an envelope"),
        pack([1, "t", None, 0, None, ext(3, pack(["nobody.Registered", {}]))]),  # unknown class
        pack([1, "t", None, 0, None, ext(-1, b"\x00" * 4)]),  # a msgpack Timestamp
        pack([1, "t", None, 0, None, b"x" * 2000]),  # over max_frame_size
        codec.encode_item(tell("also good")),
    ]
    decoded = codec.decode_items(codec.join_items(items), 4096)
    assert [e.payload for e in decoded if isinstance(e, Envelope)] == ["good", "also good"]
    errors = [e for e in decoded if not isinstance(e, Envelope)]
    assert len(errors) == 5
    assert all(isinstance(e, MalformedFrame) for e in errors[:4])
    assert isinstance(errors[4], FrameTooLarge)
    # The same with a small batch (the one-pass path fails, the walk finds the bad item).
    small = codec.decode_items(codec.join_items([good, items[3], good]), 4096)
    assert [type(e) for e in small] == [Envelope, MalformedFrame, Envelope]


def test_a_truncated_item_refuses_itself_and_what_follows() -> None:
    codec = MsgpackCodec()
    good = codec.encode_item(tell("good"))
    # The header claims three items; the second is cut short, so the third cannot be found.
    batch = b"\x93" + good + good[:-2]
    decoded = codec.decode_items(batch, 4096)
    assert [type(e) for e in decoded] == [Envelope, MalformedFrame, MalformedFrame]


@pytest.mark.parametrize(
    "batch",
    [
        b"",
        b"\x90",  # empty
        b"\xc0",  # not an array
        b"\xdd\xff\xff\xff\xff",  # claims 4 G items
        msgpack.packb([1] * 20),  # more items than allowed
        MsgpackCodec.join_items([MsgpackCodec().encode_item(tell(1))]) + b"\xc0",  # trailing
    ],
)
def test_a_bad_batch_is_refused_whole(batch: bytes) -> None:
    with pytest.raises(MalformedFrame):
        MsgpackCodec().decode_items(batch, 16)


@HOSTILE
@given(body=st.binary(max_size=2000))
def test_any_batch_bytes_raise_only_protocol_errors(body: bytes) -> None:
    codec = MsgpackCodec(max_frame_size=1024)
    for data in (body, b"\x93" + body):
        try:
            decoded = codec.decode_items(data, 64)
        except ProtocolError:
            continue
        assert 0 < len(decoded) <= 64
        assert all(isinstance(e, (Envelope, ProtocolError)) for e in decoded)


def test_plain_envelopes_use_a_cached_head_with_the_same_bytes_and_limits() -> None:
    codec = MsgpackCodec(max_frame_size=100)
    for envelope in (tell(("add", 1)), Envelope(Kind.STOP, "x" * 40), tell(-1, target="y")):
        item = codec.encode_item(envelope)
        assert item == codec.encode_item(envelope)  # from the cache the second time
        assert item == msgpack.packb(
            [int(envelope.kind), envelope.target, None, 0, None, None], use_bin_type=True
        )[:-1] + codec.encode_payload(envelope.payload)
    # The payload alone fits, the frame does not.
    with pytest.raises(FrameTooLarge):
        codec.encode(tell(b"x" * 90, target="t" * 5))
    with pytest.raises(MessageNotSerializable):
        codec.encode_item(Envelope(1, "t"))  # type: ignore[arg-type]
    with pytest.raises(MessageNotSerializable):
        codec.encode_item(Envelope(Kind.TELL, b"t"))  # type: ignore[arg-type]
