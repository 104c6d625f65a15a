"""The transport's framing around codec frames: headers, control messages, addresses.

Sans-IO, like the codec: bytes in, values out, no sockets. Everything here reads bytes
from peers that may be hostile, so every decoder raises only
:class:`~cfactor.errors.ProtocolError` subclasses and bounds what it allocates by the
size of its input. ``docs/transport.md`` describes the format and the reasons for it.

Every zmq message a DEALER sends has exactly two parts, ``[header, body]``:

- data: header ``b"D"`` + sender incarnation (u64 BE) + sequence number (u64 BE) of the
  first envelope in the batch + the receiver's incarnation and the sender's credited
  total for it (u64 BE each: a CREDIT riding along); body = a msgpack array of codec
  items (each envelope's frame without its version byte: ``MsgpackCodec.join_items``);
- HELLO: header ``b"H"``, body ``msgpack [protocol version, address, incarnation]``;
- BEAT (heartbeat): header ``b"B"``, body ``msgpack [incarnation, envelopes sent]``;
- CREDIT: header ``b"C"``, body ``msgpack [incarnation, your incarnation, credited]``;
- BYE: header ``b"Q"``, body ``msgpack [incarnation]``: the sender is closing, forget it.

A DEALER's routing id is the sender's address, a NUL byte and an 8-byte nonce drawn for
that socket (:func:`routing_id`): a new socket is a new identity, so a ROUTER never
confuses it with a stale connection of an earlier one.
"""

from __future__ import annotations

import re
import struct
from typing import Final, NamedTuple

import msgpack

from cfactor.errors import ConfigError, MalformedFrame, UnsupportedVersion

PROTOCOL_VERSION: Final = 3
"""The transport protocol version carried by HELLO (codec frames carry their own)."""

DATA: Final = b"D"
HELLO: Final = b"H"
BEAT: Final = b"B"
CREDIT: Final = b"C"
BYE: Final = b"Q"

DATA_HEADER: Final = struct.Struct(">cQQQQ")
"""``b"D"``, the sender's incarnation, the sequence number of the batch's first envelope,
and a credit riding along: the receiver's incarnation as the sender knows it (0: unknown)
and the total of the receiver's envelopes the sender has credited (as in CREDIT)."""

MAX_CONTROL_SIZE: Final = 512
"""A control body is a few ints and one address: anything longer is refused unread."""

MAX_ROUTING_ID_BYTES: Final = 255
"""A zmq routing id holds at most 255 bytes."""

NONCE_BYTES: Final = 8
"""The per-socket part of a routing id, after the address and a NUL."""

MAX_ADDRESS_BYTES: Final = MAX_ROUTING_ID_BYTES - 1 - NONCE_BYTES
"""246: a member's address, a NUL and the nonce make its DEALERs' routing ids."""

MAX_U64: Final = 2**64 - 1

# Host names, IPv4 literals, interface names, or a bracketed IPv6 literal; port 0-65535.
_TCP: Final = re.compile(r"tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+):([0-9]{1,5})")
_IPC: Final = re.compile(r"ipc://[^\x00]+")
_WILDCARD_HOSTS: Final = frozenset({"*", "0.0.0.0", "[::]", "[*]"})  # noqa: S104 - refused

_pack_control: Final = msgpack.Packer(use_bin_type=True).pack
_unpackb: Final = msgpack.unpackb


class Hello(NamedTuple):
    """The first message on every new DEALER: who is talking."""

    address: str
    incarnation: int


class Beat(NamedTuple):
    """A heartbeat; ``sent`` lets the receiver account for envelopes lost on the way."""

    incarnation: int
    sent: int


class Credit(NamedTuple):
    """The receiver has accepted (or written off) ``credited`` envelopes in total."""

    incarnation: int
    peer_incarnation: int
    credited: int


class Bye(NamedTuple):
    """The sender is closing: forget it now rather than after a heartbeat timeout."""

    incarnation: int


Control = Hello | Beat | Credit | Bye


# -- addresses --------------------------------------------------------------------------


def check_listen(listen: object) -> str:
    """Check an address to bind to.

    Args:
        listen: ``tcp://host:port`` (port 0 picks a free port) or ``ipc://path``.

    Returns:
        ``listen`` itself.

    Raises:
        ConfigError: Not a string, not tcp/ipc, a wildcard host (a member's address is
            its identity and must be one its peers can connect to), or too long.
    """
    if not isinstance(listen, str):
        raise ConfigError(f"listen must be a str such as 'tcp://127.0.0.1:0', not {listen!r}")
    match = _TCP.fullmatch(listen)
    if match is not None:
        host, port = match.groups()
        if host in _WILDCARD_HOSTS:
            raise ConfigError(
                f"cannot listen on {listen!r}: a member's address is also its identity on "
                "the wire, so listen on the address peers connect to (e.g. "
                "'tcp://10.0.0.5:7001'), not on a wildcard"
            )
        if int(port) > 65535:
            raise ConfigError(f"port out of range in {listen!r}")
    elif _IPC.fullmatch(listen) is None:
        raise ConfigError(
            f"cannot listen on {listen!r}: expected 'tcp://host:port' or 'ipc://path'"
        )
    if len(listen.encode()) > MAX_ADDRESS_BYTES:
        raise ConfigError(
            f"cannot listen on an address longer than {MAX_ADDRESS_BYTES} bytes (a zmq "
            f"routing id of at most {MAX_ROUTING_ID_BYTES} bytes holds the address, a NUL "
            f"and an {NONCE_BYTES}-byte nonce): {listen[:80]!r}..."
        )
    return listen


def is_peer_address(address: str) -> bool:
    """True if ``address`` is one a DEALER may connect to (and a routing id may claim).

    Args:
        address: ``tcp://host:port`` with a concrete host and port 1-65535, or
            ``ipc://path``, at most ``MAX_ADDRESS_BYTES`` (246) bytes long.
    """
    if len(address) > MAX_ADDRESS_BYTES or len(address.encode()) > MAX_ADDRESS_BYTES:
        return False
    match = _TCP.fullmatch(address)
    if match is not None:
        host, port = match.groups()
        return host not in _WILDCARD_HOSTS and 0 < int(port) <= 65535
    return _IPC.fullmatch(address) is not None


def is_ipv6(address: str) -> bool:
    """True for a ``tcp://[v6 literal]:port`` address (zmq needs IPV6 set for it)."""
    return address.startswith("tcp://[")


def routing_id(address: str, nonce: bytes) -> bytes:
    """The routing id of a DEALER of the member at ``address``: address, NUL, nonce.

    Raises:
        ConfigError: ``address`` is over ``MAX_ADDRESS_BYTES``, or ``nonce`` is not
            ``NONCE_BYTES`` long.
    """
    encoded = address.encode()
    if len(encoded) > MAX_ADDRESS_BYTES:
        raise ConfigError(f"address longer than {MAX_ADDRESS_BYTES} bytes: {address[:80]!r}...")
    if len(nonce) != NONCE_BYTES:
        raise ConfigError(f"a routing id nonce is {NONCE_BYTES} bytes, not {len(nonce)}")
    return encoded + b"\x00" + nonce


def routing_id_address(routing_id: bytes) -> str | None:
    """The address a received routing id claims, or ``None`` if it is not one.

    A routing id is ``address + NUL + nonce`` (:func:`routing_id`); anything else,
    a bare address included (protocol 2), is not one.
    """
    if len(routing_id) > MAX_ROUTING_ID_BYTES or len(routing_id) < NONCE_BYTES + 2:
        return None
    if routing_id[-NONCE_BYTES - 1] != 0:
        return None
    try:
        address = routing_id[: -NONCE_BYTES - 1].decode()
    except UnicodeDecodeError:
        return None
    return address if is_peer_address(address) else None


# -- control messages -------------------------------------------------------------------


def encode_hello(address: str, incarnation: int) -> bytes:
    return _pack_control([PROTOCOL_VERSION, address, incarnation])  # type: ignore[no-any-return]


def encode_beat(incarnation: int, sent: int) -> bytes:
    return _pack_control([incarnation, sent])  # type: ignore[no-any-return]


def encode_credit(incarnation: int, peer_incarnation: int, credited: int) -> bytes:
    return _pack_control([incarnation, peer_incarnation, credited])  # type: ignore[no-any-return]


def encode_bye(incarnation: int) -> bytes:
    return _pack_control([incarnation])  # type: ignore[no-any-return]


def decode_control(kind: bytes, body: bytes) -> Control:
    """Read one control message, trusting nothing in it.

    Args:
        kind: The header (``HELLO``, ``BEAT``, ``CREDIT`` or ``BYE``).
        body: The msgpack body.

    Returns:
        The message.

    Raises:
        UnsupportedVersion: A HELLO of another protocol version.
        MalformedFrame: Anything else: unknown kind, oversized or bad msgpack, wrong
            shape, a count or incarnation that is not a u64.
    """
    if len(body) > MAX_CONTROL_SIZE:
        raise MalformedFrame(f"control message of {len(body)} bytes (at most {MAX_CONTROL_SIZE})")
    try:
        # Tiny caps: a control body holds a few ints and one short string; nothing may
        # claim more than that, whatever its length bytes say.
        fields = _unpackb(
            body,
            max_str_len=MAX_ADDRESS_BYTES,
            max_bin_len=0,
            max_array_len=3,
            max_map_len=0,
            max_ext_len=0,
        )
    except Exception as exc:
        raise MalformedFrame(f"control message is not valid msgpack: {type(exc).__name__}") from exc
    if type(fields) is not list:
        raise MalformedFrame("control message must be a msgpack array")
    if kind == HELLO:
        if len(fields) != 3:
            raise MalformedFrame("HELLO must be [version, address, incarnation]")
        version, address, incarnation = fields
        if type(version) is not int:
            raise MalformedFrame("HELLO version must be an int")
        if version != PROTOCOL_VERSION:
            raise UnsupportedVersion(
                f"peer speaks transport protocol {version}; this member speaks {PROTOCOL_VERSION}"
            )
        if type(address) is not str:
            raise MalformedFrame("HELLO address must be a str")
        return Hello(address, _u64(incarnation, "incarnation"))
    if kind == BEAT:
        if len(fields) != 2:
            raise MalformedFrame("BEAT must be [incarnation, sent]")
        return Beat(_u64(fields[0], "incarnation"), _u64(fields[1], "sent"))
    if kind == CREDIT:
        if len(fields) != 3:
            raise MalformedFrame("CREDIT must be [incarnation, peer incarnation, credited]")
        return Credit(
            _u64(fields[0], "incarnation"),
            _u64(fields[1], "peer incarnation"),
            _u64(fields[2], "credited"),
        )
    if kind == BYE:
        if len(fields) != 1:
            raise MalformedFrame("BYE must be [incarnation]")
        return Bye(_u64(fields[0], "incarnation"))
    raise MalformedFrame(f"unknown message header {kind[:16]!r}")


def _u64(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_U64:
        raise MalformedFrame(f"{what} must be an unsigned 64-bit int")
    return value


# -- data batches -----------------------------------------------------------------------

BATCH_FRAMES: Final = 512
"""The most envelopes this member writes in one data message."""

BATCH_BYTES: Final = 1024 * 1024
"""A batch stops growing at about this many bytes (a single larger frame goes alone)."""

MAX_BATCH_FRAMES: Final = 4096
"""The most envelopes a received batch may hold (headroom over ``BATCH_FRAMES``)."""


def max_part_size(max_frame_size: int) -> int:
    """The largest message part a member writes (and its ROUTER accepts, MAXMSGSIZE).

    A batch holds at most ``BATCH_BYTES`` plus one frame and a 5-byte array header;
    4 KiB leaves room to spare.
    """
    return BATCH_BYTES + max_frame_size + 5 * (BATCH_FRAMES + 1) + 4096
