"""Values, strategies and byte builders shared by the wire tests."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import msgpack
from hypothesis import strategies as st

from cfactor.abc import Envelope, Kind, RefAddress
from cfactor.wire import VERSION, message

INT64_MIN = -(2**63)
UINT64_MAX = 2**64 - 1


@dataclass(frozen=True)
class FakeRef:
    """Stands in for cf.ActorRef: anything with ``__cfactor_address__`` travels as a ref."""

    address: RefAddress

    def __cfactor_address__(self) -> RefAddress:
        return self.address


@message
@dataclass(frozen=True)
class Point:
    x: int
    y: int


@message(name="tests.wire.Box")
@dataclass
class Box:
    item: Any
    label: str = ""
    # Not an init field: it is not sent, and __post_init__ recomputes it on arrival.
    size: int = field(init=False, default=-1)

    def __post_init__(self) -> None:
        self.size = len(self.label)


@message
@dataclass(frozen=True, slots=True, kw_only=True)
class Order:
    sku: str
    quantity: int = 1


@message
@dataclass
class Picky:
    """Refuses some field values, as a validating message class may."""

    n: int

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError("n must not be negative")


# -- strategies ---------------------------------------------------------------------------

ints = st.integers(min_value=INT64_MIN, max_value=UINT64_MAX)
floats = st.floats(allow_nan=False)
addresses = st.builds(RefAddress, st.text(), st.text(), st.integers(INT64_MIN, UINT64_MAX))
fake_refs = st.builds(FakeRef, addresses)

scalars = st.none() | st.booleans() | ints | floats | st.text() | st.binary()


def hashables(refs: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Dict keys: hashable values the wire carries (msgpack keys may be any value)."""
    flat = scalars | refs | st.builds(Point, ints, ints)
    return st.recursive(flat, lambda inner: st.lists(inner, max_size=3).map(tuple), max_leaves=6)


def payloads(refs: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Nested payloads of every supported type, with ``refs`` as the actor refs."""
    keys = hashables(refs)

    def extend(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return (
            st.lists(inner, max_size=4)
            | st.lists(inner, max_size=4).map(tuple)
            | st.dictionaries(keys, inner, max_size=4)
            | st.builds(Box, inner, st.text(max_size=5))
        )

    base = scalars | refs | st.builds(Point, ints, ints) | st.builds(Order, sku=st.text())
    return st.recursive(base, extend, max_leaves=20)


def envelopes(payload: st.SearchStrategy[Any]) -> st.SearchStrategy[Envelope]:
    return st.builds(
        Envelope,
        kind=st.sampled_from(Kind),
        target=st.text(),
        sender=st.none() | addresses,
        correlation_id=st.integers(0, UINT64_MAX),
        deadline=st.none() | floats | st.integers(-(2**53), 2**53),
        payload=payload,
    )


# -- comparing ----------------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (``1 == 1.0 == True`` is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)) and not isinstance(a, RefAddress):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        # msgpack keeps a map's order, so the items must match pairwise.
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return bool(a == b)


def same_envelope(decoded: Envelope, sent: Envelope) -> bool:
    deadline = None if sent.deadline is None else float(sent.deadline)
    return (
        decoded.kind is sent.kind
        and same(decoded.target, sent.target)
        and same(decoded.sender, sent.sender)
        and same(decoded.correlation_id, sent.correlation_id)
        and same(decoded.deadline, deadline)
        and same(decoded.payload, sent.payload)
    )


# -- raw bytes ----------------------------------------------------------------------------


def ext(code: int, data: bytes) -> Any:
    """An ExtType with any code, also the negative ones ExtType() refuses to build."""
    return tuple.__new__(msgpack.ExtType, (code, data))


def pack(value: Any) -> bytes:
    """Plain msgpack, tuples as arrays: the raw material of hostile frames."""
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


def frame_of(fields: Any) -> bytes:
    return bytes([VERSION]) + pack(fields)


def envelope_frame(payload_bytes: bytes, *, kind: int = 1, target: str = "t") -> bytes:
    """A frame whose payload is the given raw msgpack bytes (possibly hostile)."""
    header = b"\x96" + pack(kind) + pack(target) + b"\xc0" + pack(0) + b"\xc0"
    return bytes([VERSION]) + header + payload_bytes
