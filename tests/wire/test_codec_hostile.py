"""decode(any bytes) raises only ProtocolError: random, mutated and crafted frames."""

from __future__ import annotations

import struct
import tracemalloc
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfactor.abc import Envelope, Kind, RefAddress
from cfactor.errors import (
    FrameTooLarge,
    MalformedFrame,
    MessageNotSerializable,
    ProtocolError,
    UnsupportedVersion,
)
from cfactor.wire import VERSION, MsgpackCodec
from tests.wire.samples import (
    Box,
    FakeRef,
    Point,
    addresses,
    envelope_frame,
    envelopes,
    ext,
    fake_refs,
    frame_of,
    pack,
    payloads,
)

HOSTILE = settings(deadline=None, max_examples=300)

V = bytes([VERSION])


def decode_or_protocol_error(codec: MsgpackCodec, data: bytes) -> None:
    """The property: a decoded envelope, or a ProtocolError; nothing else escapes."""
    try:
        envelope = codec.decode(data)
    except ProtocolError:
        return
    assert isinstance(envelope, Envelope)
    assert isinstance(envelope.kind, Kind)


def malformed(
    data: bytes | bytearray | memoryview, codec: MsgpackCodec | None = None
) -> MalformedFrame:
    codec = MsgpackCodec(make_ref=FakeRef) if codec is None else codec
    with pytest.raises(MalformedFrame) as info:
        codec.decode(data)
    return info.value


def malformed_payload(payload_bytes: bytes, codec: MsgpackCodec | None = None) -> MalformedFrame:
    return malformed(envelope_frame(payload_bytes), codec)


def valid_payload(payload_bytes: bytes) -> Any:
    return MsgpackCodec().decode(envelope_frame(payload_bytes)).payload


# -- hypothesis: random and structured garbage -----------------------------------------


@HOSTILE
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    decode_or_protocol_error(MsgpackCodec(), data)


@HOSTILE
@given(st.binary(max_size=200))
def test_version_byte_then_random_bytes(data: bytes) -> None:
    decode_or_protocol_error(MsgpackCodec(make_ref=FakeRef), V + data)


@HOSTILE
@given(st.binary(max_size=200))
def test_envelope_header_then_random_payload_bytes(data: bytes) -> None:
    decode_or_protocol_error(MsgpackCodec(make_ref=FakeRef), envelope_frame(data))


@HOSTILE
@given(envelopes(payloads(fake_refs)), st.data())
def test_mutated_valid_frames(envelope: Envelope, data: st.DataObject) -> None:
    codec = MsgpackCodec(make_ref=FakeRef)
    frame = bytearray(codec.encode(envelope))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(frame)))
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        byte = data.draw(st.integers(0, 255))
        if action == "flip" and at < len(frame):
            frame[at] = byte
        elif action == "insert":
            frame.insert(at, byte)
        elif at < len(frame):
            del frame[at]
    decode_or_protocol_error(codec, bytes(frame))


# Values a hostile peer can write with plain msgpack: any ext code (our own included,
# with garbage or nested content), maps with odd keys, and the envelope's field types.
raw_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=10)
)


def raw_values() -> st.SearchStrategy[Any]:
    def extend(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        packed = inner.map(pack)
        return (
            st.lists(inner, max_size=4)
            | st.dictionaries(raw_scalars, inner, max_size=3)
            | st.builds(ext, st.integers(-128, 127), st.binary(max_size=12))
            | st.builds(ext, st.sampled_from([1, 2, 3]), packed)
            | st.builds(
                lambda name, fields: ext(3, pack([name, fields])),
                st.sampled_from(["tests.wire.samples.Point", "tests.wire.Box", "x"]),
                st.dictionaries(
                    st.sampled_from(["x", "y", "item", "label", "z"]), inner, max_size=3
                ),
            )
        )

    return st.recursive(raw_scalars, extend, max_leaves=12)


@HOSTILE
@given(st.lists(raw_values(), min_size=0, max_size=8))
def test_envelope_shaped_arrays_of_hostile_values(fields: list[Any]) -> None:
    decode_or_protocol_error(MsgpackCodec(make_ref=FakeRef), frame_of(fields))


@HOSTILE
@given(
    st.sampled_from(Kind),
    st.none() | addresses.map(list),
    st.integers(0, 2**64 - 1),
    raw_values(),
)
def test_valid_headers_with_hostile_payloads(
    kind: Kind, sender: Any, cid: int, payload: Any
) -> None:
    frame = frame_of([int(kind), "target", sender, cid, None, payload])
    decode_or_protocol_error(MsgpackCodec(make_ref=FakeRef), frame)


# -- truncation, trailing bytes, versions, sizes ---------------------------------------

SAMPLE_ENVELOPES = [
    Envelope(Kind.TELL, "counter", None, 0, None, ("add", 1)),
    Envelope(
        Kind.ASK,
        "svc",
        RefAddress("tcp://127.0.0.1:7001", "client", 3),
        99,
        2.5,
        {"refs": [FakeRef(RefAddress("a", "b", 1))], "box": Box((Point(1, 2), b"\x00" * 40))},
    ),
]


@pytest.mark.parametrize("envelope", SAMPLE_ENVELOPES)
def test_every_truncation_is_malformed(envelope: Envelope) -> None:
    codec = MsgpackCodec(make_ref=FakeRef)
    frame = codec.encode(envelope)
    assert codec.decode(frame) == envelope
    for end in range(len(frame)):
        malformed(frame[:end], codec)


def test_empty_frame() -> None:
    assert "empty" in str(malformed(b""))


def test_version_byte_alone() -> None:
    malformed(V)


@pytest.mark.parametrize("extra", [b"\x00", b"\xc0", b"\x96" * 3, V])
def test_trailing_bytes(extra: bytes) -> None:
    codec = MsgpackCodec()
    malformed(codec.encode(SAMPLE_ENVELOPES[0]) + extra, codec)


@pytest.mark.parametrize("version", [0, 2, 0x7F, 0x96, 0xFF])
def test_unknown_version_byte(version: int) -> None:
    frame = MsgpackCodec().encode(SAMPLE_ENVELOPES[0])
    with pytest.raises(UnsupportedVersion, match=f"version {version}"):
        MsgpackCodec().decode(bytes([version]) + frame[1:])


def test_unknown_version_byte_before_garbage() -> None:
    with pytest.raises(UnsupportedVersion):
        MsgpackCodec().decode(b"\x02\xc1\xc1")


def test_oversized_frame_is_refused_before_unpacking() -> None:
    codec = MsgpackCodec(max_frame_size=64)
    ok = codec.encode(Envelope(Kind.TELL, "t", payload=b""))
    frame = codec.encode(Envelope(Kind.TELL, "t", payload=b"x" * (64 - len(ok))))
    assert len(frame) == 64
    codec.decode(frame)
    with pytest.raises(FrameTooLarge):
        codec.decode(frame + b"\x00")
    with pytest.raises(FrameTooLarge):
        codec.decode(b"\xff" * 65)  # garbage too: the size is checked first
    with pytest.raises(FrameTooLarge):
        codec.decode_payload(b"\xc0" * 65)


def test_oversized_frame_at_the_default_limit() -> None:
    frame = V + b"\xc6" + struct.pack(">I", 4 * 1024 * 1024) + b"\x00" * (4 * 1024 * 1024)
    with pytest.raises(FrameTooLarge):
        MsgpackCodec().decode(frame)


# -- wrong shape and field types --------------------------------------------------------

GOOD = [1, "t", None, 0, None, "payload"]


def with_field(index: int, value: Any) -> bytes:
    fields = list(GOOD)
    fields[index] = value
    return frame_of(fields)


def test_good_fields_decode() -> None:
    assert MsgpackCodec().decode(frame_of(GOOD)) == Envelope(Kind.TELL, "t", payload="payload")


@pytest.mark.parametrize("length", [0, 1, 5, 7, 20])
def test_wrong_array_length(length: int) -> None:
    fields = (GOOD * 4)[:length]
    assert "6 fields" in str(malformed(frame_of(fields)))


@pytest.mark.parametrize("body", [None, 1, "frame", b"frame", {"kind": 1}, 1.5])
def test_not_an_array(body: Any) -> None:
    malformed(frame_of(body))


def test_a_tuple_ext_is_not_the_envelope_array() -> None:
    malformed(frame_of(ext(1, pack(GOOD))))


@pytest.mark.parametrize("kind", [0, 6, -1, 255, 2**64 - 1, True, False, 1.0, "1", None, [1]])
def test_unknown_kind(kind: Any) -> None:
    assert "kind" in str(malformed(with_field(0, kind)))


@pytest.mark.parametrize("target", [None, 1, b"t", ["t"], True, ext(1, pack(["t"]))])
def test_target_must_be_a_str(target: Any) -> None:
    assert "target" in str(malformed(with_field(1, target)))


@pytest.mark.parametrize(
    "sender",
    [
        1,
        "a",
        [],
        ["a", "b"],
        ["a", "b", 1, 2],
        [1, "b", 2],
        ["a", b"b", 2],
        ["a", "b", "2"],
        ["a", "b", 2.0],
        ["a", "b", True],
        {"address": "a"},
        ext(2, pack(["a", "b", 1])),  # a ref ext is a payload value, not the sender field
    ],
)
def test_sender_must_be_an_address_array(sender: Any) -> None:
    assert "sender" in str(malformed(with_field(2, sender)))


@pytest.mark.parametrize("cid", [-1, -(2**63), True, 1.0, "1", None, [0]])
def test_correlation_id_must_be_a_non_negative_int(cid: Any) -> None:
    assert "correlation_id" in str(malformed(with_field(3, cid)))


@pytest.mark.parametrize("deadline", [float("nan"), True, "1", b"1", [1.0]])
def test_deadline_must_be_nil_or_a_number(deadline: Any) -> None:
    assert "deadline" in str(malformed(with_field(4, deadline)))


def test_int_deadline_is_read_as_a_float() -> None:
    assert MsgpackCodec().decode(with_field(4, 5)).deadline == 5.0


def test_invalid_utf8() -> None:
    malformed(V + b"\x96\x01\xa2\xff\xfe\xc0\x00\xc0\xc0")


def test_reserved_msgpack_byte() -> None:
    malformed_payload(b"\xc1")


# -- nesting and claimed lengths ----------------------------------------------------------


def test_deeply_nested_arrays() -> None:
    malformed_payload(b"\x91" * 100_000 + b"\xc0")


def test_deeply_nested_maps() -> None:
    malformed_payload(b"\x81\xc0" * 100_000 + b"\xc0")


def test_arrays_nested_to_msgpacks_limit_still_decode() -> None:
    # The envelope is one array, so its payload can nest 1023 more.
    payload = valid_payload(b"\x91" * 1023 + b"\xc0")
    for _ in range(1023):
        assert type(payload) is list
        (payload,) = payload
    assert payload is None


def nested_exts(code: int, levels: int, inner: bytes = b"\x90") -> bytes:
    data = inner
    for _ in range(levels):
        data = pack(ext(code, b"\x91" + data if code == 1 else data))
    return data


def test_a_thousand_nested_tuple_exts() -> None:
    assert "max_depth" in str(malformed_payload(nested_exts(1, 1000)))


def test_a_thousand_nested_exts_with_no_array_between() -> None:
    # A tuple ext whose content is directly the next ext (not an array): still bounded.
    data = b"\xc0"
    for _ in range(1000):
        data = pack(ext(1, data))
    malformed_payload(data)


def test_ext_nesting_is_bounded_by_max_depth_exactly() -> None:
    for max_depth in (0, 1, 5, 32):
        codec = MsgpackCodec(max_depth=max_depth)
        ok = codec.decode(envelope_frame(nested_exts(1, max_depth, b"\x90"))).payload
        for _ in range(max_depth):
            assert type(ok) is tuple
            (ok,) = ok
        assert ok == []
        malformed_payload(nested_exts(1, max_depth + 1), codec)


def test_nested_messages_are_bounded_too() -> None:
    deep = MsgpackCodec(max_depth=64).encode_payload(_nest_boxes(60))
    assert MsgpackCodec(max_depth=64).decode_payload(deep) == _nest_boxes(60)
    assert MsgpackCodec(max_depth=60).decode_payload(deep) == _nest_boxes(60)
    with pytest.raises(MalformedFrame, match="max_depth"):
        MsgpackCodec(max_depth=59).decode_payload(deep)


def _nest_boxes(levels: int) -> Any:
    value: Any = "core"
    for _ in range(levels):
        value = Box(value)
    return value


CLAIMS = {
    "array32": b"\xdd\xff\xff\xff\xff",
    "map32": b"\xdf\xff\xff\xff\xff",
    "bin32": b"\xc6\xff\xff\xff\xff",
    "str32": b"\xdb\xff\xff\xff\xff",
    "ext32": b"\xc9\xff\xff\xff\xff\x01",
    "array16": b"\xdc\xff\xff",
    "map16": b"\xde\xff\xff",
}


@pytest.mark.parametrize("header", CLAIMS.values(), ids=CLAIMS.keys())
def test_claimed_lengths_do_not_allocate(header: bytes) -> None:
    frames = [
        envelope_frame(header + b"\x00" * 16),
        V + header + b"\x00" * 16,
        # Inside a tuple ext: its data is bounded by its own (small) length.
        envelope_frame(pack(ext(1, header + b"\x00" * 16))),
        envelope_frame(pack(ext(1, b"\x91" + pack(ext(1, header + b"\xc0" * 16))))),
    ]
    tracemalloc.start()
    try:
        for frame in frames:
            malformed(frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024


def test_claimed_lengths_inside_a_large_frame_stay_bounded() -> None:
    # 1 MiB of padding lets msgpack accept claims up to 1 MiB, not 4 GiB.
    frame = envelope_frame(b"\x92" + CLAIMS["array32"] + b"\xc4\x00") + b"\x00" * (1 << 20)
    malformed(frame)


# -- ext values ---------------------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 4, 5, 42, 127, -2, -128])
def test_unknown_ext_codes(code: int) -> None:
    assert f"ext type code {code}" in str(malformed_payload(pack(ext(code, b"\xc0"))))


TIMESTAMPS = {
    "fixext4": b"\xd6\xff" + b"\x00" * 4,
    "fixext8": b"\xd7\xff" + b"\x00" * 8,
    "ext8-12": b"\xc7\x0c\xff" + b"\x00" * 12,
    "ext8-4": b"\xc7\x04\xff" + b"\x00" * 4,
    "ext16-8": b"\xc8\x00\x08\xff" + b"\x00" * 8,
    "ext32-12": b"\xc9\x00\x00\x00\x0c\xff" + b"\x00" * 12,
    "bad-length": b"\xc7\x03\xff" + b"\x00" * 3,
}


@pytest.mark.parametrize("stamp", TIMESTAMPS.values(), ids=TIMESTAMPS.keys())
def test_msgpack_timestamps_are_not_part_of_the_format(stamp: bytes) -> None:
    malformed_payload(stamp)
    malformed_payload(b"\x92\x01" + stamp)  # in an array
    malformed_payload(b"\x81" + stamp + b"\x01")  # as a map key
    malformed_payload(b"\x81\x01" + stamp)  # as a map value
    malformed_payload(pack(ext(1, b"\x91" + stamp)))  # in a tuple
    malformed_payload(pack(ext(1, stamp)))  # as a tuple's whole content
    box = pack(ext(3, b"\x92" + pack("tests.wire.Box") + b"\x81" + pack("item") + stamp))
    malformed_payload(box)  # as a message field
    malformed(V + stamp)
    with pytest.raises(MalformedFrame):
        MsgpackCodec().decode_payload(stamp)


def test_timestamp_in_the_header() -> None:
    malformed(V + b"\x96\x01\xa1t\xc0\x00" + TIMESTAMPS["fixext8"] + b"\xc0")


@pytest.mark.parametrize("padding", [0, 600, 2000, 10_000])
def test_timestamp_in_frames_of_every_size(padding: int) -> None:
    # Small frames are screened by a byte pattern, larger ones value by value, big
    # ones through a memoryview: every path must find the timestamp.
    for stamp in TIMESTAMPS.values():
        malformed_payload(b"\x92" + pack(b"\xff" * padding) + stamp)
        malformed_payload(b"\x92" + stamp + pack(b"\x00" * padding))
        malformed(memoryview(envelope_frame(b"\x92" + pack(b"\x00" * padding) + stamp)))
        with pytest.raises(MalformedFrame):
            MsgpackCodec().decode_payload(b"\x92" + pack(b"\xff" * padding) + stamp)


@pytest.mark.parametrize("padding", [0, 600, 2000, 10_000])
def test_timestamps_refused_by_encode_at_every_size(padding: int) -> None:
    codec = MsgpackCodec()
    for filler in (b"\x00" * padding, b"\xff" * padding, [-1] * (padding // 10)):
        with pytest.raises(MessageNotSerializable):
            codec.encode(Envelope(Kind.TELL, "t", payload=(filler, msgpack.Timestamp(1, 2))))
        sent = Envelope(Kind.TELL, "t", payload=(filler, b"\xd6\xff", -1))
        assert codec.decode(codec.encode(sent)) == sent


def test_timestamp_lookalikes_decode() -> None:
    payload = valid_payload(pack([0x04FF, -1, b"\xd6\xff\x00\x00\x00\x00", [255, 0xFF]]))
    assert payload == [0x04FF, -1, b"\xd6\xff\x00\x00\x00\x00", [255, 255]]


@pytest.mark.parametrize(
    "content",
    [b"", b"\xc0", pack({"a": 1}), pack(1), pack("x"), b"\x91", b"\x90\x90", b"\xc1"],
)
def test_bad_tuple_content(content: bytes) -> None:
    malformed_payload(pack(ext(1, content)))


@pytest.mark.parametrize(
    "content",
    [
        b"",
        pack(None),
        pack(["a", "b"]),
        pack(["a", "b", 1, 2]),
        pack([1, "b", 1]),
        pack(["a", None, 1]),
        pack(["a", "b", "1"]),
        pack(["a", "b", True]),
        pack(["a", "b", 1.0]),
        pack({"address": "a", "name": "b", "uid": 1}),
        pack(["a", "b", 1]) + b"\x00",
    ],
)
def test_bad_ref_content(content: bytes) -> None:
    malformed_payload(pack(ext(2, content)))


def test_good_ref_content() -> None:
    assert valid_payload(pack(ext(2, pack(["a", "b", 1])))) == RefAddress("a", "b", 1)


def message_ext(name: Any, fields: Any) -> bytes:
    return pack(ext(3, pack([name, fields])))


POINT = "tests.wire.samples.Point"


def test_good_message_content() -> None:
    assert valid_payload(message_ext(POINT, {"x": 1, "y": 2})) == Point(1, 2)


@pytest.mark.parametrize(
    "content",
    [
        message_ext(POINT, {"x": 1}),  # a missing field
        message_ext(POINT, {"x": 1, "y": 2, "z": 3}),  # an extra field
        message_ext(POINT, {"x": 1, "y": 2, "size": 3}),
        message_ext(POINT, {1: 1, "y": 2}),  # a key that is not a str
        message_ext(POINT, {b"x": 1, "y": 2}),
        message_ext(POINT, []),
        message_ext(POINT, None),
        message_ext(b"tests.wire.samples.Point", {"x": 1, "y": 2}),
        message_ext(None, {}),
        message_ext("no.such.Message", {}),
        message_ext("", {}),
        pack(ext(3, pack([POINT]))),
        pack(ext(3, pack([POINT, {"x": 1, "y": 2}, 3]))),
        pack(ext(3, pack(POINT))),
        pack(ext(3, b"")),
        message_ext("tests.wire.Box", {"item": 1, "size": 5}),  # size is not an init field
        message_ext("tests.wire.samples.Picky", {"n": -1}),  # __post_init__ refuses it
        message_ext("tests.wire.samples.Order", {"sku": "x", "quantity": 1, "extra": 0}),
    ],
)
def test_bad_message_content(content: bytes) -> None:
    malformed_payload(content)


def test_unknown_message_names_are_explained() -> None:
    error = malformed_payload(message_ext("shop.Order", {}))
    assert "unknown message type 'shop.Order'" in str(error)
    assert "@cfactor.wire.message" in str(error)


def test_constructor_errors_are_the_cause() -> None:
    error = malformed_payload(message_ext(POINT, {"x": 1}))
    assert isinstance(error.__cause__, TypeError)


def test_unhashable_map_keys() -> None:
    malformed_payload(b"\x81" + pack([1]) + pack(2))  # a list as a key
    malformed_payload(b"\x81" + pack({"a": 1}) + pack(2))  # a map as a key
    box = message_ext("tests.wire.Box", {"item": 1})  # Box is not frozen: unhashable
    malformed_payload(b"\x81" + box + pack(2))
    malformed_payload(b"\x81" + pack(ext(1, pack([[1]]))) + pack(2))  # a tuple holding a list


def test_hashable_non_string_keys_decode() -> None:
    data = (
        b"\x84"
        + pack(1)
        + pack("int")
        + pack(ext(1, pack([1, 2])))
        + pack("tuple")
        + message_ext(POINT, {"x": 1, "y": 2})
        + pack("point")
        + pack(None)
        + pack("nil")
    )
    assert valid_payload(data) == {1: "int", (1, 2): "tuple", Point(1, 2): "point", None: "nil"}


def test_make_ref_errors_become_malformed_frames() -> None:
    def refuse(address: RefAddress) -> Any:
        raise RuntimeError(f"no route to {address.address}")

    for error in (RuntimeError, MemoryError, RecursionError, KeyError):

        def fail(address: RefAddress, error: type[BaseException] = error) -> Any:
            raise error(address)

        frame = envelope_frame(pack(ext(2, pack(["a", "b", 1]))))
        with pytest.raises(MalformedFrame) as info:
            MsgpackCodec(make_ref=fail).decode(frame)
        assert type(info.value.__cause__) is error
    with pytest.raises(MalformedFrame, match="no route to a"):
        MsgpackCodec(make_ref=refuse).decode(envelope_frame(pack(ext(2, pack(["a", "b", 1])))))


# -- inputs that are not bytes -------------------------------------------------------------


def test_non_contiguous_memoryview() -> None:
    frame = MsgpackCodec().encode(SAMPLE_ENVELOPES[0])
    doubled = bytes(b for byte in frame for b in (byte, 0))
    with pytest.raises(MalformedFrame):
        MsgpackCodec().decode(memoryview(doubled)[::2])


def test_memoryview_of_wider_items() -> None:
    frame = MsgpackCodec().encode(SAMPLE_ENVELOPES[0])
    padded = frame + b"\x00" * (-len(frame) % 4)
    view = memoryview(padded).cast("I")
    # Read as bytes, whatever the item size: here the padding makes it trailing data.
    if len(padded) == len(frame):
        assert MsgpackCodec().decode(view) == SAMPLE_ENVELOPES[0]
    else:
        malformed(view)


def test_decode_payload_rejects_garbage() -> None:
    codec = MsgpackCodec()
    for data in (b"", b"\xc1", b"\x91", b"\x01\x02", pack(ext(9, b""))):
        with pytest.raises(MalformedFrame):
            codec.decode_payload(data)


def test_large_memoryview_frames() -> None:
    codec = MsgpackCodec()
    envelope = Envelope(Kind.TELL, "t", payload=(b"\xff" * 10_000, -1))
    frame = codec.encode(envelope)
    assert codec.decode(memoryview(frame)) == envelope
    assert codec.decode_payload(memoryview(codec.encode_payload((1, b"\xd6\xff")))) == (
        1,
        b"\xd6\xff",
    )
    malformed(memoryview(frame)[:-1])


def test_unprintable_errors_from_user_code() -> None:
    class UnprintableError(Exception):
        def __str__(self) -> str:
            raise RuntimeError("cannot print me")

    def fail(address: RefAddress) -> Any:
        raise UnprintableError

    with pytest.raises(MalformedFrame, match="unprintable"):
        MsgpackCodec(make_ref=fail).decode(envelope_frame(pack(ext(2, pack(["a", "b", 1])))))
