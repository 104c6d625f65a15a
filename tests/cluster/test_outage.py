"""The ride-through bookkeeping (``cfactor.cluster.outage``) on a manual clock, and the
lease deadline's guard: pure logic, no sockets."""

from __future__ import annotations

from cfactor.cluster.messages import StoreDown, StoreUp
from cfactor.cluster.outage import OutageGuard
from cfactor.membership._common import GUARD_RECHECK_S, LeaseDeadline
from cfactor.testing import ManualClock

GRACE = 5.0
MARGIN = 1.5
PEERS = {"tcp://a", "tcp://b"}


def guard_in_outage(clock: ManualClock) -> OutageGuard:
    guard = OutageGuard(clock, grace_s=GRACE, margin_s=MARGIN)
    guard.sync(reachable=False, peers=PEERS)
    return guard


def test_nobody_rides_through_before_an_outage_or_without_every_peer() -> None:
    clock = ManualClock(100.0)
    guard = OutageGuard(clock, grace_s=GRACE, margin_s=MARGIN)
    assert not guard.may_ride_through()  # no outage yet
    guard.sync(reachable=False, peers=PEERS)
    assert not guard.may_ride_through()  # nobody answered yet
    guard.heard("tcp://a", clock.now(), StoreDown())
    assert not guard.may_ride_through()  # b did not answer
    guard.heard("tcp://b", clock.now(), StoreDown())
    assert guard.may_ride_through()


def test_a_down_answer_holds_for_the_grace_minus_the_margin_from_when_it_was_asked() -> None:
    clock = ManualClock(100.0)
    guard = guard_in_outage(clock)
    for peer in PEERS:
        guard.heard(peer, 100.0, StoreDown())
    clock.advance(GRACE - MARGIN - 0.01)
    assert guard.may_ride_through()
    clock.advance(0.02)
    assert not guard.may_ride_through()  # b's answer is too old now


def test_a_peer_that_reaches_the_store_ends_the_ride_by_its_grace() -> None:
    clock = ManualClock(100.0)
    guard = guard_in_outage(clock)
    guard.heard("tcp://a", 100.0, StoreDown())
    guard.heard("tcp://b", 100.0, StoreUp(1.0))  # back for 1 s: may re-place at 104
    assert guard.may_ride_through()
    clock.advance(GRACE - 1.0 - MARGIN)
    assert not guard.may_ride_through()
    guard.heard("tcp://b", 99.0, StoreDown())  # an answer to an older ask changes nothing
    assert not guard.may_ride_through()


def test_a_peer_up_for_long_forbids_riding_through_and_bad_answers_count_for_nothing() -> None:
    # Anything but StoreDown / StoreUp(>= 0) (a member of another version) is no answer.
    clock = ManualClock(100.0)
    guard = guard_in_outage(clock)
    guard.heard("tcp://a", 100.0, StoreDown())
    guard.heard("tcp://b", 100.0, StoreUp(60.0))  # a member cut off alone hears this
    assert not guard.may_ride_through()
    fresh = guard_in_outage(clock)
    for bad in (StoreUp(-1.0), ("sideways",), None, "down"):
        fresh.heard("tcp://a", 100.0, bad)
    fresh.heard("tcp://b", 100.0, StoreDown())
    assert not fresh.may_ride_through()


def test_the_peer_set_does_not_shrink_during_an_outage() -> None:
    clock = ManualClock(100.0)
    guard = guard_in_outage(clock)
    guard.sync(reachable=False, peers=set())  # a new incarnation's view lacks them
    assert guard.peers == PEERS


def test_answers_and_the_placement_grace_share_one_return_time() -> None:
    clock = ManualClock(100.0)
    guard = OutageGuard(clock, grace_s=GRACE, margin_s=MARGIN)
    assert not guard.may_replace(reachable=True, peers=PEERS)  # just joined
    clock.advance(GRACE)
    assert guard.may_replace(reachable=True, peers=PEERS)
    assert guard.answer(reachable=False, peers=PEERS) == StoreDown()
    assert not guard.may_replace(reachable=False, peers=PEERS)
    clock.advance(10.0)
    assert guard.answer(reachable=True, peers=PEERS) == StoreUp(0.0)  # back just now
    assert not guard.may_replace(reachable=True, peers=PEERS)
    clock.advance(GRACE)
    assert guard.answer(reachable=True, peers=PEERS) == StoreUp(GRACE)
    assert guard.may_replace(reachable=True, peers=PEERS)


def test_a_lease_deadline_is_held_off_while_its_guard_says_so() -> None:
    clock = ManualClock(0.0)
    expired: list[float] = []
    holding = [True]
    deadline = LeaseDeadline(clock, lambda: expired.append(clock.now()), lambda: holding[0])
    deadline.refreshed(0.0, 5.0)
    clock.advance(20.0)
    assert expired == []
    holding[0] = False
    clock.advance(GUARD_RECHECK_S)
    assert len(expired) == 1
    assert 20.0 <= expired[0] <= 20.0 + GUARD_RECHECK_S + 1e-6  # within one re-check
    deadline.refreshed(30.0, 5.0)  # a keepalive later: a fresh deadline, no guard asked
    clock.advance(4.0)
    assert len(expired) == 1
