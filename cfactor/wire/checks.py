"""The codec's checks, and the words of its refusals.

What a decoded frame must look like (``envelope_of``: exactly one wire type per field),
what an envelope to encode must hold (``check_header``, the slow path of ``encode``),
ref addresses both ways, the guards against msgpack's Timestamp (ext type -1, not part
of the wire format), a frame's byte buffer and a batch's item count, and the text of
each ``MessageNotSerializable`` or ``MalformedFrame`` (short and safe to log: hostile
frames may hold megabyte strings). Pure functions of values, called by
``MsgpackCodec`` (``cfactor/wire/codec.py``); the frame layout is described there.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Final

import msgpack

from cfactor.abc import Envelope, Kind, RefAddress
from cfactor.errors import MalformedFrame, MessageNotSerializable

KINDS: Final[dict[int, Kind]] = {int(kind): kind for kind in Kind}
# Built as the plain tuple a RefAddress is (its namedtuple __new__ costs more).
_new_tuple: Final = tuple.__new__
_Timestamp: Final = msgpack.Timestamp

# A received frame longer than this is read through a memoryview rather than copied
# (to drop its version byte, or out of a caller's view).
COPY_LIMIT: Final = 4096

# msgpack turns ext type -1 into ``msgpack.Timestamp`` inside the C unpacker, without
# calling our ext hook, and packs a Timestamp without calling ``default``. Either way
# the bytes then hold the type byte 0xff right after a fixext4/fixext8 header or a
# length of 4, 8 or 12. A memchr for 0xff clears most frames; a small frame that has
# one is cleared by this pattern. A large one is checked value by value instead: re
# scans at about 3 ns per byte, slower than the checks themselves.
TIMESTAMP_HINT: Final = re.compile(rb"[\x04\x08\x0c\xd6\xd7]\xff")
HINT_LIMIT: Final = 1024

# Builtins that the packer (with strict types) only takes exactly: a subclass such as
# an IntEnum or a NamedTuple would arrive as its base type, so it is refused instead.
NATIVE_TYPES: Final = (int, float, str, bytes, bytearray, list, dict, tuple)


def byte_buffer(frame: Any) -> bytes | bytearray | memoryview:
    # len() and [0] of a memoryview count items, not bytes, unless it is a flat view
    # of unsigned bytes; cast makes it one without copying. A small view is copied
    # after all: that is cheaper than what reading it through the view costs later.
    if type(frame) is bytearray:
        return frame
    try:
        view = memoryview(frame).cast("B")
    except (TypeError, ValueError) as exc:
        raise MalformedFrame(f"a frame must be a contiguous bytes-like object: {exc}") from exc
    return bytes(view) if len(view) <= COPY_LIMIT else view


def array_count(data: bytes) -> int:
    # The item count a msgpack array header claims, or -1 if ``data`` does not start
    # with one: read before unpacking, so a huge claim costs nothing.
    if not data:
        return -1
    first = data[0]
    if 0x90 <= first <= 0x9F:
        return first & 0x0F
    if first == 0xDC and len(data) >= 3:
        return int.from_bytes(data[1:3], "big")
    if first == 0xDD and len(data) >= 5:
        return int.from_bytes(data[1:5], "big")
    return -1


def bad_ext(depth: int, code: int, max_depth: int) -> MalformedFrame:
    if depth > max_depth:
        return MalformedFrame(f"tuples, refs or messages nested deeper than max_depth={max_depth}")
    return MalformedFrame(f"unknown ext type code {code}")


def envelope_of(fields: Any) -> Envelope:
    # Checks the shape of a decoded frame strictly: every field has exactly one
    # type on the wire (a bool is not an int here, though Python says it is).
    if type(fields) is not list or len(fields) != 6:
        raise MalformedFrame(
            "a frame must hold an array of 6 fields "
            "[kind, target, sender, correlation_id, deadline, payload], "
            f"not {describe(fields)}"
        )
    kind, target, sender, cid, deadline, payload = fields
    wire_kind = KINDS.get(kind) if type(kind) is int else None
    if wire_kind is None:
        raise MalformedFrame(f"unknown envelope kind {describe(kind)}")
    if type(target) is not str:
        raise MalformedFrame(f"envelope target must be a str, not {describe(target)}")
    if sender is not None:
        sender = ref_address(sender, "envelope sender")
    if type(cid) is not int or cid < 0:
        raise MalformedFrame(f"correlation_id must be an int >= 0, not {describe(cid)}")
    if deadline is not None:
        if type(deadline) is int:
            deadline = float(deadline)
        elif type(deadline) is not float or math.isnan(deadline):
            raise MalformedFrame(f"deadline must be nil or a number, not {describe(deadline)}")
    return Envelope(wire_kind, target, sender, cid, deadline, payload)


def check_header(envelope: Envelope) -> float | None:
    # The slow path of ``encode``: find what is wrong with the header, or convert
    # an int deadline to the float the wire carries.
    if type(envelope.kind) is not Kind:
        raise MessageNotSerializable(
            f"envelope kind must be a cfactor.abc.Kind, not {describe(envelope.kind)}"
        )
    if type(envelope.target) is not str:
        raise MessageNotSerializable(
            f"envelope target must be a str, not {type(envelope.target).__name__}"
        )
    cid = envelope.correlation_id
    if type(cid) is not int or cid < 0:
        raise MessageNotSerializable(f"correlation_id must be an int >= 0, not {describe(cid)}")
    deadline = envelope.deadline
    if deadline is None:
        return None
    if type(deadline) is int:
        return float(deadline)
    if type(deadline) is not float or math.isnan(deadline):
        raise MessageNotSerializable(
            f"deadline must be None or a number of seconds, not {describe(deadline)}"
        )
    return deadline


def ref_fields(address: Any) -> list[Any]:
    # A ref's address as the wire carries it. Checked here, where the error can name
    # the culprit, rather than by the packer's generic complaint.
    if isinstance(address, tuple) and len(address) == 3:
        host, name, uid = address
        if type(host) is str and type(name) is str and type(uid) is int:
            return [host, name, uid]
    raise MessageNotSerializable(
        f"an actor ref's address must be a RefAddress(address: str, name: str, uid: int), "
        f"not {describe(address)}"
    )


def ref_address(value: Any, what: str) -> RefAddress:
    if type(value) is list and len(value) == 3:
        host, name, uid = value
        if type(host) is str and type(name) is str and type(uid) is int:
            return _new_tuple(RefAddress, (host, name, uid))
    raise MalformedFrame(f"{what} must be [address: str, name: str, uid: int]")


def may_hold_timestamp(data: bytes | bytearray) -> bool:
    return len(data) > HINT_LIMIT or TIMESTAMP_HINT.search(data) is not None


def checked_list(items: list[Any]) -> list[Any]:
    if _Timestamp in map(type, items):
        raise MalformedFrame("msgpack Timestamp (ext type -1) is not part of the wire format")
    return items


def checked_pairs(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    result = dict(pairs)
    if _Timestamp in map(type, result) or _Timestamp in map(type, result.values()):
        raise MalformedFrame("msgpack Timestamp (ext type -1) is not part of the wire format")
    return result


def type_name(cls: type[Any]) -> str:
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def unsupported(value: Any) -> str:
    cls = type(value)
    name = type_name(cls)
    if cls is int:
        return (
            f"cannot send the int {value if value.bit_length() <= 128 else '...'} over the "
            "wire: ints must fit in 64 bits (-2**63 to 2**64 - 1)"
        )
    if isinstance(value, (set, frozenset)):
        return f"cannot send a value of type {name!r} over the wire; send a list or tuple instead"
    if dataclasses.is_dataclass(cls):
        return (
            f"cannot send a value of type {name!r} over the wire: the dataclass is not "
            "registered; decorate it with @cfactor.wire.message"
        )
    for base in NATIVE_TYPES:
        if isinstance(value, base):
            return (
                f"cannot send a value of type {name!r} over the wire: it is a subclass of "
                f"{base.__name__}, which would arrive as a plain {base.__name__}; convert it, "
                "or send a dataclass registered with @cfactor.wire.message"
            )
    return (
        f"cannot send a value of type {name!r} over the wire; "
        "register dataclasses with @cfactor.wire.message"
    )


def describe(value: Any) -> str:
    # Short and safe to log: hostile frames may hold megabyte strings.
    if value is None or type(value) is bool:
        return repr(value)
    if type(value) is int or type(value) is float:
        text = repr(value)
        return text if len(text) <= 40 else f"an {type(value).__name__}"
    return f"a value of type {type(value).__name__}"


def exc_text(exc: BaseException) -> str:
    # Runs inside an ``except`` clause of the decode boundary, on exceptions from user
    # code (constructors, make_ref), so it must not raise itself.
    try:
        text = f"{type(exc).__name__}: {exc}"
    except Exception:
        text = f"{type(exc).__name__} (unprintable)"
    return text if len(text) <= 300 else text[:297] + "..."
