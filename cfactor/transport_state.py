"""What a member knows of one peer, as a protocol: credit window, liveness, incarnations.

Sans-IO (httpcore over h11): plain objects fed events (a batch written, a credit received,
a heartbeat tick at time ``now``...) that update counts and return decisions (how much the
window allows, whether a lone CREDIT is due, whether the peer is lost). No sockets, no event
loop, no clock reads: the caller passes the time in and does the I/O the decisions ask for.
The ZeroMQ transport (``transports/cfactor_zmq``) and the memory transport
(``cfactor.testing.memory``) both keep one :class:`PeerState` per peer. docs/transport.md
("Module map", "Credits", "Liveness") says why each rule is what it is.

Counts are cumulative totals per incarnation of the sending member, never deltas, so a lost,
duplicated or late CREDIT or heartbeat cannot leave them wrong for good: the next one carries
the total and repairs them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from cfactor.abc import Kind

ANSWERS: Final = frozenset({Kind.REPLY, Kind.ERROR})
"""Kinds that are never refused or held for send-queue space: their number is bounded by
the asks the peer sent (which its own credit window bounds), and refusing one would only
turn a slow peer into a lost answer. They still count against the credit window."""

RESTARTED: Final = 1
"""A :meth:`PeerState.hear` result bit: the peer has a new incarnation and was reachable
under an earlier one; whatever waited on that one is gone (report the peer lost)."""

REGAINED: Final = 2
"""A :meth:`PeerState.hear` result bit: the peer was lost and is heard again."""


class Verdict(enum.Enum):
    """What a heartbeat tick decided about one peer."""

    BEAT = "beat"
    """Nothing new: send it a heartbeat."""
    LOST = "lost"
    """Silent for longer than the timeout: now lost (report it, drop its queue); send it a
    heartbeat all the same, so that it can be heard again."""
    FORGET = "forget"
    """Lost and silent for ``forget_after_s``: drop it and whatever it holds."""


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """The protocol settings every peer of one transport shares.

    Args:
        window: Envelopes sent to a peer and not yet credited back by it, at most.
        credit_batch: A lone CREDIT goes once this many envelopes wait to be credited
            back (fewer ride on the next data batch, or go when the credit timer fires).
        heartbeat_timeout_s: A peer not heard from for this long is lost.
        forget_after_s: A lost peer not heard from for this long is forgotten.
    """

    window: int
    credit_batch: int
    heartbeat_timeout_s: float
    forget_after_s: float


class PeerState:
    """The protocol state of one peer: counts both ways, credit timing and liveness.

    Sending side (envelopes this member wrote to the peer): ``sent`` and ``acked`` (the
    highest credited total the peer sent back, capped at ``sent``); in flight is
    ``sent - acked``, at most ``config.window``.

    Receiving side (envelopes the peer's incarnation ``incarnation`` wrote to this
    member): ``received`` and ``credited`` (capped at ``received``), and ``credit_sent``,
    the credited total last written back.

    Liveness: ``reachable``; ``heard`` (anything came since the last tick) and
    ``last_heard`` (the tick that last saw it heard, or when the peer was first expected);
    ``need_beat`` (a heartbeat is due).

    Attributes are plain and public, for the transports' hot paths to read; change them
    through the methods, which keep the invariants (the one exception: the per-envelope
    credit, inlined by the ZeroMQ transport as :meth:`credit` does it).
    """

    __slots__ = (
        "acked",
        "config",
        "credit_due",
        "credit_held",
        "credit_sent",
        "credited",
        "heard",
        "incarnation",
        "last_heard",
        "need_beat",
        "reachable",
        "received",
        "sent",
    )

    def __init__(self, config: PeerConfig, now: float) -> None:
        self.config = config
        # -- sending side
        self.sent = 0
        self.acked = 0
        # -- receiving side, for the peer's incarnation ``incarnation`` (0: unknown)
        self.incarnation = 0
        self.received = 0
        self.credited = 0
        self.credit_sent = 0
        #: The credited total held back when the credit timer was armed, and whether
        #: it is overdue (a lone CREDIT goes with the next write).
        self.credit_held = 0
        self.credit_due = False
        # -- liveness
        self.reachable = True
        self.heard = False
        self.last_heard = now
        self.need_beat = False

    # -- sending side -------------------------------------------------------------------

    def room(self) -> int:
        """Envelopes the credit window lets go now (0 or less: wait for a credit)."""
        return self.config.window - (self.sent - self.acked)

    def data_written(self, count: int) -> None:
        """A batch of ``count`` envelopes left. (A credit riding on it is
        :meth:`credit_written` as well.)"""
        self.sent += count

    def credit_received(self, credited: int) -> bool:
        """The peer credited ``credited`` envelopes of ours in total.

        Returns:
            True if the window grew (queued envelopes may go now).
        """
        credited = min(credited, self.sent)  # credits beyond what was sent are ignored
        if credited > self.acked:
            self.acked = credited
            return True
        return False

    # -- receiving side -----------------------------------------------------------------

    def data_received(self, seq: int, count: int) -> int:
        """A batch of ``count`` envelopes came, the first with sequence number ``seq``
        (a transport without sequence numbers passes :attr:`received`).

        Returns:
            How many envelopes before it were written off: a batch ahead of
            :attr:`received` means the ones in between were written to a connection
            that broke, and will never come (they are credited here).
        """
        lost = seq - self.received
        if lost > 0:
            self.received = seq + count
            self.credit(lost)
            return lost
        self.received += count
        return 0

    def beat_received(self, sent: int) -> int:
        """A heartbeat said the peer has sent ``sent`` envelopes to us in total.

        Returns:
            How many were written off (sent before the heartbeat, never came).
        """
        lost = sent - self.received
        if lost > 0:
            self.received = sent
            self.credit(lost)
            return lost
        return 0

    def credit(self, count: int) -> None:
        """``count`` envelopes were accepted by the handler, or written off (lost on the
        way, rejected, or the handler raised): they may be credited back. Credits beyond
        what was received are ignored."""
        credited = self.credited + count
        self.credited = min(credited, self.received)

    def lone_credit_due(self, beat: bool = False) -> bool:
        """Whether a CREDIT should go on its own now, rather than ride on the next data
        batch: a ``credit_batch`` waits, a heartbeat goes with this write (``beat``),
        or the credit timer fired."""
        credited = self.credited
        return credited != self.credit_sent and (
            beat or self.credit_due or credited - self.credit_sent >= self.config.credit_batch
        )

    def credit_written(self, credited: int) -> None:
        """The credited total ``credited`` left: in a CREDIT of its own, or riding on a
        data batch (what :attr:`credited` was when its header was written)."""
        self.credit_sent = credited
        self.credit_due = False

    def hold_credit(self) -> bool:
        """A flush ended and the credit timer is not armed: hold back what is still
        owed, to go when the timer fires if no data batch carries it first.

        Returns:
            True if a credit is held (arm the timer).
        """
        if self.credited != self.credit_sent:
            self.credit_held = self.credited
            return True
        return False

    def credit_overdue(self) -> bool:
        """The credit timer fired.

        Returns:
            True if the credit held back has not left since: a lone CREDIT is due.
        """
        if self.credit_sent < self.credit_held:
            self.credit_due = True
            return True
        return False

    # -- liveness -----------------------------------------------------------------------

    def hear(self, incarnation: int) -> int:
        """Any message came from the peer's incarnation ``incarnation``.

        A new incarnation (the peer restarted) resets the receiving side's counts.

        Returns:
            0, or the bits :data:`RESTARTED` and :data:`REGAINED`.
        """
        news = 0
        if incarnation != self.incarnation:
            if self.incarnation and self.reachable:
                news = RESTARTED
            self.incarnation = incarnation
            self.received = self.credited = self.credit_sent = 0
        self.heard = True
        if not self.reachable:
            # (``last_heard`` is set by the next tick, which sees ``heard``.)
            self.reachable = True
            news |= REGAINED
        return news

    def bye_received(self, incarnation: int) -> bool:
        """The peer's incarnation ``incarnation`` said it is closing.

        Returns:
            True if that is the incarnation we know (or we know none yet): forget the
            peer. A BYE of an earlier incarnation says nothing of this one.
        """
        return not self.incarnation or incarnation == self.incarnation

    def tick(self, now: float) -> Verdict:
        """The heartbeat interval passed: refresh liveness at time ``now``.

        A peer heard since the last tick is alive; one not heard for longer than the
        timeout becomes lost; a lost one not heard for ``forget_after_s`` is to be
        forgotten. Otherwise a heartbeat is due (:attr:`need_beat`).
        """
        verdict = Verdict.BEAT
        if self.heard:
            self.heard = False
            self.last_heard = now
        elif self.reachable and now - self.last_heard > self.config.heartbeat_timeout_s:
            self.reachable = False
            verdict = Verdict.LOST
        elif not self.reachable and now - self.last_heard > self.config.forget_after_s:
            return Verdict.FORGET
        self.need_beat = True
        return verdict

    def silent_for(self, now: float) -> float:
        """Seconds since the peer was last seen heard by a tick (or first expected)."""
        return now - self.last_heard

    def forgotten(self) -> None:
        """The peer is dropped: it is owed no credit any more."""
        self.credited = self.credit_sent = self.credit_held = 0

    def __repr__(self) -> str:
        return (
            f"<PeerState {'reachable' if self.reachable else 'lost'} "
            f"sent={self.sent} acked={self.acked} received={self.received} "
            f"credited={self.credited} credit_sent={self.credit_sent}>"
        )


class Departures:
    """Peers that said BYE, and when: sends to them fail fast for ``forget_after_s``
    (as to a lost peer), though their sockets are gone at once.

    Args:
        forget_after_s: How long a departure is remembered.
    """

    __slots__ = ("_forget_after_s", "_when")

    def __init__(self, forget_after_s: float) -> None:
        self._forget_after_s = forget_after_s
        self._when: dict[str, float] = {}

    def add(self, address: str, now: float) -> None:
        """``address`` said BYE at ``now``."""
        self._when.pop(address, None)  # keep the dict in departure order
        self._when[address] = now

    def discard(self, address: str) -> bool:
        """Forget ``address``'s departure (it came back, or is dialled again).

        Returns:
            True if it was remembered.
        """
        return self._when.pop(address, None) is not None

    def expire(self, now: float) -> None:
        """Drop the departures older than ``forget_after_s`` at ``now``."""
        when = self._when
        while when:  # oldest first: insertion order is departure order
            address, at = next(iter(when.items()))
            if now - at <= self._forget_after_s:
                break
            del when[address]

    def __contains__(self, address: object) -> bool:
        return address in self._when

    def __len__(self) -> int:
        return len(self._when)


__all__ = [
    "ANSWERS",
    "REGAINED",
    "RESTARTED",
    "Departures",
    "PeerConfig",
    "PeerState",
    "Verdict",
]
