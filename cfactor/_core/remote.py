"""The remote layer: refs to actors on other members, and envelopes from them.

It sits between the cells and a ``cf.abc.Transport`` and knows nothing of sockets.
Outgoing: a ref to a remote actor holds a ``RemoteTarget``, which turns ``tell``,
``ask`` and ``stop`` into envelopes for the transport. Incoming: ``Remote`` (the
system's ``TransportHandler``) puts envelopes into mailboxes, completes asks by
correlation id, and grants the transport credit only when a message is accepted, so a
full mailbox here slows the sender there.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from functools import partial
from typing import TYPE_CHECKING, Any

from cfactor._core.cell import ALIVE, STOPPING, describe_exception
from cfactor._core.mailbox import REMOTE_ASK, HeldCredit
from cfactor._core.ref import ActorRef
from cfactor.abc import Admission, Envelope, Kind, RefAddress
from cfactor.errors import (
    ActorError,
    ActorNotFound,
    AskTimeout,
    CfactorError,
    ConfigError,
    MailboxFull,
    MemberUnreachable,
    MessageNotSerializable,
    ProtocolError,
    RemoteActorError,
    error_from_wire,
    wire_error_name,
)

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Coroutine

    from cfactor._core.cell import ActorCell
    from cfactor._core.mailbox import MailboxStatistics
    from cfactor._core.system import ActorSystem
    from cfactor.abc import Cancellable, Transport

log = logging.getLogger("cfactor.remote")

REMOTE_ASK_PARK_LIMIT = 128
"""Asks with a deadline from other members parked behind one full mailbox; beyond
that they are refused at once with ``MailboxFull``. Their transport credit goes back
on arrival, so a full actor never holds its sender's window shut for others."""

REMOTE_ASK_WINDOW = 1024
"""Asks to one remote actor handed to the transport at a time; later ones wait here, in
order, under their own deadline. The per-peer send queue is FIFO for every actor of
that peer: without this bound, a flood of asks to one (hung) actor queued ahead of an
ask to its idle neighbour delays that ask by the whole flood (1.6 s for 20,000 here).
Above any pipelining that pays (benchmarks/transport.py uses 1,000 in flight)."""

TELL_HOLD_AT = 256
"""Tells parked behind one full actor holding their sender's credit; beyond that the
member gives each further tell's credit back at once and asks its sender to hold tells
to that actor (a flood of tells to one hung actor must not shut the credit window the
sender shares with every other actor here). See docs/runtime.md, "Ask deadlines"."""

TELL_HOLD_LIMIT = 65_536
"""Tells parked behind one actor without holding credit (those in flight before the
sender heard "hold"). Beyond: dead letters, counted in ``refused_full`` and logged."""

HOLD_RESIGNAL_S = 0.2
"""A member asks the same sender to hold tells to the same actor at most this often."""

HOLD_MAX_S = 1.0
"""A sender holds tells for this long after the last "hold" unless told to resume (so a
lost "resume" costs a second, not a stall); the member says "hold" again if needed."""

_HOLD, _RESUME = "cfactor.hold", "cfactor.resume"

COMPACT_EVERY_S = 0.005
"""At most this often per actor, a full mailbox that refuses a remote message is first
searched for asks out of their budget (``Mailbox.compact``)."""


def error_payload(error: BaseException) -> tuple[str, str, str, str]:
    """(error name, message, remote type name, traceback) for an ERROR envelope: an
    error in the wire table (``cfactor.errors.register_wire_error``) by its name,
    anything else as ``RemoteActorError``."""
    if isinstance(error, RemoteActorError):
        return ("RemoteActorError", error.message, error.type_name, error.traceback)
    name = wire_error_name(error)
    if name is not None:
        return (name, str(error), "", "")
    described = describe_exception(error)
    return ("RemoteActorError", described.message, described.type_name, described.traceback)


def error_from_payload(payload: Any) -> CfactorError:
    """The typed error an ERROR envelope carries (a peer's bytes: trust nothing)."""
    if not (
        isinstance(payload, tuple)
        and len(payload) == 4
        and all(isinstance(p, str) for p in payload)
    ):
        return ProtocolError(f"malformed error reply from a peer: {payload!r:.200}")
    name, message, type_name, traceback = payload
    if name == "RemoteActorError":
        return RemoteActorError(type_name, message, traceback)
    error = error_from_wire(name, message)
    if error is None:
        return RemoteActorError(name, message, traceback)
    return error


def _ask_timeout(target: RemoteTarget, timeout: float) -> AskTimeout:
    return AskTimeout(
        f"actor {target.name!r} at {target.address} did not answer within {timeout:g} s"
    )


class RemoteTarget:
    """The far end of a ref to an actor on another member.

    Duck-typed like ``ActorCell`` for ``ActorRef``: tell, tell_nowait, ask, stop.
    One per (address, name) in a system, so refs to the same actor compare equal.
    """

    __slots__ = (
        "address",
        "held",
        "held_until",
        "hold_timer",
        "in_flight",
        "name",
        "ref",
        "remote",
        "tell_waiters",
        "timeout_error",
    )

    uid = 0  # unknown: the other member owns the incarnation

    def __init__(self, remote: Remote, address: str, name: str) -> None:
        self.remote = remote
        self.address = address
        self.name = name
        self.ref = ActorRef(self)
        #: Asks to this actor handed to the transport and not yet ended, and asks
        #: held back here (beyond REMOTE_ASK_WINDOW), oldest first.
        self.in_flight = 0
        self.held: deque[tuple[Envelope, asyncio.Future[Any]]] | None = None
        #: The deadline error builder, per timeout (one object, not one per ask).
        self.timeout_error: dict[float, Callable[[], BaseException]] = {}
        #: Tells are held until then (the actor's member asked: it is full); 0: not.
        self.held_until = 0.0
        self.hold_timer: Cancellable | None = None
        self.tell_waiters: deque[asyncio.Future[None]] | None = None

    @property
    def is_alive(self) -> bool:
        return self.remote.transport.is_reachable(self.address)

    def describe(self) -> str:
        state = "remote" if self.is_alive else "unreachable"
        return f"{self.name}@{self.address} {state}"

    def wire_address(self) -> RefAddress:
        return RefAddress(self.address, self.name, 0)

    def statistics(self) -> MailboxStatistics:
        raise ActorError(
            f"mailbox statistics of {self.name!r} live on {self.address}; ask that member"
        )

    async def tell(self, message: Any) -> None:
        if self.held_until:
            # Its member asked to hold tells to it (full): wait, in line, until resumed.
            waiters = self.tell_waiters
            if waiters is None:
                waiters = self.tell_waiters = deque()
            turn: asyncio.Future[None] = self.remote.system.loop.create_future()
            waiters.append(turn)
            await turn
        envelope = Envelope(Kind.TELL, self.name, None, 0, None, message)
        transport = self.remote.transport
        try:
            # No second coroutine while the queue has room (nearly always).
            transport.send_nowait(self.address, envelope)
        except MailboxFull:
            await transport.send(self.address, envelope)

    def tell_nowait(self, message: Any) -> None:
        if self.held_until:
            raise MailboxFull(
                f"actor {self.name!r} at {self.address} is full: its member asked to hold tells"
            )
        self.remote.transport.send_nowait(
            self.address, Envelope(Kind.TELL, self.name, None, 0, None, message)
        )

    def hold_tells(self) -> None:
        """The actor's member is full of our tells: hold new ones for up to HOLD_MAX_S."""
        remote = self.remote
        self.held_until = remote.now() + HOLD_MAX_S
        if self.hold_timer is None:
            self.hold_timer = remote.system.clock.call_later(HOLD_MAX_S, self._hold_expired)

    def _hold_expired(self) -> None:
        self.hold_timer = None
        if not self.held_until:
            return
        left = self.held_until - self.remote.now()
        if left > 0:  # renewed meanwhile
            self.hold_timer = self.remote.system.clock.call_later(left, self._hold_expired)
        else:
            self.resume_tells()

    def resume_tells(self) -> None:
        """Send held tells again, oldest first."""
        self.held_until = 0.0
        if self.hold_timer is not None:
            self.hold_timer.cancel()
            self.hold_timer = None
        waiters, self.tell_waiters = self.tell_waiters, None
        while waiters:
            turn = waiters.popleft()
            if not turn.done():
                turn.set_result(None)

    def ask(self, message: Any, timeout: float | None) -> Coroutine[Any, Any, Any]:
        # The remote layer's coroutine itself: one coroutine and frame less per ask
        # (20,000 asks in flight are 20,000 objects less for the GC to walk).
        return self.remote.ask(self, Kind.ASK, message, timeout)

    async def stop(self) -> None:
        await self.remote.ask(self, Kind.STOP, None, None)


class RemoteReply:
    """Where a remote ask's answer goes: duck-typed like the future of a local ask."""

    __slots__ = ("correlation_id", "expires", "peer", "remote", "sent")

    def __init__(
        self, remote: Remote, peer: str, correlation_id: int, expires: float | None = None
    ) -> None:
        self.remote = remote
        self.peer = peer
        self.correlation_id = correlation_id
        #: When the asker stops waiting, on this member's clock (from the envelope's
        #: relative budget: clocks of two members are not comparable).
        self.expires = expires
        self.sent = False

    def done(self) -> bool:
        """True once answered, or once the asker's budget is spent (it is skipped)."""
        expires = self.expires
        return self.sent or (expires is not None and self.remote.now() >= expires)

    def set_result(self, result: Any) -> None:
        self.sent = True
        self.remote.reply(
            self.peer, Envelope(Kind.REPLY, self.peer, None, self.correlation_id, None, result)
        )

    def set_exception(self, error: BaseException) -> None:
        self.sent = True
        self.remote.reply(
            self.peer,
            Envelope(Kind.ERROR, self.peer, None, self.correlation_id, None, error_payload(error)),
        )


class Credit(HeldCredit):
    """Admission of messages from one peer: each admission returns one credit.

    One per peer, shared by all its parked messages, so parking a remote message costs
    no object of its own. A parked remote message cannot be cancelled or time out
    (nobody awaits it), so ``done()`` is always False: the mailbox admits it, or hands
    it back with ``take_all`` when the actor stops, and either way calls
    ``set_result``. Admissions are counted and handed to the transport in one
    ``credit(peer, n)`` call at the end of the loop iteration's ready callbacks, not
    one call per message.
    """

    __slots__ = ("count", "credit", "loop", "peer")

    def __init__(self, transport: Transport, peer: str, loop: asyncio.AbstractEventLoop) -> None:
        self.credit = transport.credit
        self.peer = peer
        self.loop = loop
        self.count = 0

    def done(self) -> bool:
        return False

    def set_result(self, _result: None) -> None:
        count = self.count
        self.count = count + 1
        if not count:
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        count = self.count
        self.count = 0
        self.credit(self.peer, count)


class TellHold:
    """Tells parked behind one full actor without holding their sender's credit.

    The mailbox's admission for them: each admission counts one down; when none is
    left, the senders that were asked to hold are told to resume.
    """

    __slots__ = ("cell", "count", "remote", "signalled")

    def __init__(self, remote: Remote, cell: ActorCell) -> None:
        self.remote = remote
        self.cell = cell
        self.count = 0
        #: Senders asked to hold, and when they were last asked.
        self.signalled: dict[str, float] = {}

    def done(self) -> bool:
        return False

    def set_result(self, _result: None) -> None:
        self.count -= 1
        if self.count <= 0:
            self.remote.end_hold(self)

    def signal(self, peer: str) -> None:
        now = self.remote.now()
        last = self.signalled.get(peer)
        if last is None or now - last >= HOLD_RESIGNAL_S:
            self.signalled[peer] = now
            self.remote.flow_control(peer, _HOLD, self.cell.name)


class Remote:
    """The system's side of a transport (``cf.abc.TransportHandler``)."""

    def __init__(self, system: ActorSystem, transport: Transport) -> None:
        self.system = system
        self.transport = transport
        self._targets: dict[tuple[str, str], RemoteTarget] = {}
        self._pending: dict[int, tuple[asyncio.Future[Any], str]] = {}
        self._credits: dict[str, Credit] = {}
        #: Futures of asks handed to the transport (they hold a place in their
        #: target's REMOTE_ASK_WINDOW until they end).
        self._in_flight: set[asyncio.Future[Any]] = set()
        #: Full actors whose remote senders were asked to hold tells.
        self._holds: dict[ActorCell, TellHold] = {}
        self._names = system._names
        self._next_id = 1
        self.now = system.clock.now
        self.replies_dropped = 0
        self.stale_rejected = 0
        #: Asks from other members refused with ``MailboxFull`` because their actor's
        #: mailbox and its REMOTE_ASK_PARK_LIMIT parking places were full.
        self.refused_full = 0
        self._refused_logged = 0
        self._refused_log_at = -math.inf

    # -- outgoing ---------------------------------------------------------------------------

    def target(self, address: str, name: str) -> RemoteTarget:
        key = (address, name)
        target = self._targets.get(key)
        if target is None:
            target = self._targets[key] = RemoteTarget(self, address, name)
        return target

    async def ask(
        self, target: RemoteTarget, kind: Kind, message: Any, timeout: float | None
    ) -> Any:
        system = self.system
        if timeout is None:
            timeout = system.ask_timeout_s
        elif not timeout > 0:
            raise ConfigError(f"ask timeout must be a positive number of seconds, got {timeout!r}")
        correlation_id = self._next_id
        self._next_id = correlation_id + 1
        future: asyncio.Future[Any] = system.loop.create_future()
        self._pending[correlation_id] = (future, target.address)
        budget = None if timeout == math.inf else timeout
        envelope = Envelope(kind, target.name, None, correlation_id, budget, message)
        key = 0
        if budget is not None:
            # The deadline runs from here: waiting for the window, queue space or
            # credit is part of the ask's budget; a frame still unsent by then is
            # dropped unsent.
            error = target.timeout_error.get(timeout)
            if error is None:
                if len(target.timeout_error) >= 16:  # bounded: callers may vary timeouts
                    target.timeout_error.clear()
                error = target.timeout_error[timeout] = partial(_ask_timeout, target, timeout)
            key = system.deadlines.add(future, timeout, error)
        try:
            if target.in_flight < REMOTE_ASK_WINDOW and not target.held:
                target.in_flight += 1
                self._in_flight.add(future)
                self.transport.send_or_park(target.address, envelope, future)
            else:
                held = target.held
                if held is None:
                    held = target.held = deque()
                held.append((envelope, future))
            return await future
        finally:
            if budget is not None:
                system.deadlines.discard(key, future)
            self._pending.pop(correlation_id, None)
            if future in self._in_flight:
                self._in_flight.discard(future)
                target.in_flight -= 1
                if target.held:
                    self._release(target)
            # Break the cycle future -> error -> traceback -> this frame -> future, so a
            # failed ask is freed at once rather than by a cyclic GC pass (see cell.ask).
            del future, envelope

    def _release(self, target: RemoteTarget) -> None:
        """Hand held asks to the transport while ``target``'s window has room."""
        held = target.held
        while held and target.in_flight < REMOTE_ASK_WINDOW:
            envelope, future = held.popleft()
            if future.done():
                continue  # it ended while held: never sent
            target.in_flight += 1
            self._in_flight.add(future)
            try:
                self.transport.send_or_park(target.address, envelope, future)
            except CfactorError as exc:
                future.set_exception(exc)
        if not held:
            target.held = None

    def reply(self, peer: str, envelope: Envelope) -> None:
        """Send an ask's answer; an answer that cannot be sent is counted and logged."""
        try:
            self.transport.send_nowait(peer, envelope)
        except MessageNotSerializable as exc:
            if envelope.kind is Kind.REPLY:
                error = Envelope(
                    Kind.ERROR, peer, None, envelope.correlation_id, None, error_payload(exc)
                )
                self.reply(peer, error)
                return
            self._drop_reply(peer, exc)
        except CfactorError as exc:  # unreachable peer, full queue, oversized frame
            self._drop_reply(peer, exc)

    def _drop_reply(self, peer: str, exc: BaseException) -> None:
        self.replies_dropped += 1
        log.warning("reply to %s dropped (%d so far): %r", peer, self.replies_dropped, exc)

    # -- incoming (TransportHandler) -------------------------------------------------------------

    def envelope_received(self, peer: str, envelope: Envelope) -> None:  # noqa: PLR0911 - a dispatcher
        kind = envelope.kind
        if kind is Kind.TELL:
            # The hot path, inlined: a tell to a running actor.
            cell = self._names.get(envelope.target)
            if cell is not None and cell.state == ALIVE:
                told = (envelope.payload, None)
                admission = self._credits.get(peer)
                if admission is None:
                    admission = self._credit_for(peer)
                queue = cell.queue
                if cell.waiters or (queue is not None and len(queue) >= cell.capacity):
                    # Parked holding its credit: a slow actor slows its senders; past
                    # TELL_HOLD_AT, they are asked to hold tells to it instead.
                    if cell.parked_held < TELL_HOLD_AT and not self._holds:
                        cell.park(told, admission)
                    else:
                        self._park_tell(peer, cell, envelope, admission)
                    return
                cell.append(told)
                admission.set_result(None)
                if cell.task is None:
                    cell.schedule()
                return
        elif kind is Kind.REPLY or kind is Kind.ERROR:
            self.transport.credit(peer)
            if not envelope.correlation_id:
                self._flow_control_received(peer, envelope.payload)
                return
            entry = self._pending.get(envelope.correlation_id)
            if entry is None or entry[1] != peer or entry[0].done():
                return  # the ask timed out or was cancelled: a late answer is dropped
            future = entry[0]
            if kind is Kind.REPLY:
                future.set_result(envelope.payload)
            else:
                future.set_exception(error_from_payload(envelope.payload))
            return
        target = envelope.target
        reply = None
        if kind is not Kind.TELL:
            budget = envelope.deadline
            reply = RemoteReply(
                self, peer, envelope.correlation_id, None if budget is None else self.now() + budget
            )
        cell = self._names.get(target)
        if cell is None and (resolver := self.system.hosting.resolver) is not None:
            # Not a local name: maybe an address the resolver hands out (a cluster's
            # "name@epoch"); it says which local name it means, or why none.
            admitted = resolver.admit(target, envelope.payload, tell=kind is Kind.TELL)
            if admitted is Admission.TAKEN:
                self.transport.credit(peer)
                return
            if admitted is Admission.STALE:
                self._reject_stale(peer, envelope, reply)
                return
            if type(admitted) is str:
                target = admitted
                cell = self._names.get(target)
        if cell is None:
            group = self.system._groups.get(target)
            if group is not None and group.is_alive:
                if kind is Kind.STOP:
                    self.transport.credit(peer)
                    self.system.spawn_background(self._stop_and_reply(group.stop(), reply))
                else:
                    credit = self._credits.get(peer) or self._credit_for(peer)
                    group.deliver((envelope.payload, reply), credit)
                return
        if cell is None or cell.state >= STOPPING:
            self.transport.credit(peer)
            if reply is None:
                self.system.dead_letter(
                    envelope.target, envelope.payload, f"no such actor (from {peer})"
                )
            elif kind is Kind.STOP:
                reply.set_result(None)  # stopping what is not there is done
            else:
                reply.set_exception(
                    ActorNotFound(f"no actor named {envelope.target!r} at {self.system.address}")
                )
            return
        if kind is Kind.STOP:
            self.transport.credit(peer)
            self.system.spawn_background(self._stop_and_reply(cell.stop(), reply))
            return
        item = (envelope.payload, reply)
        if cell.has_room():
            cell.append(item)
            self.transport.credit(peer)
            if cell.task is None and cell.state == ALIVE:
                cell.schedule()
        elif reply is not None and reply.expires is not None:
            # An ask with a deadline: its credit goes back now (it is bounded here, by
            # REMOTE_ASK_PARK_LIMIT, and ends by its deadline anyway).
            self.transport.credit(peer)
            if reply.done():
                cell.asks_expired += 1  # out of budget on arrival: never handled
            elif cell.parked_asks < REMOTE_ASK_PARK_LIMIT or self._compacted(cell):
                cell.park(item, REMOTE_ASK)
            else:
                self._refuse(peer, cell, reply)
        else:
            # A tell or an ask with no deadline: parked holding its credit, as above.
            credit = self._credits.get(peer) or self._credit_for(peer)
            if reply is None and (cell.parked_held >= TELL_HOLD_AT or self._holds):
                self._park_tell(peer, cell, envelope, credit)
            else:
                cell.park(item, credit)

    def _park_tell(self, peer: str, cell: ActorCell, envelope: Envelope, credit: Credit) -> None:
        """Park a tell for a full actor: holding its credit up to TELL_HOLD_AT, then
        with its credit back at once, asking the sender to hold tells to this actor."""
        hold = self._holds.get(cell)
        if hold is None:
            if cell.parked_held < TELL_HOLD_AT:
                cell.park((envelope.payload, None), credit)
                return
            hold = self._holds[cell] = TellHold(self, cell)
        self.transport.credit(peer)
        if hold.count >= TELL_HOLD_LIMIT:
            self.refused_full += 1
            self.system.dead_letter(cell.name, envelope.payload, f"mailbox full (from {peer})")
            self._log_refused(peer, cell)
            hold.signal(peer)
            return
        hold.count += 1
        cell.park((envelope.payload, None), hold)
        hold.signal(peer)

    def end_hold(self, hold: TellHold) -> None:
        """Every tell parked under ``hold`` entered the mailbox (or the actor stopped)."""
        if self._holds.get(hold.cell) is hold:
            del self._holds[hold.cell]
        for peer in hold.signalled:
            self.flow_control(peer, _RESUME, hold.cell.name)

    def flow_control(self, peer: str, what: str, name: str) -> None:
        """Ask ``peer`` to hold or resume its tells to the actor ``name``.

        An ERROR envelope with correlation id 0: a member that does not know this
        drops it as the answer to no ask (so mixed versions keep working).
        """
        self.reply(peer, Envelope(Kind.ERROR, peer, None, 0, None, (what, name, "", "")))

    def _flow_control_received(self, peer: str, payload: Any) -> None:
        if not (isinstance(payload, tuple) and len(payload) == 4 and isinstance(payload[1], str)):
            return  # not ours: an ERROR for no ask, dropped as before
        target = self._targets.get((peer, payload[1]))
        if target is None:
            return
        if payload[0] == _HOLD:
            target.hold_tells()
        elif payload[0] == _RESUME:
            target.resume_tells()

    def _compacted(self, cell: ActorCell) -> bool:
        """Whether dropping the asks out of budget from ``cell`` made a parking place."""
        now = self.now()
        if now - cell.compacted_at < COMPACT_EVERY_S:
            return False
        cell.compacted_at = now
        if cell.compact():
            cell.schedule()
        return cell.parked_asks < REMOTE_ASK_PARK_LIMIT

    def _refuse(self, peer: str, cell: ActorCell, reply: RemoteReply) -> None:
        """An ask for a full actor with no parking place left: count, log, answer."""
        self.refused_full += 1
        reply.set_exception(
            MailboxFull(
                f"mailbox of {cell.name!r} at {self.system.address} is full "
                f"({cell.capacity} messages and {cell.parked_asks} asks parked)"
            )
        )
        self._log_refused(peer, cell)

    def _log_refused(self, peer: str, cell: ActorCell) -> None:
        now = self.now()
        if now - self._refused_log_at >= 1.0:
            self._refused_log_at = now
            unlogged = self.refused_full - self._refused_logged
            self._refused_logged = self.refused_full
            log.warning(
                "refused %d messages from other members to full actors (%d in all), "
                "latest to %r from %s",
                unlogged,
                self.refused_full,
                cell.name,
                peer,
            )

    def _credit_for(self, peer: str) -> Credit:
        credit = self._credits[peer] = Credit(self.transport, peer, self.system.loop)
        return credit

    def _reject_stale(self, peer: str, envelope: Envelope, reply: RemoteReply | None) -> None:
        self.stale_rejected += 1
        self.transport.credit(peer)
        # Counted in stale_rejected; one line per message would flood the log in a storm.
        log.debug("rejected a message to a stale activation %r from %s", envelope.target, peer)
        if reply is not None:
            reply.set_exception(
                ActorNotFound(
                    f"{envelope.target!r} is not the current activation on {self.system.address}"
                )
            )
        else:
            # A tell nobody will handle: a dead letter (counted, and logged at a rate).
            self.system.dead_letter(
                envelope.target, envelope.payload, f"stale activation (from {peer})"
            )

    async def _stop_and_reply(self, stopping: Any, reply: RemoteReply | None) -> None:
        await stopping
        if reply is not None:
            reply.set_result(None)

    def peer_lost(self, peer: str) -> None:
        for (address, _name), target in list(self._targets.items()):
            if address == peer and target.held_until:
                target.resume_tells()  # their sends now fail with MemberUnreachable
        lost = [
            (cid, future) for cid, (future, address) in self._pending.items() if address == peer
        ]
        for _cid, future in lost:
            if not future.done():
                future.set_exception(MemberUnreachable(f"member {peer} is unreachable"))
        if lost:
            log.warning("member %s is unreachable; %d asks to it failed", peer, len(lost))

    def make_ref(self, address: RefAddress) -> ActorRef:
        if address.address == self.system.address:
            cell = self.system._names.get(address.name)
            if cell is not None and (address.uid in (0, cell.uid)):
                return cell.ref
            return self.target(address.address, address.name).ref  # gone: will dead-letter
        return self.target(address.address, address.name).ref

    def fail_pending(self, error: CfactorError) -> None:
        for future, _peer in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
