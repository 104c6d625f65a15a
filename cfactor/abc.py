"""The interfaces between cfactor's layers, in one place.

The core talks to time, the wire, transports, clusters and autoscalers only through
what is defined here, so each can be swapped: a manual clock in tests, a simulated
network in ``cfactor.testing``, ZeroMQ or etcd in production. The core knows nothing
of clusters: it plugs in a ``ClusterPlugin`` (its ``ClusterRuntime`` places named
actors and replicas, its ``NameResolver`` reads the addresses it hands out) and a
``ScalingPolicy`` per replicated actor, and the layers above reach the core's actors
only through ``system.hosting`` (``cfactor/_core/hosting.py``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable, Callable, Iterable
    from contextlib import AbstractAsyncContextManager

    from cfactor._core.ref import ActorRef

T = TypeVar("T")


class Cancellable(Protocol):
    """A scheduled callback that can be called off (``asyncio.TimerHandle`` is one)."""

    def cancel(self) -> None: ...


@runtime_checkable
class Clock(Protocol):
    """The runtime's only source of time.

    Ask timeouts, restart-intensity windows, rate limits, heartbeats, lease renewals,
    backoff and polling in every layer (core, cluster, membership, flow, autoscale,
    transports) read and wait on this, never ``time`` or asyncio's timers directly, so
    a simulation can run a whole cluster on virtual time. ``cfactor._core.clock.TimerClock``
    builds every waiting method on ``now`` and ``call_later`` for a new clock.
    """

    def now(self) -> float:
        """Seconds on a monotonic scale (only differences mean anything)."""
        ...

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Cancellable:
        """Run ``callback(*args)`` on the event loop after ``delay`` seconds."""
        ...

    async def sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds of this clock's time (``0`` only yields to the loop)."""
        ...

    def timeout(self, delay: float | None) -> AbstractAsyncContextManager[Any]:
        """A block that ``delay`` seconds from now is cancelled and raises ``TimeoutError``
        (as ``asyncio.timeout``; ``None``: no limit)."""
        ...

    def timeout_at(self, when: float | None) -> AbstractAsyncContextManager[Any]:
        """As ``timeout``, with a deadline on this clock's scale (``now() + delay``)."""
        ...

    async def wait_for(self, aw: Awaitable[T], timeout: float | None) -> T:
        """Await ``aw``; after ``timeout`` seconds cancel it and raise ``TimeoutError``."""
        ...

    async def wait(
        self,
        aws: Iterable[asyncio.Future[Any]],
        *,
        timeout: float | None = None,
        return_when: str = ...,
    ) -> tuple[set[asyncio.Future[Any]], set[asyncio.Future[Any]]]:
        """As ``asyncio.wait`` on this clock's time: ``(done, pending)``, cancels nothing."""
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


@dataclass(frozen=True, slots=True)
class TransportStatistics:
    """A snapshot of one transport.

    Attributes:
        peers: Peers this member has exchanged frames with.
        unreachable: Of those, peers now considered gone (heartbeats timed out).
        frames_sent: Envelopes written to sockets.
        frames_received: Envelopes decoded and handed to the system.
        frames_rejected: Frames dropped as malformed, oversized, unauthenticated or of
            an unknown version (each is also logged, rate-limited).
        queued: Envelopes waiting in per-peer send queues.
    """

    peers: int = 0
    unreachable: int = 0
    frames_sent: int = 0
    frames_received: int = 0
    frames_rejected: int = 0
    queued: int = 0


class TransportHandler(Protocol):
    """What a transport calls back into: the actor system's remote layer."""

    def envelope_received(self, peer: str, envelope: Envelope) -> None:
        """An envelope arrived from ``peer`` (the sending member's listen address).

        Must not block. The handler calls ``Transport.credit(peer)`` once for each
        envelope when it has been accepted (put into a mailbox, or matched to an ask),
        which lets the peer send more: backpressure reaches the remote sender.
        """
        ...

    def peer_lost(self, peer: str) -> None:
        """``peer`` stopped answering heartbeats: fail what waits on it."""
        ...

    def make_ref(self, address: RefAddress) -> Any:
        """Turn an actor address decoded from a payload into a ref."""
        ...


class Transport(Protocol):
    """Moves envelopes between members. Implementations live outside the core
    (``transports/cfactor_zmq``) and are found by URL scheme through the
    ``cfactor.transports`` entry-point group.

    Per peer, envelopes arrive in the order sent. Every queue is bounded: a peer that
    does not grant credit (its mailboxes are full) fills this member's send queue, and
    then ``send`` waits and ``send_nowait`` raises ``MailboxFull``.
    """

    @property
    def address(self) -> str:
        """The address really listened on (a port chosen for ``:0`` included)."""
        ...

    async def start(self, listen: str, handler: TransportHandler) -> None:
        """Bind to ``listen`` and start serving.

        Raises:
            ConfigError: ``listen`` is not a usable address.
        """
        ...

    def send_nowait(self, peer: str, envelope: Envelope) -> None:
        """Queue ``envelope`` for ``peer``.

        Answers (``REPLY``, ``ERROR``) are never refused for queue space: their number
        is bounded by the asks the peer sent, which its credit bounds.

        Raises:
            MailboxFull: The queue for ``peer`` is full.
            MemberUnreachable: ``peer`` is known to be gone (someone else broke it).
            SystemClosed: This transport was closed (you closed it).
            MessageNotSerializable: The payload cannot cross the wire.
            FrameTooLarge: The encoded envelope is over the frame size limit.
        """
        ...

    async def send(self, peer: str, envelope: Envelope) -> None:
        """As ``send_nowait``, but wait for queue space instead of raising MailboxFull."""
        ...

    def send_or_park(self, peer: str, envelope: Envelope, waiter: asyncio.Future[Any]) -> None:
        """Queue ``envelope`` for ``peer``, or hold it until there is room.

        What an ask uses: it awaits ``waiter`` (its own future) under its deadline, not
        queue space. A held envelope whose ``waiter`` is done when room comes is dropped
        unsent (and counted); if ``peer`` is lost meanwhile, ``waiter`` fails.

        Raises:
            MemberUnreachable: ``peer`` is known to be gone.
            SystemClosed: This transport was closed.
            MessageNotSerializable: The payload cannot cross the wire.
            FrameTooLarge: The encoded envelope is over the frame size limit.
        """
        ...

    def credit(self, peer: str, count: int = 1) -> None:
        """The handler accepted ``count`` envelopes from ``peer``."""
        ...

    def is_reachable(self, peer: str) -> bool:
        """False while ``peer`` is known to be gone."""
        ...

    def statistics(self) -> TransportStatistics: ...

    async def aclose(self) -> None:
        """Close every socket (no linger) and end every task. Idempotent."""
        ...


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """What a member tells the cluster about itself.

    Attributes:
        member_id: Unique per member incarnation (a restarted process is a new member).
        address: Where its transport listens (``tcp://127.0.0.1:7001``).
        capacity: How many named actors it is willing to host; 0 for no limit.
        labels: Free-form ``key=value`` tags, for placement by labels.
        public_key: Its CURVE public key, if the cluster uses CURVE.
        joined_at: Wall-clock seconds when it joined (for uptime in ``cfactor status``).
    """

    member_id: str
    address: str
    capacity: int = 0
    labels: tuple[tuple[str, str], ...] = ()
    public_key: str = ""
    joined_at: float = 0.0


class MemberEvent(NamedTuple):
    """A change in the member list, in the store's order.

    Attributes:
        kind: ``"joined"`` or ``"left"`` (a graceful leave or an expired lease).
        member: The member that joined or left.
        revision: The store's revision of the change (etcd's mod revision).
    """

    kind: str
    member: MemberInfo
    revision: int


@dataclass(frozen=True, slots=True)
class Activation:
    """The one accepted activation of a named actor in a cluster.

    Attributes:
        name: The actor's cluster-wide name.
        member_id: The member that hosts it.
        address: That member's transport address.
        epoch: The store's revision when the activation was accepted; a new activation
            of the same name always has a larger epoch, so stale ones can be told apart.
    """

    name: str
    member_id: str
    address: str
    epoch: int


class Membership(Protocol):
    """Cluster membership, the directory of named actors, and leader election.

    Two backends pass one conformance suite: ``memory`` (in one process: the
    embedded default and simulations) and ``etcd`` (a real cluster). Everything a
    member registers is bound to its lease: when the member dies, the lease expires
    and its registrations disappear together.

    Every method that talks to the store raises ``MembershipUnavailable`` within
    about a second when the store cannot be reached, never hangs.
    """

    async def join(self, info: MemberInfo, ttl_s: float = 5.0) -> None:
        """Register ``info`` under a lease of ``ttl_s`` seconds, kept alive well inside it,
        and start watching the cluster.

        Raises:
            MembershipUnavailable: The store cannot be reached.
            ConfigError: Already joined, or ``ttl_s`` out of range.
        """
        ...

    async def leave(self) -> None:
        """Revoke the lease at once: this member and its activations disappear."""
        ...

    def members(self) -> dict[str, MemberInfo]:
        """The local view of live members by id (kept current by the watch)."""
        ...

    def subscribe(self, callback: Callable[[MemberEvent], None]) -> Callable[[], None]:
        """Call ``callback`` for every member event, in revision order; returns an
        unsubscribe function. After a reconnect the watch resumes from the last seen
        revision, so no join or leave is missed."""
        ...

    def on_lease_lost(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once if this member's own lease is lost (it was cut off
        from the store for longer than the TTL). Fencing: the member must stop its
        named actors, because another activation may now be accepted elsewhere."""
        ...

    @property
    def joined(self) -> bool:
        """True from a successful ``join`` until ``leave``, lease loss or ``aclose``."""
        ...

    @property
    def store_reachable(self) -> bool:
        """False from a failed keepalive until the next acknowledged one: the member
        cannot reach the store now."""
        ...

    def set_lease_guard(self, guard: Callable[[], bool] | None) -> None:
        """When the lease deadline passes, ask ``guard`` first: while it returns True the
        lease is not given up by the clock (the cluster rides through a store outage it
        has shown to be safe); the store saying the lease is gone still ends it."""
        ...

    async def claim(self, name: str) -> Activation | None:
        """Accept an activation of ``name`` on this member, if nobody holds one.

        Compare-and-set: of any number of concurrent claims, exactly one succeeds.

        Raises:
            MembershipUnavailable: The store cannot be reached.
        """
        ...

    async def release(self, activation: Activation) -> bool:
        """Remove ``activation`` if it is still the accepted one; False otherwise."""
        ...

    async def lookup(self, name: str) -> Activation | None:
        """The accepted activation of ``name``, read from the store."""
        ...

    def activations(self) -> dict[str, Activation]:
        """The local view of accepted activations by name (kept current by the watch)."""
        ...

    def subscribe_activations(
        self, callback: Callable[[str, Activation | None], None]
    ) -> Callable[[], None]:
        """Call ``callback(name, activation)`` when an activation appears, and
        ``callback(name, None)`` when it goes (released, or its member's lease expired)."""
        ...

    async def campaign(self, role: str) -> bool:
        """Try to become the leader of ``role``; True if this member now leads it.

        At most one member leads a role; leadership ends with the leader's lease.

        Raises:
            MembershipUnavailable: The store cannot be reached.
        """
        ...

    def leader(self, role: str) -> str | None:
        """The member id leading ``role`` in the local view, or None."""
        ...

    async def put_record(self, kind: str, name: str, data: bytes) -> None:
        """Store ``data`` under ``kind``/``name``, bound to no lease: it outlives members
        (the placement actor keeps actor specs here for its successor).

        Raises:
            MembershipUnavailable: The store cannot be reached.
        """
        ...

    async def delete_record(self, kind: str, name: str) -> None:
        """Remove a record (no error if it is not there).

        Raises:
            MembershipUnavailable: The store cannot be reached.
        """
        ...

    async def records(self, kind: str) -> dict[str, bytes]:
        """Every record of ``kind``, read from the store.

        Raises:
            MembershipUnavailable: The store cannot be reached.
        """
        ...

    async def aclose(self) -> None:
        """Leave (if joined), stop watching, close the connection. Idempotent."""
        ...


class Admission(enum.Enum):
    """What a ``NameResolver`` made of an inbound address the core hosts nothing under."""

    #: Not an address it serves: the core answers as for any unknown name.
    UNKNOWN = "unknown"
    #: An earlier incarnation of a name served here: rejected (and counted) so the
    #: sender looks the name up again.
    STALE = "stale"
    #: A tell the resolver took (held or forwarded): delivered, as far as the sender knows.
    TAKEN = "taken"


class NameResolver(Protocol):
    """Turns the addresses a plug-in hands out into local names.

    The core has no idea what they mean: a cluster addresses an activation as
    ``name@epoch`` so a ref that resolved an old activation never reaches a new one
    (docs/cluster.md). The core offers the resolver only inbound targets it has no
    actor under (never the hot path of a local name), and asks it whether a local
    name is one of its own (then ``system.ref(name)`` gives the plug-in's ref, which
    follows the name wherever it moves). Plugged in as ``system.hosting.resolver``.
    """

    def admit(self, target: str, payload: Any, *, tell: bool) -> str | Admission:
        """The local actor name ``target`` stands for, or why there is none.

        Args:
            target: The envelope's target, not a name of this system.
            payload: What it carries (a resolver may take a tell to hold it).
            tell: Whether it is a tell (only a tell may be taken: ``TAKEN``).
        """
        ...

    def hosts(self, name: str) -> bool:
        """Whether the local actor ``name`` is one the resolver addresses itself."""
        ...


class ClusterPlugin(Protocol):
    """What ``ActorSystem(cluster=...)`` takes (``cf.Cluster`` is one)."""

    async def start(self, system: Any) -> ClusterRuntime:
        """Attach to the started ``system`` (``ActorSystem.start`` calls this) and join.

        It may plug a ``NameResolver`` into ``system.hosting`` before it returns.

        Raises:
            MembershipUnavailable: The cluster's store cannot be reached.
        """
        ...


class ClusterRuntime(Protocol):
    """A cluster attached to one actor system (what ``ClusterPlugin.start`` returns).

    The core asks it four things and knows nothing else of clusters: where a name
    lives, how to place a named actor, where to start a replica, and how to leave.
    How it addresses its actors on the wire is its own business (``NameResolver``).
    """

    def resolve(self, name: str) -> ActorRef | None:
        """A ref to the cluster actor ``name``, or None if the cluster knows no such name."""
        ...

    async def spawn(
        self,
        cls: type,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        name: str,
        placement: Any,
        restart: str,
    ) -> ActorRef:
        """Place a named actor on a member the cluster picks; return its ref.

        Raises:
            MembershipUnavailable: The cluster's store or placement cannot be reached.
            NameTaken: The name already has an accepted activation.
        """
        ...

    async def place_replica(self, group: Any) -> ActorRef | None:
        """Start one more replica of ``group`` on a member picked by load: its ref, or
        None to start it on this member (picked, or no other member can take it).

        Raises:
            ActorStartFailed: The replica's constructor or ``on_start`` raised.
        """
        ...

    async def aclose(self) -> None:
        """Leave the cluster (so others re-place this member's actors at once)."""
        ...


class ReplicaGroup(Protocol):
    """A replicated actor, as its autoscaler sees it (``cfactor._core.replicas``)."""

    name: str

    @property
    def count(self) -> int:
        """Replicas taking work now."""
        ...

    def load(self) -> tuple[int, int]:
        """(messages waiting anywhere in the group, replicas taking work)."""
        ...

    async def scale_to(self, count: int) -> None:
        """Add replicas, or drain the surplus (they finish what they hold, then stop)."""
        ...


class AsyncResource(Protocol):
    """Something running that ``aclose()`` stops (an autoscaler's controller)."""

    async def aclose(self) -> None: ...


class ScalingPolicy(Protocol):
    """How a replicated actor runs (``spawn(..., replicas=cf.Replicas(...))`` is one).

    The core reads its sizes and starts it; what the policy decides is its own
    business (``cfactor.autoscale``: pure decisions, a controller that applies them).
    """

    @property
    def min(self) -> int:
        """Replicas started at once (and never fewer)."""
        ...

    @property
    def in_flight(self) -> int:
        """Messages one replica holds at a time (its mailbox bound)."""
        ...

    @property
    def key(self) -> Callable[[Any], str | bytes | int] | None:
        """The message's key (one key, one replica, in order), or None."""
        ...

    async def start(self, group: ReplicaGroup, system: Any) -> AsyncResource | None:
        """Attach to the group just started with ``min`` replicas: the running
        controller, closed when the group stops (or None: nothing runs)."""
        ...


class Codec(Protocol):
    """Turns envelopes into frames and back. Pure: no sockets, no clocks."""

    def encode(self, envelope: Envelope) -> bytes:
        """Raises ``cf.MessageNotSerializable`` or ``cf.FrameTooLarge``."""
        ...

    def decode(self, frame: bytes) -> Envelope:
        """Raises only ``cf.ProtocolError`` subclasses, whatever the bytes."""
        ...


__all__ = [
    "Activation",
    "Admission",
    "AsyncResource",
    "Cancellable",
    "Clock",
    "ClusterPlugin",
    "ClusterRuntime",
    "Codec",
    "Envelope",
    "Kind",
    "MemberEvent",
    "MemberInfo",
    "Membership",
    "NameResolver",
    "RefAddress",
    "ReplicaGroup",
    "ScalingPolicy",
    "Transport",
    "TransportHandler",
    "TransportStatistics",
    "WireAddressable",
]
