"""The wire codec: envelopes to frames and back, with msgpack.

Sans-IO: bytes in, values out. No sockets, no clocks, and never pickle. The codec
trusts nothing it decodes: whatever the bytes, :meth:`MsgpackCodec.decode` either
returns an :class:`~cfactor.abc.Envelope` or raises a
:class:`~cfactor.errors.ProtocolError` subclass.

A frame (version 1) is one version byte followed by one msgpack array::

    0x01 | [kind, target, sender, correlation_id, deadline, payload]

``sender`` is nil or ``[address, name, uid]``; ``deadline`` is nil or a float. The
payload is any msgpack value plus three ext types:

- ``1`` tuple: its items as a msgpack array (lists stay lists, tuples stay tuples);
- ``2`` actor ref: ``[address, name, uid]``;
- ``3`` message: ``[registered name, {init field: value}]`` of a registered dataclass.

Which dataclasses travel is the registry's business (``cfactor/wire/registry.py``); the
checks of values and frames, and the words of the codec's refusals, are in
``cfactor/wire/checks.py``. The full description, and the reasons behind it, are in
``docs/wire.md``.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any, Final

import msgpack

from cfactor.abc import Envelope, Kind, RefAddress
from cfactor.errors import (
    ConfigError,
    FrameTooLarge,
    MalformedFrame,
    MessageNotSerializable,
    ProtocolError,
    UnsupportedVersion,
)
from cfactor.wire.checks import (
    COPY_LIMIT,
    KINDS,
    TIMESTAMP_HINT,
    array_count,
    bad_ext,
    byte_buffer,
    check_header,
    checked_list,
    checked_pairs,
    describe,
    envelope_of,
    exc_text,
    may_hold_timestamp,
    ref_address,
    ref_fields,
    unsupported,
)
from cfactor.wire.registry import MessageRegistry, default_registry, message

if TYPE_CHECKING:
    from collections.abc import Callable

VERSION: Final = 1
"""The version byte this codec writes and the only one it reads."""

DEFAULT_MAX_FRAME_SIZE: Final = 4 * 1024 * 1024
DEFAULT_MAX_DEPTH: Final = 32

# Every ext level costs one msgpack unpack context (about 40 KiB of C stack, for its
# 1024-entry container stack) plus a few Python frames, so the depth a peer may make
# us recurse to is capped well below what a thread's stack can hold.
_MAX_DEPTH_LIMIT: Final = 64

EXT_TUPLE: Final = 1
EXT_REF: Final = 2
EXT_MESSAGE: Final = 3

_PREFIX: Final = bytes([VERSION])
_EXT_CODES: Final = frozenset({EXT_TUPLE, EXT_REF, EXT_MESSAGE})
# ExtType and RefAddress are namedtuples whose Python-level __new__ costs more than
# packing a small tuple; ours hold checked values, so they are built as the plain
# tuples they are (the packer checks ``type(o) is ExtType``).
_ExtType: Final = msgpack.ExtType
_new_tuple: Final = tuple.__new__
_unpackb: Final = msgpack.unpackb
_WIRE_KINDS: Final[dict[Kind, int]] = {kind: int(kind) for kind in Kind}

# After a frame bigger than this its packer is replaced (see ``_check_big``).
_RETAIN_LIMIT: Final = 256 * 1024
_PACKER_BUF_SIZE: Final = 64 * 1024

_Timestamp: Final = msgpack.Timestamp
_CONTAINERS: Final = frozenset({list, tuple, dict})

_MAX_PREFIXES: Final = 1024
# Packs the five fixed fields of a plain envelope plus a nil payload, whose last byte
# (the nil) is cut off to leave the head: a 6-array header, kind, target, nil, 0, nil.
_pack_head: Final = msgpack.Packer(use_bin_type=True).pack
_FIXARRAY: Final = [bytes([0x90 | count]) for count in range(16)]

# -- codec ------------------------------------------------------------------------------


class MsgpackCodec:
    """The codec: :class:`~cfactor.abc.Envelope` to frame and back.

    ``decode`` keeps no state and may be called from any thread. ``encode`` reuses
    its msgpack packers between calls, so one codec must not encode from two
    threads at once (the event loop's thread is the expected caller).

    Args:
        max_frame_size: The largest frame, in bytes, either way.
        make_ref: Turns a decoded actor ref's address into a ref (the actor system
            passes its own factory). Without it, refs decode to their
            :class:`~cfactor.abc.RefAddress`.
        registry: The registered message dataclasses; defaults to
            :data:`default_registry`.
        max_depth: How deeply tuples, refs and messages may nest inside each other.
            Nested lists and dicts are bounded separately (by msgpack, at 1024).

    Raises:
        ConfigError: ``max_frame_size`` is not a positive int, or ``max_depth`` is
            not an int between 0 and 64.
    """

    __slots__ = (
        "_big",
        "_checked_hooks",
        "_classes",
        "_hook",
        "_hook",
        "_hooks",
        "_level",
        "_make_ref",
        "_max_depth",
        "_max_frame_size",
        "_names",
        "_packers",
        "_prefixes",
    )

    def __init__(
        self,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        make_ref: Callable[[RefAddress], Any] | None = None,
        registry: MessageRegistry | None = None,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        if type(max_frame_size) is not int or max_frame_size < 1:
            raise ConfigError(f"max_frame_size must be a positive int, not {max_frame_size!r}")
        if type(max_depth) is not int or not 0 <= max_depth <= _MAX_DEPTH_LIMIT:
            raise ConfigError(
                f"max_depth must be an int from 0 to {_MAX_DEPTH_LIMIT}, not {max_depth!r}"
            )
        self._max_frame_size = max_frame_size
        self._max_depth = max_depth
        # One comparison on the hot path covers both reasons to look closer.
        self._big = min(max_frame_size, _RETAIN_LIMIT + 1)
        self._make_ref = make_ref
        registry = default_registry if registry is None else registry
        # The registry's own dicts, so classes registered after this codec was made
        # (at import time of a later module) are still known to it.
        self._classes = registry._by_class
        self._names = registry._by_name
        # msgpack's Packer is not reentrant: packing a tuple's items from inside
        # ``default`` needs a second packer, a message inside that tuple a third, and
        # so on. ``_packers[level]`` is the one for ext nesting ``level``.
        self._packers: list[Any] = []
        # The encoded head of a plain envelope (no sender, correlation id 0, no
        # deadline: every tell) by (kind, target): such an item is head + payload.
        self._prefixes: dict[tuple[Kind, str], bytes] = {}
        self._level = 0
        # One ext hook per nesting depth (plain and Timestamp-checking), so decoding
        # needs no mutable depth counter: the hook itself knows how deep it is.
        self._hooks = [
            functools.partial(self._decode_ext, depth + 1) for depth in range(max_depth + 1)
        ]
        self._checked_hooks = [
            functools.partial(self._decode_ext_checked, depth + 1) for depth in range(max_depth + 1)
        ]
        self._hook = self._hooks[0]

    @property
    def max_frame_size(self) -> int:
        """The largest frame, in bytes, this codec writes or reads."""
        return self._max_frame_size

    @property
    def max_depth(self) -> int:
        """How deeply tuples, refs and messages may nest inside each other."""
        return self._max_depth

    def __repr__(self) -> str:
        return (
            f"<MsgpackCodec version={VERSION} max_frame_size={self._max_frame_size} "
            f"max_depth={self._max_depth}>"
        )

    # -- encode ---------------------------------------------------------------------------

    def encode(self, envelope: Envelope) -> bytes:
        """Turn an envelope into one frame.

        Args:
            envelope: The envelope; its payload may hold msgpack's native values,
                tuples, actor refs and registered dataclasses, nested freely.

        Returns:
            The frame: the version byte and the msgpack-encoded envelope.

        Raises:
            MessageNotSerializable: The payload holds a value the wire cannot carry
                (a set, an unregistered class, an int beyond 64 bits, nesting too
                deep), or an envelope field has the wrong type.
            FrameTooLarge: The frame would exceed ``max_frame_size``.
        """
        return _PREFIX + self.encode_item(envelope)

    def encode_item(self, envelope: Envelope) -> bytes:
        """Turn an envelope into a batch item: its frame without the version byte.

        A transport that sends envelopes in batches joins items with
        :meth:`join_items` and states the version once for the whole batch; the
        receiver reads them back with :meth:`decode_items` in one msgpack pass.

        Raises:
            MessageNotSerializable: As :meth:`encode`.
            FrameTooLarge: The item's frame would exceed ``max_frame_size``.
        """
        kind = envelope.kind
        cid = envelope.correlation_id
        deadline = envelope.deadline
        sender = envelope.sender
        target = envelope.target
        if (
            sender is None
            and cid == 0
            and deadline is None
            and type(cid) is int
            and type(kind) is Kind
            and type(target) is str
        ):
            # A plain envelope (every tell): a cached head, then the payload alone.
            head = self._prefixes.get((kind, target))
            if head is None:
                head = self._plain_head(kind, target)
            data: bytes = head + self._encode_value(envelope.payload)
            if len(data) >= self._max_frame_size:
                raise FrameTooLarge(
                    f"the message encodes to more than max_frame_size={self._max_frame_size} bytes"
                )
            return data
        if (
            type(kind) is not Kind
            or type(envelope.target) is not str
            or type(cid) is not int
            or cid < 0
            or (deadline is not None and (type(deadline) is not float or math.isnan(deadline)))
        ):
            deadline = check_header(envelope)
        return self._encode_value(
            [
                _WIRE_KINDS[kind],
                envelope.target,
                None if sender is None else ref_fields(sender),
                cid,
                deadline,
                envelope.payload,
            ]
        )

    def _plain_head(self, kind: Kind, target: str) -> bytes:
        prefixes = self._prefixes
        if len(prefixes) >= _MAX_PREFIXES:
            prefixes.clear()  # bounded: many targets only cost re-encoding heads
        head: bytes = _pack_head([_WIRE_KINDS[kind], target, None, 0, None, None])[:-1]
        prefixes[kind, target] = head
        return head

    def encode_payload(self, value: Any) -> bytes:
        """Encode one value by the payload rules, without envelope or version byte.

        Args:
            value: Anything an envelope's payload may hold.

        Returns:
            The msgpack bytes; :meth:`decode_payload` reads them back.

        Raises:
            MessageNotSerializable: The value holds something the wire cannot carry.
            FrameTooLarge: The bytes would exceed ``max_frame_size``.
        """
        return self._encode_value(value)

    def _encode_value(self, value: Any) -> bytes:
        try:
            data = self._pack(value)
        except ProtocolError:
            raise
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            # msgpack reports cycles and lists nested over 1024 deep as
            # "recursion limit exceeded", a ValueError.
            raise MessageNotSerializable(f"cannot encode the message: {exc}") from exc
        if 255 in data and may_hold_timestamp(data) and self._holds_timestamp(value):
            raise MessageNotSerializable(
                "cannot send a msgpack Timestamp over the wire; send a float or int"
            )
        return data

    def _pack(self, value: Any) -> bytes:
        # ``_level`` is how many packers are busy further up the stack: this call
        # takes the next one. There are at most max_depth + 1 of them, so running
        # off the end of the list is how too deep a nesting shows up.
        level = self._level
        try:
            packer = self._packers[level]
        except IndexError:
            packer = self._add_packer(level)
        self._level = level + 1
        try:
            data: bytes = packer.pack(value)
        except Exception:
            # The failed pack may have grown the buffer before failing; start afresh
            # so a rejected message does not pin that memory.
            self._packers[level] = self._new_packer()
            raise
        finally:
            self._level = level
        if len(data) >= self._big:
            self._check_big(level, len(data))
        return data

    def _add_packer(self, level: int) -> Any:
        if level > self._max_depth:
            raise MessageNotSerializable(
                "the message nests tuples, refs or messages more than "
                f"max_depth={self._max_depth} levels deep"
            )
        packer = self._new_packer()
        self._packers.append(packer)
        return packer

    def _check_big(self, level: int, size: int) -> None:
        # A packer keeps the largest buffer it ever grew to; replace it after a large
        # message so that one does not pin its size for good.
        if size > _RETAIN_LIMIT:
            self._packers[level] = self._new_packer()
        # ``>=``: the version byte (or an enclosing ext header) adds at least one more.
        if size >= self._max_frame_size:
            raise FrameTooLarge(
                f"the message encodes to more than max_frame_size={self._max_frame_size} bytes"
            )

    def _new_packer(self) -> Any:
        # strict_types: only exact builtins are packed natively, so tuples (and
        # subclasses such as enums) reach ``_default`` instead of turning into lists.
        return msgpack.Packer(
            default=self._default,
            strict_types=True,
            use_bin_type=True,
            datetime=False,
            buf_size=_PACKER_BUF_SIZE,
        )

    def _default(self, value: Any) -> msgpack.ExtType:
        cls = type(value)
        if cls is tuple:
            return _new_tuple(_ExtType, (EXT_TUPLE, self._pack(list(value))))
        known = self._classes.get(cls)
        if known is not None:
            fields = {field: getattr(value, field) for field in known.fields}
            return _new_tuple(_ExtType, (EXT_MESSAGE, self._pack([known.name, fields])))
        if cls is RefAddress:
            return _new_tuple(_ExtType, (EXT_REF, self._pack(ref_fields(value))))
        get_address = getattr(cls, "__cfactor_address__", None)
        if get_address is not None:
            return _new_tuple(_ExtType, (EXT_REF, self._pack(ref_fields(get_address(value)))))
        raise MessageNotSerializable(unsupported(value))

    def _holds_timestamp(self, value: Any) -> bool:
        # Only reached when the bytes hold 0xff. Walks with an explicit stack (the
        # value may nest as deep as msgpack allows) and looks at the types of a
        # container's items in C, descending only into the items that contain more.
        classes = self._classes
        stack = [value]
        while stack:
            item = stack.pop()
            cls = type(item)
            if cls is list or cls is tuple:
                items = item
            elif cls is dict:
                items = [*item, *item.values()]
            elif cls is _Timestamp:
                return True
            else:
                known = classes.get(cls)
                if known is None:
                    continue
                items = [getattr(item, field) for field in known.fields]
            kinds = set(map(type, items))
            if _Timestamp in kinds:
                return True
            if not kinds.isdisjoint(_CONTAINERS) or not kinds.isdisjoint(classes):
                stack.extend(x for x in items if type(x) in _CONTAINERS or type(x) in classes)
        return False

    # -- decode ---------------------------------------------------------------------------

    def decode(self, frame: bytes | bytearray | memoryview) -> Envelope:
        """Turn one frame into an envelope, trusting nothing in it.

        Args:
            frame: The bytes as received. A memoryview is read without copying it.

        Returns:
            The envelope. Refs in it are built by ``make_ref`` (or left as
            :class:`~cfactor.abc.RefAddress`), messages by their registered class.

        Raises:
            FrameTooLarge: The frame is longer than ``max_frame_size``.
            UnsupportedVersion: The version byte is not :data:`VERSION`.
            MalformedFrame: Anything else is wrong: bad msgpack, trailing bytes,
                wrong shape or field types, unknown kinds, ext types or message
                names, nesting beyond ``max_depth``, or a message class that
                refused its fields.
        """
        if type(frame) is not bytes:
            frame = byte_buffer(frame)
        size = len(frame)
        # Checked before a byte is unpacked: an oversized frame costs nothing more.
        if size > self._max_frame_size:
            raise FrameTooLarge(
                f"frame of {size} bytes exceeds max_frame_size={self._max_frame_size}"
            )
        if not size:
            raise MalformedFrame("empty frame")
        if frame[0] != VERSION:
            raise UnsupportedVersion(
                f"frame has wire version {frame[0]}; this member speaks version {VERSION}"
            )
        try:
            # Inlined ``_unpack``: this is the path every received message takes.
            body = frame[1:] if size <= COPY_LIMIT else memoryview(frame)[1:]
            if type(frame) is memoryview or (255 in frame and may_hold_timestamp(frame)):
                return envelope_of(self._unpack_checked(body))
            return envelope_of(_unpackb(body, ext_hook=self._hook, strict_map_key=False))
        except ProtocolError:
            raise
        except Exception as exc:
            # Whatever msgpack, a hook or a message's constructor raised on these
            # bytes (including MemoryError and RecursionError), the caller sees one
            # type: a bad frame is counted and dropped, never crashes the member.
            raise MalformedFrame(f"malformed frame: {exc_text(exc)}") from exc

    @staticmethod
    def join_items(items: list[bytes]) -> bytes:
        """Join items from :meth:`encode_item` into one batch: a msgpack array of them.

        No item is packed again: the array header is written and the items appended,
        so a batch costs one ``bytes.join``.
        """
        count = len(items)
        if count < 16:
            header = _FIXARRAY[count]
        elif count < 0x10000:
            header = b"\xdc" + count.to_bytes(2, "big")
        else:
            header = b"\xdd" + count.to_bytes(4, "big")
        return header + b"".join(items)

    def decode_items(self, batch: bytes, max_items: int) -> list[Envelope | ProtocolError]:
        """Read a batch made by :meth:`join_items`, trusting nothing in it.

        The whole batch is unpacked in one msgpack pass when it is well formed.
        A batch holding a bad item is walked again item by item, so that each bad
        item is refused on its own and the others are still delivered (a message
        class's constructor may then run twice for the items before it).

        Args:
            batch: The bytes as received.
            max_items: The most items the batch may claim.

        Returns:
            One entry per item, in order: its envelope, or the ``ProtocolError``
            that refused it (``FrameTooLarge`` for an item whose frame would exceed
            ``max_frame_size``, ``MalformedFrame`` for anything else).

        Raises:
            MalformedFrame: The batch itself is not an array of 1 to ``max_items``
                items, or has bytes after its last item.
        """
        if type(batch) is not bytes:
            batch = bytes(byte_buffer(batch))
        count = array_count(batch)
        if not 0 < count <= max_items:
            raise MalformedFrame(
                f"a batch must be a msgpack array of 1 to {max_items} items, "
                f"not {count if count >= 0 else 'something else'}"
            )
        # A batch no longer than max_frame_size cannot hold an item over it.
        if len(batch) < self._max_frame_size:
            try:
                if 255 in batch and TIMESTAMP_HINT.search(batch) is not None:
                    items = self._unpack_checked(batch)
                else:
                    items = _unpackb(batch, ext_hook=self._hook, strict_map_key=False)
            except Exception:  # noqa: S110 - a bad item: find it below
                pass
            else:
                result: list[Envelope | ProtocolError] = []
                append = result.append
                kinds = KINDS
                for fields in items:
                    # ``envelope_of`` inlined for the common shape (no sender, no
                    # deadline); anything else takes the full check.
                    if type(fields) is list and len(fields) == 6:
                        kind, target, sender, cid, deadline, payload = fields
                        if (
                            sender is None
                            and deadline is None
                            and type(kind) is int
                            and type(target) is str
                            and type(cid) is int
                            and cid >= 0
                        ):
                            wire_kind = kinds.get(kind)
                            if wire_kind is not None:
                                append(Envelope(wire_kind, target, None, cid, None, payload))
                                continue
                    try:
                        append(envelope_of(fields))
                    except ProtocolError as exc:
                        append(exc)
                return result
        return self._decode_each_item(batch, count)

    def _decode_each_item(self, batch: bytes, count: int) -> list[Envelope | ProtocolError]:
        # The slow path: find each item's bounds without building it (``skip``), then
        # decode it on its own. msgpack bounds the walk by the bytes present.
        unpacker = msgpack.Unpacker(max_buffer_size=len(batch))
        unpacker.feed(batch)
        result: list[Envelope | ProtocolError] = []
        try:
            unpacker.read_array_header()
            for _ in range(count):
                start = unpacker.tell()
                unpacker.skip()
                item = batch[start : unpacker.tell()]
                try:
                    result.append(self._decode_item(item))
                except ProtocolError as exc:
                    result.append(exc)
        except Exception as exc:
            error = MalformedFrame(f"malformed batch item: {exc_text(exc)}")
            result.extend([error] * (count - len(result)))
            return result
        if unpacker.tell() != len(batch):
            raise MalformedFrame("bytes after the last item of a batch")
        return result

    def _decode_item(self, item: bytes) -> Envelope:
        if len(item) >= self._max_frame_size:
            raise FrameTooLarge(
                f"frame of {len(item) + 1} bytes exceeds max_frame_size={self._max_frame_size}"
            )
        try:
            if 255 in item and may_hold_timestamp(item):
                return envelope_of(self._unpack_checked(item))
            return envelope_of(_unpackb(item, ext_hook=self._hook, strict_map_key=False))
        except ProtocolError:
            raise
        except Exception as exc:
            raise MalformedFrame(f"malformed frame: {exc_text(exc)}") from exc

    def decode_payload(self, data: bytes | bytearray | memoryview) -> Any:
        """Decode bytes written by :meth:`encode_payload`, trusting nothing in them.

        Args:
            data: The msgpack bytes.

        Returns:
            The value.

        Raises:
            FrameTooLarge: ``data`` is longer than ``max_frame_size``.
            MalformedFrame: ``data`` is not one valid payload value.
        """
        if type(data) is not bytes:
            data = byte_buffer(data)
        if len(data) > self._max_frame_size:
            raise FrameTooLarge(
                f"payload of {len(data)} bytes exceeds max_frame_size={self._max_frame_size}"
            )
        try:
            return self._unpack(data)
        except ProtocolError:
            raise
        except Exception as exc:
            raise MalformedFrame(f"malformed payload: {exc_text(exc)}") from exc

    def _unpack(self, data: bytes | bytearray | memoryview) -> Any:
        # unpackb bounds every claimed length by len(data), so a header that claims
        # gigabytes fails instead of allocating; nested ext data is bounded the same
        # way by its own length. ``255 in data`` is a memchr, but on a memoryview it
        # would iterate byte by byte, so a (large) view is always checked.
        if type(data) is memoryview or (255 in data and may_hold_timestamp(data)):
            return self._unpack_checked(data)
        return _unpackb(data, ext_hook=self._hook, strict_map_key=False)

    def _unpack_checked(self, data: bytes | bytearray | memoryview) -> Any:
        # The decode for bytes that may hold a msgpack Timestamp: every array and map
        # is checked for one as it is built (in C, by type), and so is a bare value.
        value = _unpackb(
            data,
            ext_hook=self._checked_hooks[0],
            strict_map_key=False,
            list_hook=checked_list,
            object_pairs_hook=checked_pairs,
        )
        return checked_list([value])[0]

    # msgpack calls these for each ext value it meets; ``depth`` counts the ext values
    # enclosing it, itself included. Two methods rather than a flag, so the hook is a
    # plain partial and the check of every container is decided once per frame.

    def _decode_ext(self, depth: int, code: int, data: bytes) -> Any:
        if depth > self._max_depth or code not in _EXT_CODES:
            raise bad_ext(depth, code, self._max_depth)
        value = _unpackb(data, ext_hook=self._hooks[depth], strict_map_key=False)
        if code == EXT_TUPLE and type(value) is list:
            return tuple(value)
        return self._finish_ext(code, value)

    def _decode_ext_checked(self, depth: int, code: int, data: bytes) -> Any:
        if depth > self._max_depth or code not in _EXT_CODES:
            raise bad_ext(depth, code, self._max_depth)
        value = _unpackb(
            data,
            ext_hook=self._checked_hooks[depth],
            strict_map_key=False,
            list_hook=checked_list,
            object_pairs_hook=checked_pairs,
        )
        return self._finish_ext(code, value)

    def _finish_ext(self, code: int, value: Any) -> Any:
        if code == EXT_TUPLE:
            if type(value) is not list:
                raise MalformedFrame(f"a tuple must hold an array, not {describe(value)}")
            return tuple(value)
        if code == EXT_REF:
            address = ref_address(value, "an actor ref")
            return address if self._make_ref is None else self._make_ref(address)
        return self._decode_message(value)

    def _decode_message(self, value: Any) -> Any:
        if type(value) is not list or len(value) != 2:
            raise MalformedFrame(f"a message must hold [name, fields], not {describe(value)}")
        name, fields = value
        if type(name) is not str or type(fields) is not dict:
            raise MalformedFrame("a message must hold [name: str, fields: map]")
        cls = self._names.get(name)
        if cls is None:
            raise MalformedFrame(
                f"unknown message type {name[:200]!r}; register it with "
                "@cfactor.wire.message on this member too"
            )
        try:
            return cls(**fields)
        except Exception as exc:
            raise MalformedFrame(f"message {name!r} rejected its fields: {exc_text(exc)}") from exc


__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_FRAME_SIZE",
    "EXT_MESSAGE",
    "EXT_REF",
    "EXT_TUPLE",
    "VERSION",
    "MessageRegistry",
    "MsgpackCodec",
    "default_registry",
    "message",
]
