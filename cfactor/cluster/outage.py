"""Riding through a store (etcd) outage without giving up "one activation per name".

A member whose keepalives fail cannot tell "etcd is down for everyone" from "I alone am
cut off from etcd". Only in the second case can anyone else claim its names, and only
through a placement actor that reaches etcd. So the member asks its peers over the
transport whether *they* reach etcd, and keeps serving past its lease deadline only while
every peer it knows has said, recently enough, that it cannot reach etcd either, or that
it reached it again too recently to have re-placed anything. Placement, on every member,
re-places nothing until ``grace_s`` after this member last (re)gained the store.

The safety argument, and where it depends on timing, is in docs/cluster.md ("Fencing,
and how long etcd may be away"). This module is pure bookkeeping on a clock: the runtime
feeds it the store's state and the peers' answers, and asks it two questions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cfactor.cluster.messages import StoreDown, StoreQuery, StoreUp

if TYPE_CHECKING:
    from cfactor.abc import Clock

#: The question a member asks a peer's ``$cluster`` agent.
ASK = StoreQuery()


class OutageGuard:
    """What one member knows about its own and its peers' reach of the store.

    Args:
        clock: The member's clock (seconds; one rate for every member of a machine,
            and the same rate within any sane drift across machines).
        grace_s: How long after (re)gaining the store a member's placement waits before
            re-placing names whose claims vanished (the TTL).
        margin_s: How long before a peer's grace can end a member stops riding through:
            covers a claim in flight and the re-check granularity.

    A peer's answer is ``("down",)`` (it cannot reach the store, or is not joined) or
    ``("up", seconds)`` (it has reached the store for that long). From an answer to an
    ask *sent* at ``a`` follows a bound on when that peer could first re-place
    anything: "down" means it regains the store after ``a``, so not before
    ``a + grace_s``; "up for d" means it regained it at or after ``a - d``, so not
    before ``a - d + grace_s``. A member rides through while ``now`` is ``margin_s``
    before every known peer's bound.
    """

    def __init__(self, clock: Clock, grace_s: float, margin_s: float) -> None:
        self._clock = clock
        self.grace_s = grace_s
        self.margin_s = margin_s
        #: When this member last joined or regained the store (its placement's grace
        #: runs from here).
        self.back_at = clock.now()
        self._reachable = True
        #: Addresses of the peers whose answers count (frozen when trouble starts, so
        #: an outage cannot shrink the set; grown by whatever the views show later).
        self.peers: set[str] = set()
        #: address -> (ask sent at, ride-through allowed until)
        self._until: dict[str, tuple[float, float]] = {}
        #: True once the store was lost at least once: before that nobody rides through.
        self._episode = False
        self.answered = 0
        self.unreadable = 0

    def sync(self, *, reachable: bool, peers: set[str]) -> None:
        """Feed the store's state as this member sees it now, and the peers its view
        shows (called before every decision, so an answer and the placement grace never
        disagree about when the store came back)."""
        if reachable and not self._reachable:
            self.back_at = self._clock.now()
        elif not reachable and self._reachable:
            self._until.clear()  # answers from before this episode prove nothing
            self.peers = set(peers)
            self._episode = True
        if not reachable:
            self.peers |= peers  # never shrinks during an outage
        self._reachable = reachable

    def joined(self) -> None:
        """This member (re)joined: a new incarnation regained the store just now."""
        self.back_at = self._clock.now()
        self._reachable = True

    def answer(self, *, reachable: bool, peers: set[str]) -> StoreDown | StoreUp:
        """This member's answer to a peer's ``ASK``."""
        self.sync(reachable=reachable, peers=peers)
        if not reachable:
            return StoreDown()
        return StoreUp(max(0.0, self._clock.now() - self.back_at))

    def heard(self, address: str, sent_at: float, reply: Any) -> bool:
        """Record a peer's answer to an ask sent at ``sent_at``; False if it is not an
        answer (it then counts as no answer, and in ``unreadable``)."""
        match reply:
            case StoreDown():
                bound = sent_at + self.grace_s
            case StoreUp(back_for_s=seconds) if seconds >= 0:
                bound = sent_at - float(seconds) + self.grace_s
            case _:
                self.unreadable += 1
                return False
        previous = self._until.get(address)
        if previous is None or previous[0] <= sent_at:
            self._until[address] = (sent_at, bound - self.margin_s)
            self.answered += 1
        return True

    def may_ride_through(self) -> bool:
        """True while no peer can have re-placed (or be about to re-place) our names."""
        if not self._episode:
            return False
        now = self._clock.now()
        until = self._until
        return all(address in until and until[address][1] > now for address in self.peers)

    def may_replace(self, *, reachable: bool, peers: set[str]) -> bool:
        """True once this member's placement may re-place vanished names."""
        self.sync(reachable=reachable, peers=peers)
        return reachable and self._clock.now() >= self.back_at + self.grace_s
