"""Several members in one process: ``MemoryNetwork`` and ``MemoryTransport``.

Every frame one member sends another passes through ``MemoryNetwork.deliver`` (and every
credit grant through ``MemoryNetwork.deliver_credit``, every heartbeat through
``MemoryNetwork.deliver_beat``), so a subclass can drop, delay or reorder them: the
simulation (``cfactor.testing.sim``) injects its faults there.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from cfactor._core.clock import LoopClock
from cfactor.abc import Envelope, TransportStatistics
from cfactor.errors import (
    CfactorError,
    ConfigError,
    MailboxFull,
    MemberUnreachable,
    ProtocolError,
    SystemClosed,
    check_positive,
)
from cfactor.transport_state import ANSWERS, REGAINED, PeerConfig, PeerState, Verdict
from cfactor.wire import MsgpackCodec

if TYPE_CHECKING:
    from cfactor.abc import Cancellable, Clock, TransportHandler

logger = logging.getLogger("cfactor.transport")


class MemoryNetwork:
    """Several members in one process: the wire is the event loop.

    Give each ``ActorSystem`` a ``MemoryTransport(network)``; they reach each other by
    ``mem://`` address. ``kill(address)`` makes a member vanish without a word, as a
    SIGKILL would; the others notice it at once (a real transport needs its heartbeat
    timeout). A member cut off without a word (by a subclass that drops its frames and
    heartbeats) is found by its silence, if its peers' transports beat
    (``MemoryTransport(heartbeat_interval_s=...)``).
    """

    def __init__(self) -> None:
        self.members: dict[str, MemoryTransport] = {}
        self._next = itertools.count(1)

    def new_address(self) -> str:
        return f"mem://member-{next(self._next)}"

    def deliver(self, source: str, dest: MemoryTransport, frames: list[bytes]) -> None:
        """Carry ``frames`` from ``source`` to ``dest``: on the next loop iteration, in
        order. A subclass may drop, delay or duplicate them; a dropped frame must be
        credited back to the sender (``deliver_credit``), as a real session layer would
        notice the gap, or the sender's credit window shrinks for good."""
        asyncio.get_running_loop().call_soon(dest._receive, source, frames)

    def deliver_credit(self, source: str, dest: MemoryTransport, count: int) -> None:
        """Carry a credit grant of ``count`` frames from ``source`` to ``dest``."""
        asyncio.get_running_loop().call_soon(dest._credited, source, count)

    def deliver_beat(self, source: str, dest: MemoryTransport) -> None:
        """Carry a heartbeat from ``source`` to ``dest`` (transports that beat send one
        to each peer every interval; any frame, credit or heartbeat is a sign of life)."""
        asyncio.get_running_loop().call_soon(dest._beat, source)

    def kill(self, address: str) -> None:
        member = self.members.pop(address, None)
        if member is not None:
            member._killed = True
        for other in list(self.members.values()):
            other._lose(address)


class _MemoryPeer(PeerState):
    """A peer's protocol state (the zmq transport's: ``cfactor.transport_state``), and
    here its send queue and waiting senders."""

    __slots__ = ("queue", "waiters")

    def __init__(self, config: PeerConfig, now: float) -> None:
        super().__init__(config, now)
        self.queue: deque[bytes] = deque()
        self.waiters: deque[asyncio.Future[None]] = deque()


class MemoryTransport:
    """An in-process ``cf.abc.Transport`` with the real one's contract.

    Args:
        network: The members it can reach.
        send_queue_limit: Envelopes queued per peer before ``send`` waits.
        credit_window: Envelopes sent to a peer and not yet credited back by it.
        max_frame_size: The largest encoded envelope.
        security: Ignored: nothing to secure in one process.
        clock: Where heartbeat timing reads time; defaults to the running loop's.
        heartbeat_interval_s: If set, a heartbeat goes to each peer this often, and a
            peer not heard from for ``heartbeat_timeout_s`` is lost (as with the zmq
            transport, ``cfactor.transport_state``), and found again when heard. Off by
            default: ``MemoryNetwork.kill`` tells every member at once.
        heartbeat_timeout_s: See ``heartbeat_interval_s``.

    Every envelope is encoded and decoded with the wire codec (so what cannot cross a
    real wire cannot cross this one), per-peer queues are bounded, and a receiver
    grants credit only for envelopes its handler accepted (or that were rejected): the
    credit window is the zmq transport's, ``cfactor.transport_state.PeerState``. Credits
    cross the network as grants (deltas), which ``MemoryNetwork.deliver_credit`` carries.
    """

    def __init__(
        self,
        network: MemoryNetwork,
        *,
        send_queue_limit: int = 10_000,
        credit_window: int = 8_192,
        max_frame_size: int = 4 * 1024 * 1024,
        security: object | None = None,
        clock: Clock | None = None,
        heartbeat_interval_s: float | None = None,
        heartbeat_timeout_s: float = 2.0,
    ) -> None:
        del security  # nothing to secure in one process
        if heartbeat_interval_s is not None:
            check_positive("heartbeat_interval_s", heartbeat_interval_s)
            check_positive("heartbeat_timeout_s", heartbeat_timeout_s)
            if heartbeat_timeout_s <= heartbeat_interval_s:
                raise ConfigError("heartbeat_timeout_s must be longer than heartbeat_interval_s")
        self._interval = heartbeat_interval_s
        self._clock_arg = clock
        self._clock: Clock | None = None
        self._tick_handle: Cancellable | None = None
        self.network = network
        self.send_queue_limit = send_queue_limit
        self.credit_window = credit_window
        self.max_frame_size = max_frame_size
        self._address = ""
        self._handler: TransportHandler | None = None
        self._codec: MsgpackCodec | None = None
        self._peers: dict[str, _MemoryPeer] = {}
        self._peer_config = PeerConfig(
            window=credit_window,
            credit_batch=1,  # every credit goes at the end of the loop iteration
            heartbeat_timeout_s=heartbeat_timeout_s,
            forget_after_s=float("inf"),  # no sockets to free: a lost peer is kept
        )
        self._credits: dict[str, None] = {}
        self._dirty: dict[str, None] = {}
        self._flush_scheduled = False
        self._credit_scheduled = False
        self._killed = False
        self._closed = False
        self._sent = self._received = self._rejected = 0
        #: Parked envelopes dropped unsent because their ask ended first.
        self.abandoned = 0
        self._parked: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        return self._address

    async def start(self, listen: str, handler: TransportHandler) -> None:
        if not listen.startswith("mem://"):
            raise ConfigError(f"a memory transport listens on mem:// addresses, not {listen!r}")
        address = self.network.new_address() if listen in ("mem://", "mem://:0") else listen
        if address in self.network.members:
            raise ConfigError(f"{address} is taken")
        self._address = address
        self._handler = handler
        self._codec = MsgpackCodec(max_frame_size=self.max_frame_size, make_ref=handler.make_ref)
        self.network.members[address] = self
        if self._interval is not None:
            clock = self._clock_arg or LoopClock(asyncio.get_running_loop())
            self._clock = clock
            self._tick_handle = clock.call_later(self._interval, self._tick)

    def _peer(self, address: str) -> _MemoryPeer:
        peer = self._peers.get(address)
        if peer is None:
            now = self._clock.now() if self._clock is not None else 0.0
            peer = self._peers[address] = _MemoryPeer(self._peer_config, now)
        return peer

    def _heard(self, state: _MemoryPeer, address: str) -> None:
        # Without heartbeats a lost peer stays lost (MemoryNetwork.kill is final).
        if self._clock is not None and state.hear(1) & REGAINED:
            logger.info("peer %s is reachable again", address)

    def _beat(self, source: str) -> None:
        if not (self._closed or self._killed):
            self._heard(self._peer(source), source)

    def _tick(self) -> None:
        # Every heartbeat interval: lose the silent, beat to all (the zmq transport's).
        self._tick_handle = None
        clock = self._clock
        if self._closed or self._killed or clock is None or self._interval is None:
            return
        now = clock.now()
        for address, state in list(self._peers.items()):
            if state.tick(now) is Verdict.LOST:
                logger.warning(
                    "peer %s lost: not heard from for %.2f s", address, state.silent_for(now)
                )
                self._lost(address, state)
            dest = self.network.members.get(address)
            if dest is not None:
                self.network.deliver_beat(self._address, dest)
            state.need_beat = False
        self._tick_handle = clock.call_later(self._interval, self._tick)

    def send_nowait(self, peer: str, envelope: Envelope) -> None:
        if self._closed or self._codec is None:
            raise SystemClosed("this transport is closed")
        state = self._peer(peer)
        if not state.reachable or peer not in self.network.members:
            self._lose(peer)
            raise MemberUnreachable(f"member {peer} is unreachable")
        # Answers are bounded by the asks the peer sent, which its credit bounds.
        if len(state.queue) >= self.send_queue_limit and envelope.kind not in ANSWERS:
            raise MailboxFull(f"send queue to {peer} is full ({self.send_queue_limit} envelopes)")
        state.queue.append(self._codec.encode(envelope))
        self._dirty[peer] = None
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def send(self, peer: str, envelope: Envelope) -> None:
        if self._closed:
            raise SystemClosed("this transport is closed")
        state = self._peer(peer)
        while len(state.queue) >= self.send_queue_limit and state.reachable:
            waiter = asyncio.get_running_loop().create_future()
            state.waiters.append(waiter)
            await waiter
        self.send_nowait(peer, envelope)

    def send_or_park(self, peer: str, envelope: Envelope, waiter: asyncio.Future[Any]) -> None:
        """As the zmq transport's: queue now, or wait for room unless ``waiter`` is done."""
        if self._closed:
            raise SystemClosed("this transport is closed")
        state = self._peer(peer)
        if len(state.queue) < self.send_queue_limit or envelope.kind in ANSWERS:
            self.send_nowait(peer, envelope)
            return
        task = asyncio.get_running_loop().create_task(self._park(peer, envelope, waiter))
        self._parked.add(task)
        task.add_done_callback(self._parked.discard)

    async def _park(self, peer: str, envelope: Envelope, waiter: asyncio.Future[Any]) -> None:
        state = self._peer(peer)
        try:
            while len(state.queue) >= self.send_queue_limit and state.reachable:
                if waiter.done():
                    self.abandoned += 1
                    return
                room = asyncio.get_running_loop().create_future()
                state.waiters.append(room)
                await asyncio.wait((room, waiter), return_when=asyncio.FIRST_COMPLETED)
            if waiter.done():
                self.abandoned += 1
                return
            self.send_nowait(peer, envelope)
        except CfactorError as exc:
            if not waiter.done():
                waiter.set_exception(exc)

    def _flush(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, {}
        for address in dirty:
            state = self._peers[address]
            dest = self.network.members.get(address)
            if dest is None:
                self._lose(address)
                continue
            count = min(len(state.queue), state.room())
            if count <= 0:
                continue
            frames = [state.queue.popleft() for _ in range(count)]
            state.data_written(count)
            self._sent += count
            self.network.deliver(self._address, dest, frames)
            while state.waiters and len(state.queue) < self.send_queue_limit:
                waiter = state.waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)

    def _receive(self, source: str, frames: list[bytes]) -> None:
        if self._closed or self._killed or self._handler is None or self._codec is None:
            return
        state = self._peer(source)
        self._heard(state, source)
        state.data_received(state.received, len(frames))
        for frame in frames:
            try:
                envelope = self._codec.decode(frame)
            except ProtocolError:
                self._rejected += 1
                self.credit(source)  # written off, as the zmq transport does
                continue
            self._received += 1
            self._handler.envelope_received(source, envelope)

    def credit(self, peer: str, count: int = 1) -> None:
        if count < 1:
            raise ConfigError(f"credit count must be at least 1, not {count!r}")
        state = self._peers.get(peer)
        if state is None:
            return  # (as the zmq transport: credits for an unknown peer are ignored)
        state.credit(count)
        self._credits[peer] = None
        if not self._credit_scheduled:
            self._credit_scheduled = True
            asyncio.get_running_loop().call_soon(self._send_credits)

    def _send_credits(self) -> None:
        self._credit_scheduled = False
        owed, self._credits = self._credits, {}
        for address in owed:
            state = self._peers[address]
            credited = state.credited
            count = credited - state.credit_sent
            dest = self.network.members.get(address)
            if count > 0 and dest is not None:
                state.credit_written(credited)
                self.network.deliver_credit(self._address, dest, count)

    def _credited(self, peer: str, count: int) -> None:
        # A grant of ``count`` (the network's unit: a delta); the state keeps totals.
        state = self._peers.get(peer)
        if state is None:
            return
        self._heard(state, peer)
        if state.credit_received(state.acked + count) and state.queue:
            self._dirty[peer] = None
            if not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)

    def _lose(self, address: str) -> None:
        state = self._peer(address)
        if not state.reachable:
            return
        state.reachable = False
        self._lost(address, state)

    def _lost(self, address: str, state: _MemoryPeer) -> None:
        state.queue.clear()
        while state.waiters:
            waiter = state.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # send() then raises MemberUnreachable
        if self._handler is not None and not self._closed:
            self._handler.peer_lost(address)

    def is_reachable(self, peer: str) -> bool:
        state = self._peers.get(peer)
        return (state is None or state.reachable) and peer in self.network.members

    def statistics(self) -> TransportStatistics:
        return TransportStatistics(
            peers=len(self._peers),
            unreachable=sum(1 for p in self._peers.values() if not p.reachable),
            frames_sent=self._sent,
            frames_received=self._received,
            frames_rejected=self._rejected,
            queued=sum(len(p.queue) for p in self._peers.values()),
        )

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        if self.network.members.get(self._address) is self:
            self.network.kill(self._address)
