"""The interfaces between cfactor's layers, in one place.

The core talks to time, the wire and (later) transports and membership only through
what is defined here, so each can be swapped: a manual clock in tests, a simulated
network in ``cfactor.testing``, ZeroMQ or etcd in production.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Callable


class Cancellable(Protocol):
    """A scheduled callback that can be called off (``asyncio.TimerHandle`` is one)."""

    def cancel(self) -> None: ...


@runtime_checkable
class Clock(Protocol):
    """The runtime's only source of time.

    Ask timeouts, restart-intensity windows and rate limits all read this, never
    ``time`` directly, so a simulation can run the runtime on virtual time.
    """

    def now(self) -> float:
        """Seconds on a monotonic scale (only differences mean anything)."""
        ...

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Cancellable:
        """Run ``callback(*args)`` on the event loop after ``delay`` seconds."""
        ...


class Kind(enum.IntEnum):
    """What an envelope carries."""

    TELL = 1
    ASK = 2
    REPLY = 3
    ERROR = 4
    STOP = 5


class RefAddress(NamedTuple):
    """Where an actor lives, as it crosses the wire.

    Attributes:
        address: The hosting member's address (``"tcp://127.0.0.1:7001"``); empty for
            an embedded system with no transport.
        name: The actor's name in that member's system.
        uid: The actor's incarnation id, so a ref to a stopped actor does not reach a
            new actor that took the same name.
    """

    address: str
    name: str
    uid: int


@runtime_checkable
class WireAddressable(Protocol):
    """Anything the codec may encode as an actor ref (``cf.ActorRef`` is one)."""

    def __cfactor_address__(self) -> RefAddress: ...


@dataclass(slots=True)
class Envelope:
    """The unit that crosses the wire.

    Attributes:
        kind: What the envelope carries.
        target: The receiving actor's name (for replies: the asking member's address).
        sender: The sending actor, if the message came from one.
        correlation_id: Pairs an ask with its reply; 0 for a tell.
        deadline: Seconds the sender is still willing to wait (a time budget, not a
            clock reading: clocks of two members are not comparable); ``None`` for none.
        payload: The message itself.
    """

    kind: Kind
    target: str
    sender: RefAddress | None = None
    correlation_id: int = 0
    deadline: float | None = None
    payload: Any = None


class Codec(Protocol):
    """Turns envelopes into frames and back. Pure: no sockets, no clocks."""

    def encode(self, envelope: Envelope) -> bytes:
        """Raises ``cf.MessageNotSerializable`` or ``cf.FrameTooLarge``."""
        ...

    def decode(self, frame: bytes) -> Envelope:
        """Raises only ``cf.ProtocolError`` subclasses, whatever the bytes."""
        ...


__all__ = ["Cancellable", "Clock", "Codec", "Envelope", "Kind", "RefAddress", "WireAddressable"]
