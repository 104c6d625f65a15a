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
from functools import partial
from typing import TYPE_CHECKING, Any

from cfactor._core.cell import ALIVE, STOPPING, describe_exception
from cfactor._core.ref import ActorRef
from cfactor.abc import Envelope, Kind, RefAddress
from cfactor.errors import (
    ActorError,
    ActorNotFound,
    ActorStopped,
    AskTimeout,
    CfactorError,
    ConfigError,
    MailboxFull,
    MembershipUnavailable,
    MessageNotSerializable,
    NameTaken,
    NodeUnreachable,
    ProtocolError,
    RemoteActorError,
)

if TYPE_CHECKING:
    import asyncio

    from cfactor._core.mailbox import MailboxStatistics
    from cfactor._core.system import ActorSystem
    from cfactor.abc import Transport

log = logging.getLogger("cfactor.remote")

#: Errors an ERROR envelope may name; anything else arrives as RemoteActorError.
_WIRE_ERRORS: dict[str, type[CfactorError]] = {
    cls.__name__: cls
    for cls in (
        ActorNotFound,
        ActorStopped,
        MailboxFull,
        MessageNotSerializable,
        AskTimeout,
        MembershipUnavailable,
        NameTaken,
        ConfigError,
    )
}


def error_payload(error: BaseException) -> tuple[str, str, str, str]:
    """(error name, message, remote type name, traceback) for an ERROR envelope."""
    if isinstance(error, RemoteActorError):
        return ("RemoteActorError", error.message, error.type_name, error.traceback)
    if type(error).__name__ in _WIRE_ERRORS:
        return (type(error).__name__, str(error), "", "")
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
    cls = _WIRE_ERRORS.get(name)
    if cls is None:
        return RemoteActorError(name, message, traceback)
    return cls(message)


def _ask_timeout(target: str, timeout: float) -> AskTimeout:
    return AskTimeout(f"actor {target} did not answer within {timeout:g} s")


class RemoteTarget:
    """The far end of a ref to an actor on another member.

    Duck-typed like ``ActorCell`` for ``ActorRef``: tell, tell_nowait, ask, stop.
    One per (address, name) in a system, so refs to the same actor compare equal.
    """

    __slots__ = ("address", "name", "ref", "remote")

    uid = 0  # unknown: the other member owns the incarnation

    def __init__(self, remote: Remote, address: str, name: str) -> None:
        self.remote = remote
        self.address = address
        self.name = name
        self.ref = ActorRef(self)

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
        envelope = Envelope(Kind.TELL, self.name, None, 0, None, message)
        transport = self.remote.transport
        try:
            # No second coroutine while the queue has room (nearly always).
            transport.send_nowait(self.address, envelope)
        except MailboxFull:
            await transport.send(self.address, envelope)

    def tell_nowait(self, message: Any) -> None:
        self.remote.transport.send_nowait(
            self.address, Envelope(Kind.TELL, self.name, None, 0, None, message)
        )

    async def ask(self, message: Any, timeout: float | None) -> Any:
        return await self.remote.ask(self, Kind.ASK, message, timeout)

    async def stop(self) -> None:
        await self.remote.ask(self, Kind.STOP, None, None)


class RemoteReply:
    """Where a remote ask's answer goes: duck-typed like the future of a local ask."""

    __slots__ = ("correlation_id", "peer", "remote", "sent")

    def __init__(self, remote: Remote, peer: str, correlation_id: int) -> None:
        self.remote = remote
        self.peer = peer
        self.correlation_id = correlation_id
        self.sent = False

    def done(self) -> bool:
        return self.sent

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


class Credit:
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


class Remote:
    """The system's side of a transport (``cf.abc.TransportHandler``)."""

    def __init__(self, system: ActorSystem, transport: Transport) -> None:
        self.system = system
        self.transport = transport
        self._targets: dict[tuple[str, str], RemoteTarget] = {}
        self._pending: dict[int, tuple[asyncio.Future[Any], str]] = {}
        self._credits: dict[str, Credit] = {}
        self._names = system._names
        self._next_id = 1
        self.replies_dropped = 0
        self.stale_rejected = 0

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
        try:
            started = system.clock.now()
            budget = None if timeout == math.inf else timeout
            await self.transport.send(
                target.address,
                Envelope(kind, target.name, None, correlation_id, budget, message),
            )
            if budget is None:
                return await future
            remaining = timeout - (system.clock.now() - started)
            where = f"{target.name!r} at {target.address}"
            key = system.deadlines.add(future, remaining, partial(_ask_timeout, where, timeout))
            try:
                return await future
            finally:
                system.deadlines.discard(key, future)
        finally:
            self._pending.pop(correlation_id, None)

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
                    cell.park(told, admission)
                    return
                cell.append(told)
                admission.set_result(None)
                if cell.task is None:
                    cell.schedule()
                return
        elif kind is Kind.REPLY or kind is Kind.ERROR:
            self.transport.credit(peer)
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
        reply = RemoteReply(self, peer, envelope.correlation_id) if kind is not Kind.TELL else None
        if "@" in target:  # a cluster activation, addressed as "name@epoch"
            name, _, epoch = target.rpartition("@")
            if epoch.isdigit():
                number = int(epoch)
                if self.system.epochs.get(name) != number and number not in (
                    self.system.epoch_aliases.get(name, ())
                ):
                    if kind is Kind.TELL and self.system.redirect(name, number, envelope.payload):
                        self.transport.credit(peer)
                        return
                    self._reject_stale(peer, envelope, reply)
                    return
                target = name
        cell = self.system._names.get(target)
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
        else:
            cell.park(item, self._credits.get(peer) or self._credit_for(peer))

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

    async def _stop_and_reply(self, stopping: Any, reply: RemoteReply | None) -> None:
        await stopping
        if reply is not None:
            reply.set_result(None)

    def peer_lost(self, peer: str) -> None:
        lost = [
            (cid, future) for cid, (future, address) in self._pending.items() if address == peer
        ]
        for _cid, future in lost:
            if not future.done():
                future.set_exception(NodeUnreachable(f"member {peer} is unreachable"))
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
