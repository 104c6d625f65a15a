"""``ZmqTransport``: cfactor's network transport over ZeroMQ (``tcp://``, ``ipc://``).

One ROUTER per member, bound to its listen address and only ever read; one DEALER per
peer, connected to that peer's ROUTER, with the member's own address plus a per-socket
nonce as its routing id, and only ever written. Sockets are synchronous pyzmq sockets
driven by event-loop readers on their file descriptors and drained without blocking:
one awaited ``zmq.asyncio`` receive per message measured ten times slower (docs/measured.md).

The layout, the wire format, credits, liveness and CURVE are described in
``docs/transport.md`` together with the reasons for each choice.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import resource
from collections import deque
from typing import TYPE_CHECKING, Any, Final, cast

import zmq
from zmq.utils.monitor import parse_monitor_message

from cfactor._core.clock import LoopClock
from cfactor.abc import Clock, Envelope, TransportStatistics
from cfactor.errors import (
    ConfigError,
    MailboxFull,
    MalformedFrame,
    MemberUnreachable,
    ProtocolError,
    SystemClosed,
    check_positive,
)
from cfactor.security import Curve
from cfactor.transport_state import (
    ANSWERS,
    REGAINED,
    RESTARTED,
    Departures,
    PeerConfig,
    PeerState,
    Verdict,
)
from cfactor.wire.codec import DEFAULT_MAX_FRAME_SIZE, MsgpackCodec
from cfactor_zmq import _protocol as proto
from cfactor_zmq._auth import ZapHandler

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self

    from cfactor.abc import Cancellable, TransportHandler

logger: Final = logging.getLogger("cfactor.transport")

SOCKET_HWM: Final = 1000
"""zmq's own high-water mark per socket, in messages (batches). Our bounded queues and
credits keep far fewer than this in flight; the mark only guards control traffic."""

MAX_PEERS: Final = 4096
"""The most peers one member keeps (each costs a DEALER); more are refused and counted."""

MAX_SOCKETS: Final = MAX_PEERS + 16
"""The zmq context's socket limit: a DEALER per peer, plus the ROUTER, its monitor and
the ZAP handler's (zmq's default of 1,023 refused peer 1,021)."""

FDS_PER_PEER: Final = 3
"""Open files a peer costs: its DEALER's signalling fd and connection, and its own
connection to our ROUTER."""

FD_RESERVE: Final = 128
"""Open files kept for everything else in the process (etcd, logs, the loop, ...)."""

WANTED_NOFILE: Final = MAX_PEERS * FDS_PER_PEER + FD_RESERVE
"""12,416: the open-file soft limit ``start`` raises the process's toward (up to the hard
limit) so that ``MAX_PEERS`` is reachable."""

FORGET_AFTER_S: Final = 30.0
"""A peer lost and not heard from for this long is forgotten: its DEALER closed, its
counters dropped. A later send to it starts afresh."""

BYE_LINGER_MS: Final = 100
"""How long ``aclose`` lets zmq flush the BYE it wrote to each peer."""

RECONNECT_IVL_S: Final = 0.1
RECONNECT_IVL_MAX_S: Final = 2.0
HANDSHAKE_IVL_S: Final = 10.0
"""A connection that has not finished its ZMTP/CURVE handshake by then is dropped."""

CREDIT_DELAY_S: Final = 0.001
"""A credit that no data batch has carried back within this long goes out on its own."""

DRAIN_MESSAGES: Final = 256
DRAIN_ENVELOPES: Final = 4096
"""One reader callback handles at most this much, then yields to the loop (fairness)."""

PRUNE_EVERY: Final = 1024
"""Parked envelopes of ended asks are dropped from a peer's waiters every this many parks."""

LOG_EVERY_S: Final = 1.0
MAX_FRAME_SIZE_LIMIT: Final = 1 << 30

_NOBLOCK: Final = zmq.NOBLOCK
_MORE: Final = zmq.SNDMORE | zmq.NOBLOCK
_POLLIN: Final = zmq.POLLIN
_POLLOUT: Final = zmq.POLLOUT
_EVENTS: Final = zmq.EVENTS
_RCVMORE: Final = zmq.RCVMORE
_DATA_HEADER_SIZE: Final = proto.DATA_HEADER.size
_pack_data_header: Final = proto.DATA_HEADER.pack
_unpack_data_header: Final = proto.DATA_HEADER.unpack
_join_items: Final = MsgpackCodec.join_items
_HANDSHAKE_FAILURES: Final = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)

_NEW, _RUNNING, _CLOSED = "new", "running", "closed"


def generate_keypair() -> tuple[str, str]:
    """A new CURVE key pair for a member (what ``cfactor keys generate`` writes).

    Returns:
        ``(public_key, secret_key)``, each a 40-character Z85 string.
    """
    public, secret = zmq.curve_keypair()
    return public.decode("ascii"), secret.decode("ascii")


class _Throttle:
    """One log line per second at most, with a count of the lines it held back."""

    __slots__ = ("_clock", "_last", "_level", "_suppressed")

    def __init__(self, clock: Clock, level: int) -> None:
        self._clock = clock
        self._level = level
        self._last = -math.inf
        self._suppressed = 0

    def __call__(self, message: str, *args: object, exc_info: bool = False) -> None:
        now = self._clock.now()
        if now - self._last < LOG_EVERY_S:
            self._suppressed += 1
            return
        if self._suppressed:
            message += " (%d more like this were not logged)"
            args = (*args, self._suppressed)
        self._last = now
        self._suppressed = 0
        logger.log(self._level, message, *args, exc_info=exc_info)


class _Parked:
    """A parked ask's place in a peer's waiters: nobody awaits it but the ask itself."""

    __slots__ = ("waiter",)

    def __init__(self, waiter: asyncio.Future[Any]) -> None:
        self.waiter = waiter

    def done(self) -> bool:
        return self.waiter.done()

    def set_result(self, _result: None) -> None:
        return None  # admitted: the frame is in the queue, the ask waits for its answer

    def set_exception(self, error: BaseException) -> None:
        if not self.waiter.done():
            self.waiter.set_exception(error)


class _Peer(PeerState):
    """What a member knows about one peer: its protocol state (counts, credits,
    liveness: :class:`cfactor.transport_state.PeerState`), and here its DEALER, send
    queue and waiting senders.

    A subclass rather than a field, so that the hot paths read the counts as attributes
    of the peer they already hold.
    """

    __slots__ = (
        "address",
        "blocked",
        "dealer",
        "dirty",
        "fd",
        "key",
        "need_hello",
        "queue",
        "rid",
        "server_key",
        "waiters",
    )

    def __init__(
        self, address: str, dealer: zmq.Socket[bytes], config: PeerConfig, now: float
    ) -> None:
        super().__init__(config, now)
        self.address = address
        #: The routing id its DEALER last wrote to our ROUTER with (b"": none yet).
        self.rid = b""
        self.dealer = dealer
        self.fd: int = dealer.FD
        #: Encoded envelopes not yet written (held by the credit window or zmq's HWM).
        #: A list, not a deque: a batch leaves it by one slice (or by swapping in an
        #: empty list), where popping frames one by one cost 0.08 µs each.
        self.queue: list[bytes] = []
        #: Senders waiting for room in ``queue``, oldest first, with their frame.
        self.waiters: deque[tuple[bytes, asyncio.Future[None] | _Parked]] = deque()
        self.dirty = False
        self.blocked = False  # zmq said Again: waiting for POLLOUT on the DEALER
        self.need_hello = True
        #: The CURVE key bound to this address (the first one seen), if any.
        self.key: str | None = None
        #: The CURVE server key its DEALER expects.
        self.server_key: str | None = None


class ZmqTransport:
    """Moves envelopes between members over ZeroMQ (``tcp://`` and ``ipc://``).

    Implements :class:`cfactor.abc.Transport`. Per peer, envelopes arrive in the order
    sent; every queue is bounded; a peer that stops answering heartbeats is reported
    lost and sends to it fail fast until it is heard again.

    Args:
        security: CurveZMQ keys and the public keys allowed to connect; ``None`` for
            plain, unauthenticated connections (for trusted networks only).
        heartbeat_interval_s: How often a heartbeat goes to each peer.
        heartbeat_timeout_s: A peer not heard from for this long is lost.
        max_frame_size: The largest encoded envelope, either way. Every member of a
            cluster must use the same value.
        send_queue_limit: Envelopes queued per peer before ``send`` waits and
            ``send_nowait`` raises ``MailboxFull``.
        credit_window: Envelopes sent to a peer and not yet credited back by it;
            beyond that they wait in the queue.
        clock: Where heartbeat timing reads time; defaults to the running loop's.

    Raises:
        ConfigError: An argument is out of range or of the wrong type.
    """

    def __init__(
        self,
        *,
        security: Curve | None = None,
        heartbeat_interval_s: float = 0.5,
        heartbeat_timeout_s: float = 2.0,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        send_queue_limit: int = 10_000,
        credit_window: int = 8_192,
        clock: Clock | None = None,
    ) -> None:
        if security is not None and not isinstance(security, Curve):
            raise ConfigError(
                f"security must be a cfactor.security.Curve or None, not {security!r}"
            )
        interval = check_positive("heartbeat_interval_s", heartbeat_interval_s)
        timeout = check_positive("heartbeat_timeout_s", heartbeat_timeout_s)
        if timeout <= interval:
            raise ConfigError(
                f"heartbeat_timeout_s ({timeout:g}) must be longer than heartbeat_interval_s "
                f"({interval:g}), or every peer would be lost between two heartbeats"
            )
        _count("max_frame_size", max_frame_size, 64, MAX_FRAME_SIZE_LIMIT)
        _count("send_queue_limit", send_queue_limit, 1, 1 << 40)
        _count("credit_window", credit_window, 1, 1 << 40)
        if clock is not None and not isinstance(clock, Clock):
            raise ConfigError(f"clock must implement cfactor.abc.Clock, not {clock!r}")
        self._security = security
        self._interval = interval
        self._timeout = timeout
        self._max_frame_size = max_frame_size
        self._queue_limit = send_queue_limit
        self._clock_arg = clock

        self._state = _NEW
        self._address = ""
        # Random per transport (it starts once), never 0 (0 means "unknown"): tells a
        # restarted member from the process that had its address before.
        self._incarnation = int.from_bytes(os.urandom(8), "big") | 1
        self._peers: dict[str, _Peer] = {}
        self._by_rid: dict[bytes, _Peer] = {}
        self._dirty: list[_Peer] = []
        self._flush_handle: asyncio.Handle | None = None
        self._credit_timer: Cancellable | None = None
        self._held: list[_Peer] = []
        self._peer_config = PeerConfig(
            window=credit_window,
            # A lone CREDIT is written once this many envelopes wait to be credited
            # back; fewer ride on the next data batch to that peer, or go after
            # CREDIT_DELAY_S.
            credit_batch=max(1, credit_window // 4),
            heartbeat_timeout_s=timeout,
            forget_after_s=FORGET_AFTER_S,
        )
        self._tick_handle: Cancellable | None = None
        self._prebound: dict[str, str] = {}
        self._frames_sent = 0
        self._frames_received = 0
        self._frames_rejected = 0
        self._dropped = 0
        self._abandoned = 0
        self._context: zmq.Context[zmq.Socket[bytes]] | None = None
        self._router: zmq.Socket[bytes] | None = None
        self._router_fd = -1
        self._monitor: zmq.Socket[bytes] | None = None
        self._monitor_fd = -1
        self._zap: ZapHandler | None = None
        self._hello = b""
        self._max_peers = MAX_PEERS
        #: CURVE: address -> the first key that claimed it, kept after the peer is
        #: forgotten so the binding outlives it (bounded: oldest bindings go first).
        self._bound: dict[str, str] = {}
        #: Peers that said BYE: sends to them fail fast for FORGET_AFTER_S (as to a
        #: lost peer), though their sockets are closed at once.
        self._departed = Departures(FORGET_AFTER_S)

    # -- public surface -----------------------------------------------------------------

    @property
    def address(self) -> str:
        """The address really listened on (a port chosen for ``:0`` included); empty
        before :meth:`start`."""
        return self._address

    @property
    def dropped(self) -> int:
        """Envelopes dropped from send queues because their peer was lost."""
        return self._dropped

    async def start(self, listen: str, handler: TransportHandler) -> None:
        """Bind to ``listen`` and start serving.

        Args:
            listen: ``tcp://host:port`` (port 0 picks a free port) or ``ipc://path``.
            handler: Receives envelopes and lost peers, and builds refs.

        Raises:
            ConfigError: ``listen`` is not a usable address (malformed, a wildcard
                host, in use), or this transport was started before.
        """
        if self._state is not _NEW:
            raise ConfigError("a ZmqTransport can be started only once")
        proto.check_listen(listen)
        loop = asyncio.get_running_loop()
        self._loop = loop
        clock = self._clock_arg if self._clock_arg is not None else LoopClock(loop)
        self._clock = clock
        self._log_rejected = _Throttle(clock, logging.WARNING)
        self._log_auth = _Throttle(clock, logging.WARNING)
        self._log_handler = _Throttle(clock, logging.ERROR)
        self._log_io = _Throttle(clock, logging.WARNING)
        self._log_limit = _Throttle(clock, logging.WARNING)
        codec = MsgpackCodec(max_frame_size=self._max_frame_size, make_ref=handler.make_ref)
        self._encode = codec.encode_item
        self._decode_items = codec.decode_items
        self._handler = handler
        self._deliver = handler.envelope_received
        self._max_peers = _raise_open_file_limit()
        self._context = zmq.Context()
        self._context.set(zmq.MAX_SOCKETS, MAX_SOCKETS)
        try:
            self._open(listen)
        except BaseException:
            self._state = _CLOSED
            self._close_sockets()
            raise
        self._state = _RUNNING
        self._hello = proto.encode_hello(self._address, self._incarnation)
        # Pre-bound CURVE identities: nobody but this member may claim its address,
        # and a peer whose server key is configured must present that key.
        if self._security is not None:
            self._prebound = dict(self._security.server_keys)
            self._prebound[self._address] = self._security.public_key
        # The fds are edge-triggered: something may have arrived before the readers.
        loop.call_soon(self._on_readable)
        loop.call_soon(self._on_monitor)
        self._tick_handle = clock.call_later(self._interval, self._tick)

    def send_nowait(self, peer: str, envelope: Envelope) -> None:
        """Queue ``envelope`` for ``peer``; it is written with the next batch.

        Args:
            peer: The peer member's address (``tcp://host:port`` or ``ipc://path``).
            envelope: What to send; encoded here, once.

        Answers (``REPLY``, ``ERROR``) are queued even when the queue is full: their
        number is bounded by the asks ``peer`` sent.

        Raises:
            MailboxFull: The queue for ``peer`` is full (it has not credited what it
                was sent, or cannot be written to fast enough).
            MemberUnreachable: ``peer`` is known to be gone, or is not an address.
            MessageNotSerializable: The payload cannot cross the wire.
            FrameTooLarge: The encoded envelope is over ``max_frame_size``.
            SystemClosed: The transport is not running.
        """
        p = self._peers.get(peer)
        if p is None or not p.reachable:
            p = self._peer_for_send(peer, p)
        if (p.waiters or len(p.queue) >= self._queue_limit) and envelope.kind not in ANSWERS:
            raise MailboxFull(f"the send queue to {peer} is full ({self._queue_limit} envelopes)")
        p.queue.append(self._encode(envelope))
        if not p.dirty:
            p.dirty = True
            self._dirty.append(p)
            if self._flush_handle is None:
                self._flush_handle = self._loop.call_soon(self._flush)

    async def send(self, peer: str, envelope: Envelope) -> None:
        """As :meth:`send_nowait`, but wait for room in the queue instead of raising.

        Waiting senders are admitted strictly in arrival order; answers never wait.

        Raises:
            MemberUnreachable: ``peer`` is known to be gone (also while waiting), or is
                not an address.
            MessageNotSerializable: The payload cannot cross the wire.
            FrameTooLarge: The encoded envelope is over ``max_frame_size``.
            SystemClosed: The transport is not running (also: closed while waiting).
        """
        p = self._peers.get(peer)
        if p is None or not p.reachable:
            p = self._peer_for_send(peer, p)
        frame = self._encode(envelope)
        if (not p.waiters and len(p.queue) < self._queue_limit) or envelope.kind in ANSWERS:
            p.queue.append(frame)
            self._mark(p)
            return
        admitted: asyncio.Future[None] = self._loop.create_future()
        entry = (frame, admitted)
        p.waiters.append(entry)
        try:
            await admitted
        except BaseException:
            if entry in p.waiters:  # cancelled before it was admitted
                p.waiters.remove(entry)
            raise

    def send_or_park(self, peer: str, envelope: Envelope, waiter: asyncio.Future[Any]) -> None:
        """Queue ``envelope`` for ``peer``, or park it here until there is room.

        For asks: the caller awaits ``waiter`` (the ask's future) under its deadline
        instead of awaiting queue space. A parked envelope whose ``waiter`` is done when
        its turn comes (the ask timed out or was cancelled) is dropped unsent and
        counted in :attr:`abandoned`; if ``peer`` is lost meanwhile, ``waiter`` fails
        with ``MemberUnreachable``.

        Raises:
            MemberUnreachable: ``peer`` is known to be gone, or is not an address.
            MessageNotSerializable: The payload cannot cross the wire.
            FrameTooLarge: The encoded envelope is over ``max_frame_size``.
            SystemClosed: The transport is not running.
        """
        p = self._peers.get(peer)
        if p is None or not p.reachable:
            p = self._peer_for_send(peer, p)
        frame = self._encode(envelope)
        waiters = p.waiters
        if (not waiters and len(p.queue) < self._queue_limit) or envelope.kind in ANSWERS:
            p.queue.append(frame)
            self._mark(p)
            return
        waiters.append((frame, _Parked(waiter)))
        if not len(waiters) % PRUNE_EVERY:
            self._prune(p)

    @property
    def abandoned(self) -> int:
        """Parked envelopes dropped unsent because their ask ended first."""
        return self._abandoned

    def _prune(self, p: _Peer) -> None:
        # Parked frames of asks that ended hold memory until their turn: drop them now
        # and then (every PRUNE_EVERY parks), so a peer that never grants credit cannot
        # make them pile up.
        waiters = p.waiters
        live = [entry for entry in waiters if not entry[1].done()]
        if len(live) != len(waiters):
            self._abandoned += len(waiters) - len(live)
            waiters.clear()
            waiters.extend(live)

    def credit(self, peer: str, count: int = 1) -> None:
        """The handler accepted ``count`` envelopes from ``peer``: it may send more.

        Credits are gathered and sent back once per loop iteration per peer. Credits
        beyond what ``peer`` sent are ignored, as are credits for an unknown peer.

        Raises:
            ConfigError: ``count`` is below 1.
        """
        p = self._peers.get(peer)
        if p is None:
            return
        if count < 1:
            raise ConfigError(f"credit count must be at least 1, not {count!r}")
        credited = p.credited + count
        p.credited = credited if credited <= p.received else p.received  # noqa: FURB136 - hot
        if not p.dirty:
            p.dirty = True
            self._dirty.append(p)
            if self._flush_handle is None:
                self._flush_handle = self._loop.call_soon(self._flush)

    def is_reachable(self, peer: str) -> bool:
        """False while ``peer`` is known to be gone (True for a peer never contacted)."""
        p = self._peers.get(peer)
        return p.reachable if p is not None else peer not in self._departed

    def statistics(self) -> TransportStatistics:
        """A snapshot of peers, counters and queued envelopes."""
        peers = self._peers.values()
        return TransportStatistics(
            peers=len(peers),
            unreachable=sum(1 for p in peers if not p.reachable),
            frames_sent=self._frames_sent,
            frames_received=self._frames_received,
            frames_rejected=self._frames_rejected,
            queued=sum(len(p.queue) for p in peers),
        )

    async def aclose(self) -> None:
        """Close every socket without linger, stop the timers. Idempotent.

        Senders still waiting in :meth:`send` get ``SystemClosed``; queued envelopes
        are dropped.
        """
        was = self._state
        self._state = _CLOSED
        if was is not _RUNNING:
            return  # never started, closed already, or start failed and cleaned up
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._credit_timer is not None:
            self._credit_timer.cancel()
            self._credit_timer = None
        for p in self._peers.values():
            self._fail_waiters(p, SystemClosed, "the transport was closed")
            p.queue.clear()
        self._say_bye()
        self._close_sockets()

    def _say_bye(self) -> None:
        # Each peer that knows us forgets us at once, instead of keeping a DEALER
        # redialling this address until it is lost and then forgotten (a member
        # that served 1,020 short-lived clients ran out of sockets). Best effort: a
        # peer that misses it forgets us after FORGET_AFTER_S.
        bye = proto.encode_bye(self._incarnation)
        for p in self._peers.values():
            if p.blocked or p.need_hello or not p.reachable:
                continue  # nothing was written, or nothing can be now
            try:
                p.dealer.send(proto.BYE, _MORE)
                p.dealer.send(bye, _NOBLOCK)
            except zmq.ZMQError:
                continue
            # Closed here with a short linger, so the context's term (in
            # _close_sockets) waits at most that long for the BYE to leave.
            p.dealer.close(linger=BYE_LINGER_MS)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        unreachable = sum(1 for p in self._peers.values() if not p.reachable)
        return (
            f"<ZmqTransport {self._address or '(not started)'} {self._state} "
            f"peers={len(self._peers)} unreachable={unreachable} "
            f"curve={'on' if self._security is not None else 'off'}>"
        )

    # -- sockets --------------------------------------------------------------------------

    def _open(self, listen: str) -> None:
        context = self._context
        assert context is not None
        loop = self._loop
        security = self._security
        if security is not None:
            # Bound before the ROUTER: a CURVE server with no ZAP handler in its
            # context lets every client in.
            self._zap = ZapHandler(context, loop, security.allowed_keys, self._auth_rejected)
        router: zmq.Socket[bytes] = context.socket(zmq.ROUTER)
        self._router = router
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.RCVHWM, SOCKET_HWM)
        router.setsockopt(zmq.SNDHWM, SOCKET_HWM)
        # The ROUTER never sends, so nothing can be dropped for want of a route; if a
        # send were ever added, this turns a silent drop into an error.
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # ROUTER_HANDOVER: a DEALER that redials (after a gray failure: SIGSTOP, a
        # cut link) takes its routing id over from its stale connection. Without it,
        # zmq parked the new connection as an anonymous pipe and, in 4 of 7 runs,
        # never read it again, so an old peer could not reach a resumed member. The
        # routing id holds a random per-socket nonce, so only the socket that owns
        # it can claim it (and CURVE binds the address to a key besides).
        router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        # zmq itself refuses an oversized part, before a byte of it reaches Python.
        router.setsockopt(zmq.MAXMSGSIZE, proto.max_part_size(self._max_frame_size))
        router.setsockopt(zmq.HANDSHAKE_IVL, int(HANDSHAKE_IVL_S * 1000))
        # zmq's listen backlog is 100: peers connecting at once beyond that had their
        # SYNs dropped and retried by TCP after 1, 3, 7 s...: 4,095 peers at once took
        # 47 s to connect, 5.8 s with this. The kernel caps it at net.core.somaxconn.
        router.setsockopt(zmq.BACKLOG, MAX_PEERS)
        self._set_zmtp_heartbeats(router)
        if proto.is_ipv6(listen):
            router.setsockopt(zmq.IPV6, 1)
        if security is not None:
            router.setsockopt(zmq.ZAP_DOMAIN, b"cfactor")
            router.setsockopt(zmq.CURVE_SERVER, 1)
            router.setsockopt(zmq.CURVE_SECRETKEY, security.secret_key.encode("ascii"))
            router.setsockopt(zmq.CURVE_PUBLICKEY, security.public_key.encode("ascii"))
        monitor = router.get_monitor_socket(_HANDSHAKE_FAILURES | zmq.EVENT_ACCEPT_FAILED)
        self._monitor = monitor
        try:
            router.bind(listen)
        except zmq.ZMQError as exc:
            raise ConfigError(f"cannot listen on {listen!r}: {exc}") from exc
        endpoint = router.getsockopt(zmq.LAST_ENDPOINT)
        assert isinstance(endpoint, bytes)
        address = endpoint.decode()
        if not proto.is_peer_address(address):
            raise ConfigError(f"listening on {address!r}, which peers could not connect to")
        self._address = address
        self._router_fd = router.FD
        self._monitor_fd = monitor.FD
        loop.add_reader(self._router_fd, self._on_readable)
        loop.add_reader(self._monitor_fd, self._on_monitor)

    def _set_zmtp_heartbeats(self, sock: zmq.Socket[bytes]) -> None:
        # zmq's own PING/PONG is answered by its I/O thread even while our loop is
        # busy, so it only notices dead connections (a vanished host), which it then
        # drops and redials; our heartbeats notice stuck members as well.
        sock.setsockopt(zmq.HEARTBEAT_IVL, max(1, int(self._interval * 1000)))
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, max(1, int(self._timeout * 1000)))

    def _server_key(self, address: str, learned: str | None) -> str | None:
        # The key the peer's ROUTER must prove it holds: configured for its address;
        # else the key it authenticated with when it contacted us (a member is a CURVE
        # client and server with one key pair); else our own (a cluster sharing one
        # key pair needs no configuration).
        security = self._security
        if security is None:
            return None
        return security.server_keys.get(address) or learned or security.public_key

    def _new_dealer(self, address: str, server_key: str | None) -> zmq.Socket[bytes]:
        context = self._context
        assert context is not None
        try:
            dealer: zmq.Socket[bytes] = context.socket(zmq.DEALER)
        except zmq.ZMQError as exc:
            # zmq's socket limit (MAX_SOCKETS) or the process's open-file limit.
            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
            self._log_limit(
                "cannot open a socket to peer %s: %s (open-file limit %d, %d peers, "
                "zmq socket limit %d)",
                address,
                exc,
                soft,
                len(self._peers),
                MAX_SOCKETS,
            )
            raise MemberUnreachable(
                f"cannot connect to {address}: {exc} (open-file limit {soft})"
            ) from exc
        try:
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.setsockopt(zmq.SNDHWM, SOCKET_HWM)
            dealer.setsockopt(zmq.RCVHWM, 1)  # the ROUTER it talks to never sends
            # A new socket is a new identity (see ROUTER_HANDOVER in _open).
            dealer.setsockopt(
                zmq.ROUTING_ID, proto.routing_id(self._address, os.urandom(proto.NONCE_BYTES))
            )
            # Queue nothing in zmq for a connection that is not up: envelopes stay in
            # our own bounded, counted queue, and are dropped there if the peer is
            # lost, instead of surfacing from zmq long after peer_lost was reported.
            dealer.setsockopt(zmq.IMMEDIATE, 1)
            reconnect_max = min(RECONNECT_IVL_MAX_S, self._timeout)
            dealer.setsockopt(zmq.RECONNECT_IVL, int(min(RECONNECT_IVL_S, reconnect_max) * 1000))
            dealer.setsockopt(zmq.RECONNECT_IVL_MAX, int(reconnect_max * 1000))
            # A SYN into the void is retried after this, not after the OS's minutes.
            dealer.setsockopt(zmq.CONNECT_TIMEOUT, max(1, int(self._timeout * 1000)))
            self._set_zmtp_heartbeats(dealer)
            if proto.is_ipv6(address):
                dealer.setsockopt(zmq.IPV6, 1)
            security = self._security
            if security is not None:
                dealer.setsockopt(zmq.CURVE_SECRETKEY, security.secret_key.encode("ascii"))
                dealer.setsockopt(zmq.CURVE_PUBLICKEY, security.public_key.encode("ascii"))
                assert server_key is not None
                dealer.setsockopt(zmq.CURVE_SERVERKEY, server_key.encode("ascii"))
            dealer.connect(address)
        except zmq.ZMQError as exc:
            dealer.close(linger=0)
            raise MemberUnreachable(f"cannot connect to {address}: {exc}") from exc
        return dealer

    def _close_sockets(self) -> None:
        loop = self._loop
        for p in self._peers.values():
            if p.blocked:
                p.blocked = False
                loop.remove_reader(p.fd)
            p.dealer.close(linger=0)
        self._peers.clear()
        self._by_rid.clear()
        self._dirty.clear()
        router = self._router
        if router is not None:
            if self._router_fd >= 0:
                loop.remove_reader(self._router_fd)
            if self._monitor is not None:
                router.disable_monitor()
            router.close(linger=0)
            self._router = None
        if self._monitor is not None:
            if self._monitor_fd >= 0:
                loop.remove_reader(self._monitor_fd)
            self._monitor.close(linger=0)
            self._monitor = None
        if self._zap is not None:
            self._zap.close()
            self._zap = None
        if self._context is not None:
            # Every socket is closed with linger 0, so this returns at once; destroy
            # rather than term, so that a socket missed here cannot hang the loop.
            self._context.destroy(linger=0)
            self._context = None

    # -- peers ----------------------------------------------------------------------------

    def _peer_for_send(self, peer: str, p: _Peer | None) -> _Peer:
        # The slow path of send/send_nowait: a new or an unreachable peer.
        if self._state is not _RUNNING:
            raise SystemClosed(
                "the transport is not running"
                + (" (closed)" if self._state is _CLOSED else " (call start first)")
            )
        if p is None:
            if type(peer) is not str or not proto.is_peer_address(peer):
                raise MemberUnreachable(
                    f"{peer!r} is not a member address ('tcp://host:port' or 'ipc://path')"
                )
            if len(self._peers) >= self._max_peers:
                self._too_many_peers(peer)
                raise MemberUnreachable(
                    f"cannot reach {peer}: too many peers (already {self._max_peers})"
                )
            if peer in self._departed:
                # It said BYE: fail fast, as for a lost peer, but dial it again (a lost
                # peer's DEALER redials too), so that a member restarted on that
                # address is found: it answers our HELLO, and is heard.
                self._departed.discard(peer)
                self._add_peer(peer).reachable = False
                raise MemberUnreachable(f"{peer} is unreachable: it closed")
            return self._add_peer(peer)
        raise MemberUnreachable(
            f"{peer} is unreachable: not heard from for over {self._timeout:g} s"
        )

    def _add_peer(self, address: str, key: str | None = None) -> _Peer:
        key = self._prebound.get(address) or self._bound.get(address) or key
        server_key = self._server_key(address, key)
        p = _Peer(
            address, self._new_dealer(address, server_key), self._peer_config, self._clock.now()
        )
        p.key = key
        p.server_key = server_key
        self._peers[address] = p
        if key is not None:
            self._bind_key(address, key)
        self._mark(p)  # the HELLO goes out first
        return p

    def _bind_key(self, address: str, key: str) -> None:
        bound = self._bound
        if address not in bound:
            if len(bound) >= 16 * MAX_PEERS:
                del bound[next(iter(bound))]
            bound[address] = key

    def _contact(self, address: str, key: str | None) -> _Peer | None:
        # First message from an address we do not know: a new peer, if we have room
        # (we connect back to it, to reply and heartbeat).
        if key is not None:
            bound = self._prebound.get(address) or self._bound.get(address)
            if bound is not None and bound != key:
                self._impersonation(address, bound, key)
                return None
        if len(self._peers) >= self._max_peers:
            self._too_many_peers(address)
            self._reject(address, f"too many peers (already {self._max_peers})")
            return None
        try:
            p = self._add_peer(address, key)
        except MemberUnreachable as exc:
            self._reject(address, str(exc))
            return None
        self._departed.discard(address)  # it came back
        logger.debug("new peer %s", address)
        return p

    def _too_many_peers(self, address: str) -> None:
        self._log_limit(
            "too many peers: refused %s, already %d (MAX_PEERS %d, open-file limit %d)",
            address,
            len(self._peers),
            MAX_PEERS,
            resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        )

    def _forget(self, p: _Peer, why: str) -> None:
        # Close the peer's DEALER and drop what we know of it (a later send or
        # message starts afresh): departed peers must not hold sockets for good.
        if self._peers.get(p.address) is p:
            del self._peers[p.address]
        if p.rid and self._by_rid.get(p.rid) is p:
            del self._by_rid[p.rid]
        dropped = len(p.queue) + sum(1 for _, admitted in p.waiters if not admitted.done())
        p.queue.clear()
        self._fail_waiters(p, MemberUnreachable, f"{p.address} is gone: {why}")
        self._dropped += dropped
        if p.blocked:
            self._loop.remove_reader(p.fd)
        # Blocked for good: a flush that still holds this peer skips it; and it is
        # owed no credit, or the credit timer would take it up again and again.
        p.blocked = True
        p.forgotten()
        p.dealer.close(linger=0)
        logger.debug("forgot peer %s: %s; dropped %d queued envelopes", p.address, why, dropped)

    def _mark(self, p: _Peer) -> None:
        if not p.dirty:
            p.dirty = True
            self._dirty.append(p)
            if self._flush_handle is None:
                self._flush_handle = self._loop.call_soon(self._flush)

    def _tick(self) -> None:
        # Every heartbeat interval: refresh liveness, lose the silent, beat to all.
        self._tick_handle = None
        if self._state is not _RUNNING:
            return
        now = self._clock.now()
        self._departed.expire(now)
        for p in list(self._peers.values()):
            verdict = p.tick(now)
            if verdict is Verdict.FORGET:
                self._forget(p, f"not heard from for {p.silent_for(now):.0f} s")
                continue
            if verdict is Verdict.LOST:
                self._lose(p, now)
            self._mark(p)  # a BEAT is due
        self._tick_handle = self._clock.call_later(self._interval, self._tick)

    def _lose(self, p: _Peer, now: float) -> None:
        # (``p.tick`` made it unreachable.)
        dropped = len(p.queue) + sum(1 for _, admitted in p.waiters if not admitted.done())
        p.queue.clear()
        self._fail_waiters(
            p,
            MemberUnreachable,
            f"{p.address} is unreachable: not heard from for {self._timeout:g} s",
        )
        self._dropped += dropped
        logger.warning(
            "peer %s lost: not heard from for %.2f s; dropped %d queued envelopes",
            p.address,
            p.silent_for(now),
            dropped,
        )
        self._report_lost(p)

    def _report_lost(self, p: _Peer) -> None:
        try:
            self._handler.peer_lost(p.address)
        except Exception:
            self._log_handler("handler.peer_lost(%r) raised", p.address, exc_info=True)

    def _bye(self, p: _Peer) -> None:
        # The peer is closing (BYE): what waits on it fails now, and its socket goes.
        logger.debug("peer %s said goodbye", p.address)
        if p.reachable:
            self._report_lost(p)
        self._forget(p, "it closed")
        self._departed.add(p.address, self._clock.now())

    @staticmethod
    def _fail_waiters(p: _Peer, error: type[Exception], message: str) -> None:
        # One exception per waiter: a shared instance would collect every waiter's
        # traceback.
        waiters = p.waiters
        while waiters:
            _, admitted = waiters.popleft()
            if not admitted.done():
                admitted.set_exception(error(message))

    # -- writing --------------------------------------------------------------------------

    def _flush(self) -> None:
        # One call per loop iteration writes what every dirty peer has: control
        # messages first, then envelopes in batches, as far as credits allow.
        self._flush_handle = None
        dirty = self._dirty
        self._dirty = []
        arm = self._credit_timer is None
        for p in dirty:
            p.dirty = False
            if not p.blocked:
                self._write(p)
            if arm and p.hold_credit():
                self._held.append(p)
        if arm and self._held and self._state is _RUNNING:
            self._credit_timer = self._clock.call_later(CREDIT_DELAY_S, self._send_credits)

    def _send_credits(self) -> None:
        # Credits held back when the timer was armed that no data batch has carried
        # since go out as lone CREDITs. (Newer ones arm the timer again.)
        self._credit_timer = None
        held = self._held
        self._held = []
        if self._state is not _RUNNING:
            return
        for p in held:
            if p.credit_overdue():
                self._mark(p)

    def _write(self, p: _Peer) -> None:
        send = p.dealer.send
        incarnation = self._incarnation
        try:
            if p.need_hello:
                send(proto.HELLO, _MORE)
                send(self._hello, _NOBLOCK)
                p.need_hello = False
            beat = p.need_beat
            if beat:
                send(proto.BEAT, _MORE)
                send(proto.encode_beat(incarnation, p.sent), _NOBLOCK)
                p.need_beat = False
            # Else the credit rides on the next data batch to this peer, or goes after
            # CREDIT_DELAY_S: a lone CREDIT for every envelope received made an ask
            # four zmq messages instead of two.
            if p.lone_credit_due(beat):
                credited = p.credited
                send(proto.CREDIT, _MORE)
                send(proto.encode_credit(incarnation, p.incarnation, credited), _NOBLOCK)
                p.credit_written(credited)
            while p.queue:
                room = p.room()
                if room <= 0:
                    break  # the rest waits for CREDIT
                frames = _take(p, min(room, proto.BATCH_FRAMES))
                credited = p.credited
                try:
                    send(
                        _pack_data_header(proto.DATA, incarnation, p.sent, p.incarnation, credited),
                        _MORE,
                    )
                except zmq.Again:
                    p.queue[0:0] = frames
                    raise
                # zmq delivers a multipart message whole or not at all: once its first
                # part is accepted, the rest is too.
                send(_join_items(frames), _NOBLOCK)
                count = len(frames)
                p.credit_written(credited)
                p.data_written(count)
                self._frames_sent += count
                if p.waiters:
                    self._admit(p)
        except zmq.Again:
            self._block(p)
        except zmq.ZMQError as exc:
            self._log_io("writing to %s failed: %s", p.address, exc)

    def _admit(self, p: _Peer) -> None:
        # Hand freed queue slots to the oldest waiting senders, in order.
        queue = p.queue
        waiters = p.waiters
        limit = self._queue_limit
        while waiters and len(queue) < limit:
            frame, admitted = waiters.popleft()
            if not admitted.done():
                queue.append(frame)
                admitted.set_result(None)
            else:  # its ask ended (or its sender was cancelled): dropped unsent
                self._abandoned += 1

    def _block(self, p: _Peer) -> None:
        # zmq's HWM is reached, or (IMMEDIATE) the connection is not up yet: wait for
        # POLLOUT. The fd is edge-triggered, so look once more after adding the reader.
        p.blocked = True
        self._loop.add_reader(p.fd, self._on_writable, p)
        if _events(p.dealer) & _POLLOUT:
            self._loop.call_soon(self._on_writable, p)

    def _on_writable(self, p: _Peer) -> None:
        if not p.blocked or self._state is not _RUNNING:
            return
        try:
            events = _events(p.dealer)
        except zmq.ZMQError:
            return
        if events & _POLLOUT:
            p.blocked = False
            self._loop.remove_reader(p.fd)
            self._write(p)

    # -- reading --------------------------------------------------------------------------

    def _on_readable(self) -> None:
        # Drain the ROUTER without blocking until zmq says Again, a bounded amount per
        # call. Never raises: a bad message is counted, logged and dropped.
        if self._state is not _RUNNING:
            return
        sock = self._router
        assert sock is not None
        recv = sock.recv
        getopt = sock.getsockopt
        curve = self._security is not None
        messages = envelopes = 0
        try:
            while messages < DRAIN_MESSAGES and envelopes < DRAIN_ENVELOPES:
                key: str | None = None
                try:
                    if curve:
                        first = sock.recv(_NOBLOCK, copy=False)
                        rid = first.bytes
                        key = _user_id(first)
                    else:
                        rid = recv(_NOBLOCK)
                except zmq.Again:
                    # Edge-triggered fd: only EVENTS tells if more came meanwhile.
                    if _events(sock) & _POLLIN:
                        continue
                    return
                parts: list[bytes] = []
                extra = 0
                while getopt(_RCVMORE):
                    part = recv(_NOBLOCK)
                    if len(parts) < 2:
                        parts.append(part)
                    else:
                        extra += 1  # a hostile part count: read and drop the rest
                messages += 1
                envelopes += self._handle(rid, key, parts, extra)
        except zmq.ZMQError as exc:
            if self._state is _RUNNING:
                self._log_io("reading the ROUTER failed: %s", exc)
            return
        self._loop.call_soon(self._on_readable)  # more may be waiting: after the others

    def _handle(self, rid: bytes, key: str | None, parts: list[bytes], extra: int) -> int:
        # Check the message's shape before anything else, so that junk neither counts
        # as a sign of life nor makes this member connect back to whoever sent it.
        if extra or len(parts) != 2:
            self._reject(_source(rid), f"a message of {len(parts) + extra + 1} parts, not 3")
            return 0
        header, body = parts
        frames: list[Envelope | ProtocolError] | None = None
        control: proto.Control | None = None
        try:
            if header[:1] == proto.DATA:
                if len(header) != _DATA_HEADER_SIZE:
                    raise MalformedFrame("a data header of the wrong length")
                frames = self._decode_items(body, proto.MAX_BATCH_FRAMES)
            else:
                control = proto.decode_control(header, body)
                if (
                    type(control) is proto.Hello
                    and proto.routing_id_address(rid) != control.address
                ):
                    raise MalformedFrame("its HELLO claims another address than its routing id")
        except ProtocolError as exc:
            self._reject(_source(rid), str(exc))
            return 0
        p = self._by_rid.get(rid)
        if p is None or (key != p.key and self._security is not None):
            p = self._authenticate(rid, key, p)
            if p is None:
                return 0
        if frames is not None:
            return self._handle_data(p, header, frames)
        assert control is not None
        if type(control) is proto.Bye:
            if p.bye_received(control.incarnation):
                self._bye(p)
            return 0
        self._heard(p, control.incarnation)
        if type(control) is proto.Credit:
            if control.peer_incarnation == self._incarnation:
                self._acked(p, control.credited)
        elif type(control) is proto.Beat and p.beat_received(control.sent):
            # Envelopes sent before this heartbeat that never came were written to a
            # connection that broke: nobody else will credit them; credit them back.
            self._mark(p)
        return 0

    def _authenticate(self, rid: bytes, key: str | None, p: _Peer | None) -> _Peer | None:
        # A routing id seen for the first time, or (CURVE) with another key than the
        # one its address is bound to.
        if p is not None:
            return self._bind(p, key)
        address = proto.routing_id_address(rid)
        if address is None:
            self._reject(_source(rid), "its routing id is not a tcp:// or ipc:// address")
            return None
        if self._security is not None and key is None:
            self._reject(_source(rid), "no authenticated CURVE key")
            return None
        p = self._peers.get(address)
        if p is None:
            p = self._contact(address, key)
        elif key != p.key and self._security is not None:
            p = self._bind(p, key)
        if p is None:
            return None
        # A new DEALER of this peer (new nonce): it restarted, or forgot us and came
        # back. Its routing id replaces the old one, so _by_rid stays one per peer.
        if p.rid:
            self._by_rid.pop(p.rid, None)
        p.rid = rid
        self._by_rid[rid] = p
        return p

    def _bind(self, p: _Peer, key: str | None) -> _Peer | None:
        # (CURVE) A message from peer ``p`` with another key than the one it had.
        if p.key is not None or key is None:
            self._impersonation(p.address, p.key, key)
            return None
        p.key = key  # the first authenticated key seen for this address binds it
        self._bind_key(p.address, key)
        server_key = self._server_key(p.address, key)
        if server_key != p.server_key:
            self._redial(p, server_key)
        return p

    def _redial(self, p: _Peer, server_key: str | None) -> None:
        # We dialled this peer (a send) before it told us its key, with a server key
        # guessed from our own: its ROUTER could not have accepted that handshake, so
        # nothing was written; dial again with the key it proved it holds.
        if p.blocked:
            p.blocked = False
            self._loop.remove_reader(p.fd)
        p.dealer.close(linger=0)
        try:
            p.dealer = self._new_dealer(p.address, server_key)
        except MemberUnreachable as exc:  # pragma: no cover - the address dialled before
            self._log_io("cannot redial %s: %s", p.address, exc)
            return
        p.fd = p.dealer.FD
        p.server_key = server_key
        p.need_hello = True
        self._mark(p)

    def _acked(self, p: _Peer, credited: int) -> None:
        if p.credit_received(credited) and p.queue:
            self._mark(p)

    def _handle_data(self, p: _Peer, header: bytes, frames: list[Envelope | ProtocolError]) -> int:
        _, incarnation, seq, mine, credited = _unpack_data_header(header)
        self._heard(p, incarnation)
        if mine == self._incarnation:
            # A credit riding on the batch (as in CREDIT).
            self._acked(p, credited)
        count = len(frames)
        if p.data_received(seq, count):
            # The envelopes in between were written to a connection that broke.
            self._mark(p)
        deliver = self._deliver
        address = p.address
        remaining = iter(frames)
        delivered = count
        while True:
            try:
                for envelope in remaining:
                    if type(envelope) is Envelope:
                        deliver(address, envelope)
                    else:
                        # A bad item is refused on its own; the rest of its batch is
                        # still delivered.
                        delivered -= 1
                        self._reject(address, str(envelope))
                        self._written_off(p, 1)
                break
            except Exception:
                # The handler's bug, not the peer's: count the envelope as taken, so
                # the peer's credit does not leak away; go on with the next one.
                self._log_handler("handler.envelope_received raised", exc_info=True)
                self._written_off(p, 1)
        self._frames_received += delivered
        return count

    def _heard(self, p: _Peer, incarnation: int) -> None:
        news = p.hear(incarnation)
        if news:
            if news & RESTARTED:
                # Whatever waited on its earlier incarnation is gone with it.
                logger.warning("peer %s restarted", p.address)
                self._report_lost(p)
            if news & REGAINED:
                logger.info("peer %s is reachable again", p.address)

    def _written_off(self, p: _Peer, count: int) -> None:
        # Envelopes the handler will never see (rejected, or its handler raised) are
        # credited here, so the sender's window does not shrink for good.
        p.credit(count)
        self._mark(p)

    def _on_monitor(self) -> None:
        # Handshake failures on the ROUTER: a client without CURVE, with an unknown
        # key or the wrong server key, or speaking something else than ZMTP.
        sock = self._monitor
        if sock is None or self._state is not _RUNNING:
            return
        for _ in range(DRAIN_MESSAGES):
            try:
                message = sock.recv_multipart(_NOBLOCK)
            except zmq.Again:
                if _events(sock) & _POLLIN:
                    continue
                return
            except zmq.ZMQError:
                return
            try:
                event = parse_monitor_message(message)
            except RuntimeError:
                continue
            if event["event"] == zmq.EVENT_ACCEPT_FAILED:
                # zmq's listener goes on; the client redials, and fails until fds free.
                self._log_limit(
                    "could not accept a connection to %s: %s (open-file limit %d, %d peers)",
                    self._address,
                    os.strerror(event["value"]),
                    resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                    len(self._peers),
                )
                continue
            self._frames_rejected += 1
            self._log_auth(
                "a connection to %s failed its handshake: %s (%s)",
                self._address,
                zmq.Event(event["event"]).name,
                event["value"],
            )
        self._loop.call_soon(self._on_monitor)

    # -- rejections -----------------------------------------------------------------------

    def _reject(self, source: str, reason: str) -> None:
        self._frames_rejected += 1
        self._log_rejected("dropped a message from %s: %s", source, reason[:300])

    def _impersonation(self, address: str, bound: str | None, key: str | None) -> None:
        self._frames_rejected += 1
        self._log_auth(
            "dropped a message claiming to be %s from CURVE key %s; that address is bound "
            "to key %s",
            address,
            key,
            bound,
        )

    def _auth_rejected(self, client: str, reason: str) -> None:
        self._log_auth("refused a CURVE client at %s: %s", client, reason)


def _raise_open_file_limit() -> int:
    # Raise the soft open-file limit toward WANTED_NOFILE (never above the hard limit,
    # never down), and return how many peers the limit then allows.
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = WANTED_NOFILE if hard == resource.RLIM_INFINITY else min(WANTED_NOFILE, hard)
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    except (OSError, ValueError) as exc:  # pragma: no cover - a sandbox refused it
        logger.warning("cannot raise the open-file limit: %s", exc)
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return MAX_PEERS
    peers = max(1, min(MAX_PEERS, (soft - FD_RESERVE) // FDS_PER_PEER))
    if peers < MAX_PEERS:
        logger.warning(
            "open-file limit %d (hard %d) allows about %d peers, not MAX_PEERS %d: raise "
            "it (ulimit -n %d) to reach them all",
            soft,
            hard,
            peers,
            MAX_PEERS,
            WANTED_NOFILE,
        )
    return peers


def _take(p: _Peer, limit: int) -> list[bytes]:
    # Up to ``limit`` frames off the front of the peer's queue, and about BATCH_BYTES
    # at most (the first frame always goes, whatever its size).
    queue = p.queue
    if len(queue) <= limit:
        frames = queue
        p.queue = []
    else:
        frames = queue[:limit]
        del queue[:limit]
    if len(frames) > 1 and sum(map(len, frames)) > proto.BATCH_BYTES:
        total = 0
        for index, frame in enumerate(frames):
            total += len(frame)
            if total > proto.BATCH_BYTES and index:
                p.queue[0:0] = frames[index:]
                del frames[index:]
                break
    return frames


def _events(sock: zmq.Socket[bytes]) -> int:
    return cast("int", sock.getsockopt(_EVENTS))


def _source(rid: bytes) -> str:
    # A routing id as a log can show it: hostile ones may be any 255 bytes.
    return repr(rid[:80].decode(errors="replace"))


def _user_id(frame: zmq.Frame) -> str | None:
    # The ZAP handler made each client's Z85 public key its user id.
    try:
        user_id = frame.get("User-Id")
    except zmq.ZMQError:
        return None
    return user_id if isinstance(user_id, str) else None


def _count(name: str, value: Any, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise ConfigError(f"{name} must be an int from {low} to {high}, not {value!r}")


__all__ = ["ZmqTransport", "generate_keypair"]
