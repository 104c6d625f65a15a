"""Round trips, encode errors and the message registry of the wire codec."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgpack
import pytest
from hypothesis import given, settings

import cfactor.wire
from cfactor.abc import Codec, Envelope, Kind, RefAddress
from cfactor.errors import (
    ConfigError,
    FrameTooLarge,
    MalformedFrame,
    MessageNotSerializable,
    ProtocolError,
)
from cfactor.wire import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_FRAME_SIZE,
    VERSION,
    MessageRegistry,
    MsgpackCodec,
    default_registry,
    message,
)
from tests.wire.samples import (
    Box,
    FakeRef,
    Order,
    Picky,
    Point,
    addresses,
    envelopes,
    fake_refs,
    payloads,
    same,
    same_envelope,
)

ROUND_TRIP = settings(deadline=None, max_examples=300)

ADDRESS = RefAddress("tcp://127.0.0.1:7001", "counter", 7)


def tell(payload: Any, **fields: Any) -> Envelope:
    return Envelope(Kind.TELL, "counter", payload=payload, **fields)


def round_trip(payload: Any, codec: MsgpackCodec | None = None) -> Any:
    codec = MsgpackCodec() if codec is None else codec
    return codec.decode(codec.encode(tell(payload))).payload


# -- round trips ----------------------------------------------------------------------


def test_codec_satisfies_the_codec_protocol() -> None:
    codec: Codec = MsgpackCodec()
    envelope = Envelope(Kind.ASK, "counter", ADDRESS, 42, 1.5, ("add", 1))
    assert codec.decode(codec.encode(envelope)) == envelope


def test_frame_starts_with_the_version_byte() -> None:
    frame = MsgpackCodec().encode(tell("get"))
    assert frame[0] == VERSION == 1
    assert msgpack.unpackb(frame[1:]) == [1, "counter", None, 0, None, "get"]


def test_defaults() -> None:
    codec = MsgpackCodec()
    assert codec.max_frame_size == DEFAULT_MAX_FRAME_SIZE == 4 * 1024 * 1024
    assert codec.max_depth == DEFAULT_MAX_DEPTH == 32
    assert repr(codec) == "<MsgpackCodec version=1 max_frame_size=4194304 max_depth=32>"


@ROUND_TRIP
@given(envelopes(payloads(addresses)))
def test_round_trip_without_make_ref(envelope: Envelope) -> None:
    codec = MsgpackCodec()
    decoded = codec.decode(codec.encode(envelope))
    assert same_envelope(decoded, envelope)


@ROUND_TRIP
@given(envelopes(payloads(fake_refs)))
def test_round_trip_with_make_ref(envelope: Envelope) -> None:
    codec = MsgpackCodec(make_ref=FakeRef)
    decoded = codec.decode(codec.encode(envelope))
    assert same_envelope(decoded, envelope)


@ROUND_TRIP
@given(payloads(fake_refs))
def test_payload_helpers_round_trip(payload: Any) -> None:
    codec = MsgpackCodec(make_ref=FakeRef)
    assert same(codec.decode_payload(codec.encode_payload(payload)), payload)


def test_one_codec_round_trips_many_envelopes_in_turn() -> None:
    # The packers are reused between calls; nothing may leak from one frame to the next.
    codec = MsgpackCodec(make_ref=FakeRef)
    sent = [
        tell(("add", i), correlation_id=i, sender=ADDRESS if i % 2 else None) for i in range(100)
    ]
    sent.append(tell([Box((1, [2, (3,)]), "x"), {(1, 2): FakeRef(ADDRESS)}]))
    frames = [codec.encode(envelope) for envelope in sent]
    for frame, envelope in zip(frames, sent, strict=True):
        assert same_envelope(codec.decode(frame), envelope)


def test_tuples_stay_tuples_and_lists_stay_lists() -> None:
    payload: Any = ("add", [1, (2, [3])], (), [], {"k": (4,)})
    assert same(round_trip(payload), payload)


def test_maps_keep_non_string_keys() -> None:
    payload = {1: "int", (1, 2): "tuple", b"raw": "bytes", None: "nil", 2.5: "float"}
    assert same(round_trip(payload), payload)


def test_refs_decode_to_addresses_without_make_ref() -> None:
    assert same(round_trip(FakeRef(ADDRESS)), ADDRESS)
    assert same(round_trip([ADDRESS]), [ADDRESS])


def test_refs_decode_through_make_ref() -> None:
    made: list[RefAddress] = []

    def make_ref(address: RefAddress) -> FakeRef:
        made.append(address)
        return FakeRef(address)

    codec = MsgpackCodec(make_ref=make_ref)
    assert round_trip(("reply-to", FakeRef(ADDRESS)), codec) == ("reply-to", FakeRef(ADDRESS))
    assert made == [ADDRESS]
    assert type(made[0]) is RefAddress


def test_the_sender_is_decoded_as_a_ref_address() -> None:
    codec = MsgpackCodec(make_ref=FakeRef)
    decoded = codec.decode(codec.encode(tell("x", sender=ADDRESS)))
    assert type(decoded.sender) is RefAddress
    assert decoded.sender == ADDRESS


def test_an_int_deadline_arrives_as_a_float() -> None:
    codec = MsgpackCodec()
    decoded = codec.decode(codec.encode(tell("x", deadline=3)))
    assert type(decoded.deadline) is float
    assert decoded.deadline == 3.0


def test_infinite_deadline_and_negative_budget_are_carried() -> None:
    codec = MsgpackCodec()
    for deadline in (float("inf"), -0.5, 0.0):
        assert codec.decode(codec.encode(tell("x", deadline=deadline))).deadline == deadline


def test_registered_dataclasses_round_trip() -> None:
    payload = [Point(1, 2), Order(sku="A-1", quantity=3), Box(Point(3, 4), "label")]
    decoded = round_trip(payload)
    assert same(decoded, payload)
    assert decoded[2].size == 5


def test_only_init_fields_travel() -> None:
    codec = MsgpackCodec()
    box = Box("item", "abc")
    box.size = 1000  # not an init field: not sent, recomputed by __post_init__
    data = codec.encode_payload(box)
    assert b"size" not in data
    decoded = codec.decode_payload(data)
    assert decoded.size == 3


def test_bytes_like_values_arrive_as_bytes() -> None:
    assert same(round_trip([bytearray(b"ab"), memoryview(b"cd")]), [b"ab", b"cd"])


def test_decode_accepts_bytearray_and_memoryview() -> None:
    codec = MsgpackCodec()
    envelope = tell(("add", 1))
    frame = codec.encode(envelope)
    assert codec.decode(bytearray(frame)) == envelope
    assert codec.decode(memoryview(frame)) == envelope
    padded = b"xx" + frame + b"yy"
    assert codec.decode(memoryview(padded)[2:-2]) == envelope


def test_large_frames_round_trip_and_leave_the_codec_lean() -> None:
    codec = MsgpackCodec()
    big = tell((b"x" * (1024 * 1024), [b"y" * 300_000]))
    frame = codec.encode(big)
    assert codec.decode(frame) == big
    assert codec.decode(codec.encode(tell(("add", 1)))) == tell(("add", 1))


def test_nesting_up_to_max_depth_round_trips() -> None:
    codec = MsgpackCodec(max_depth=3)
    payload: Any = ((("deep",),),)
    assert same(round_trip(payload, codec), payload)
    assert same(round_trip(Box((FakeRef(ADDRESS),)), codec), Box((ADDRESS,)))


# -- encode errors --------------------------------------------------------------------


class Color(enum.IntEnum):
    RED = 1


class Pair(NamedTuple):
    a: int
    b: int


class Plain:
    pass


@dataclass
class Unregistered:
    x: int


def encode_error(payload: Any, codec: MsgpackCodec | None = None) -> MessageNotSerializable:
    codec = MsgpackCodec() if codec is None else codec
    with pytest.raises(MessageNotSerializable) as info:
        codec.encode(tell(payload))
    return info.value


@pytest.mark.parametrize(
    ("payload", "type_name"),
    [
        ({1, 2}, "set"),
        (frozenset({1}), "frozenset"),
        ([{"nested": {1}}], "set"),
        (Plain(), "test_codec.Plain"),
        (Unregistered(1), "test_codec.Unregistered"),
        (Color.RED, "test_codec.Color"),
        (Pair(1, 2), "test_codec.Pair"),
        (object(), "object"),
        (dt.datetime(2024, 1, 1, tzinfo=dt.UTC), "datetime.datetime"),
        (1j, "complex"),
        (Plain, "type"),
    ],
)
def test_unsupported_types_are_named(payload: Any, type_name: str) -> None:
    error = encode_error(payload)
    assert f"'{type_name}'" in str(error) or f".{type_name}'" in str(error)
    assert "over the wire" in str(error)


def test_the_messages_point_at_the_fix() -> None:
    assert "list or tuple" in str(encode_error({1}))
    assert "@cfactor.wire.message" in str(encode_error(Unregistered(1)))
    assert "@cfactor.wire.message" in str(encode_error(Plain()))
    assert "subclass of int" in str(encode_error(Color.RED))


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, 10**100, -(10**100)])
def test_ints_beyond_64_bits(value: int) -> None:
    assert "64 bits" in str(encode_error(("n", value)))


def test_ints_at_the_64_bit_edges_round_trip() -> None:
    payload = (2**64 - 1, -(2**63), 2**63, -1, 0)
    assert same(round_trip(payload), payload)


def test_not_serializable_is_a_protocol_error_and_a_type_error() -> None:
    error = encode_error({1})
    assert isinstance(error, ProtocolError)
    assert isinstance(error, TypeError)


def test_deep_list_nesting() -> None:
    deep: Any = None
    for _ in range(2000):
        deep = [deep]
    error = encode_error(deep)
    assert isinstance(error.__cause__, ValueError)


def test_cycles() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    encode_error(cycle)
    looped: dict[str, Any] = {}
    looped["self"] = looped
    encode_error(looped)


def test_tuples_nested_beyond_max_depth() -> None:
    deep: Any = "x"
    for _ in range(1000):
        deep = (deep,)
    assert "max_depth=32" in str(encode_error(deep))


def test_encode_honours_max_depth_exactly() -> None:
    codec = MsgpackCodec(max_depth=3)
    encode_error(((((1,),),),), codec)
    encode_error(Box(((FakeRef(ADDRESS),),)), codec)
    codec.encode(tell((((1,),),)))


def test_self_referencing_message() -> None:
    box = Box(None)
    box.item = box
    encode_error(box)


def test_lone_surrogates() -> None:
    encode_error("\ud800")


def test_timestamps_are_refused() -> None:
    assert "Timestamp" in str(encode_error(msgpack.Timestamp(1, 0)))
    encode_error([1, {"at": (msgpack.Timestamp(2**40, 5),)}])
    encode_error(Box([msgpack.Timestamp(0, 0)]))


def test_bytes_that_look_like_a_timestamp_are_fine() -> None:
    payload = (b"\xd6\xff\x00\x00\x00\x01", 0x04FF, -1, "\xff")
    assert same(round_trip(payload), payload)


@pytest.mark.parametrize(
    "envelope",
    [
        Envelope(1, "t"),  # type: ignore[arg-type]
        Envelope(Kind.TELL, b"t"),  # type: ignore[arg-type]
        Envelope(Kind.TELL, "t", correlation_id=-1),
        Envelope(Kind.TELL, "t", correlation_id=True),
        Envelope(Kind.TELL, "t", correlation_id=2**64),
        Envelope(Kind.TELL, "t", deadline=float("nan")),
        Envelope(Kind.TELL, "t", deadline="soon"),  # type: ignore[arg-type]
        Envelope(Kind.TELL, "t", deadline=True),
        Envelope(Kind.TELL, "t", sender=("a", "b")),  # type: ignore[arg-type]
        Envelope(Kind.TELL, "t", sender=RefAddress("a", "b", "c")),  # type: ignore[arg-type]
        Envelope(Kind.TELL, "t", sender=RefAddress("a", "b", 2**64)),
    ],
)
def test_bad_envelope_fields(envelope: Envelope) -> None:
    with pytest.raises(MessageNotSerializable):
        MsgpackCodec().encode(envelope)


def test_a_ref_whose_address_is_not_an_address() -> None:
    class Bad:
        def __cfactor_address__(self) -> Any:
            return "tcp://x"

    assert "RefAddress" in str(encode_error(Bad()))


def test_frame_over_max_size() -> None:
    codec = MsgpackCodec(max_frame_size=100)
    base = len(codec.encode(tell(b"")))
    # bin8 holds up to 255 bytes with the same 2-byte header, so each byte adds one.
    assert len(codec.encode(tell(b"x" * (100 - base)))) == 100
    with pytest.raises(FrameTooLarge):
        codec.encode(tell(b"x" * (101 - base)))
    with pytest.raises(FrameTooLarge):
        codec.encode(tell(("nested", [b"x" * 200])))
    with pytest.raises(FrameTooLarge):
        codec.encode_payload(b"x" * 200)


def test_frame_over_the_default_max_size() -> None:
    with pytest.raises(FrameTooLarge):
        MsgpackCodec().encode(tell(b"x" * DEFAULT_MAX_FRAME_SIZE))


def test_the_codec_still_works_after_errors() -> None:
    codec = MsgpackCodec(max_frame_size=1000)
    failures: list[Any] = [
        ("ok", {1}),
        ((("a", b"x" * 2000),),),
        [Box(Plain())],
        (1, 2**70),
    ]
    for payload in failures:
        with pytest.raises(ProtocolError):
            codec.encode(tell(payload))
        assert codec.decode(codec.encode(tell((("add", 1),)))) == tell((("add", 1),))


# -- registry -------------------------------------------------------------------------


def test_default_names_are_module_and_qualname() -> None:
    assert default_registry.name_of(Point) == "tests.wire.samples.Point"
    assert default_registry.lookup("tests.wire.samples.Point") is Point
    assert default_registry.name_of(Box) == "tests.wire.Box"
    assert default_registry.name_of(Plain) is None
    assert default_registry.lookup("nope") is None


def test_message_is_exported_from_the_package() -> None:
    assert cfactor.wire.message is message
    assert cfactor.wire.default_registry is default_registry


def test_register_without_and_with_a_name() -> None:
    registry = MessageRegistry()

    @message(registry=registry)
    @dataclass
    class A:
        x: int

    @message(name="custom.B", registry=registry)
    @dataclass
    class B:
        y: str

    assert registry.name_of(A) == f"{__name__}.{A.__qualname__}"
    assert registry.name_of(B) == "custom.B"
    assert registry.lookup("custom.B") is B
    assert len(registry) == 2
    assert repr(registry) == "<MessageRegistry messages=2>"
    assert default_registry.name_of(A) is None


def test_the_wire_carries_the_registered_name() -> None:
    registry = MessageRegistry()

    @message(name="shop.Order", registry=registry)
    @dataclass
    class ShopOrder:
        sku: str

    data = MsgpackCodec(registry=registry).encode_payload(ShopOrder("a"))
    assert b"shop.Order" in data
    assert b"ShopOrder" not in data


def test_a_class_can_be_registered_twice_under_one_name() -> None:
    registry = MessageRegistry()

    @dataclass
    class A:
        x: int

    assert registry.register(A, name="a") is A
    assert registry.register(A, name="a") is A


def test_two_classes_under_one_name() -> None:
    registry = MessageRegistry()

    @message(name="dup", registry=registry)
    @dataclass
    class A:
        x: int

    @dataclass
    class B:
        x: int

    with pytest.raises(ValueError, match="dup"):
        message(name="dup", registry=registry)(B)
    assert registry.lookup("dup") is A


def test_one_class_under_two_names() -> None:
    registry = MessageRegistry()

    @dataclass
    class A:
        x: int

    registry.register(A, name="first")
    with pytest.raises(ValueError, match="first"):
        registry.register(A, name="second")


@pytest.mark.parametrize("target", [Plain, Pair, int, Point(1, 2), "Point"])
def test_only_dataclasses_can_be_registered(target: Any) -> None:
    with pytest.raises(TypeError, match="only dataclasses"):
        MessageRegistry().register(target)


def test_message_below_dataclass_is_explained() -> None:
    with pytest.raises(TypeError, match="above @dataclass"):

        @dataclass
        @message(registry=MessageRegistry())
        class A:
            x: int


@pytest.mark.parametrize(("name", "error"), [("", ValueError), (42, TypeError)])
def test_bad_names(name: Any, error: type[Exception]) -> None:
    @dataclass
    class A:
        x: int

    with pytest.raises(error):
        MessageRegistry().register(A, name=name)


def test_classes_registered_after_the_codec_was_made_are_known() -> None:
    registry = MessageRegistry()
    codec = MsgpackCodec(registry=registry)

    @dataclass(frozen=True)
    class Late:
        x: int

    encode_error(Late(1), codec)
    registry.register(Late, name="late")
    assert round_trip(Late(1), codec) == Late(1)


def test_a_codec_only_knows_its_own_registry() -> None:
    registry = MessageRegistry()
    mine = MsgpackCodec(registry=registry)
    encode_error(Point(1, 2), mine)
    data = MsgpackCodec().encode_payload(Point(1, 2))
    with pytest.raises(MalformedFrame, match=r"unknown message type 'tests\.wire\.samples\.Point'"):
        mine.decode_payload(data)


def test_validation_in_post_init_applies_to_data_from_the_wire() -> None:
    codec = MsgpackCodec()
    assert round_trip(Picky(1)) == Picky(1)
    sent = Picky(1)
    sent.n = -1  # mutated after construction: the receiver validates again
    with pytest.raises(MalformedFrame, match="n must not be negative"):
        codec.decode(codec.encode(tell(sent)))


def test_order_is_kw_only_and_has_slots() -> None:
    # A kw_only, slots dataclass still travels: fields are passed by name.
    assert round_trip(Order(sku="x")) == Order(sku="x")


# -- configuration --------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_frame_size": 0},
        {"max_frame_size": -1},
        {"max_frame_size": 1.5},
        {"max_frame_size": True},
        {"max_depth": -1},
        {"max_depth": 65},
        {"max_depth": True},
        {"max_depth": "3"},
    ],
)
def test_bad_configuration(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        MsgpackCodec(**kwargs)


def test_max_depth_zero_allows_no_ext_values() -> None:
    codec = MsgpackCodec(max_depth=0)
    assert round_trip([1, {"a": b"b"}], codec) == [1, {"a": b"b"}]
    encode_error((1,), codec)


def test_default_factory_fields_travel() -> None:
    registry = MessageRegistry()

    @message(name="bag", registry=registry)
    @dataclass
    class Bag:
        items: list[int] = field(default_factory=list)

    codec = MsgpackCodec(registry=registry)
    assert round_trip(Bag([1, 2]), codec) == Bag([1, 2])
    assert round_trip(Bag(), codec) == Bag()
