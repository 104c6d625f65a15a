"""``cfactor.transport_state``: the per-peer protocol state, without sockets or clocks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cfactor.abc import Kind
from cfactor.transport_state import (
    ANSWERS,
    REGAINED,
    RESTARTED,
    Departures,
    PeerConfig,
    PeerState,
    Verdict,
)

CONFIG = PeerConfig(window=8, credit_batch=2, heartbeat_timeout_s=2.0, forget_after_s=30.0)


def peer(now: float = 0.0, config: PeerConfig = CONFIG) -> PeerState:
    return PeerState(config, now)


def owing(count: int) -> PeerState:
    """A peer that received ``count`` envelopes from incarnation 7 and credited them all,
    none of it sent back yet."""
    p = peer()
    p.hear(7)
    p.data_received(0, count)
    p.credit(count)
    return p


# -- the sending side: the window ---------------------------------------------------------


def test_a_sender_stops_at_the_window_until_credit_comes_back() -> None:
    p = peer()
    assert p.room() == 8
    p.data_written(5)
    assert p.room() == 3
    p.data_written(3)
    assert p.room() == 0
    assert p.credit_received(4)
    assert p.room() == 4


def test_credits_are_totals_so_a_late_or_repeated_one_changes_nothing() -> None:
    p = peer()
    p.data_written(6)
    assert p.credit_received(5)
    assert not p.credit_received(3)  # late: an older total
    assert not p.credit_received(5)  # repeated
    assert p.acked == 5


def test_credit_beyond_what_was_sent_is_ignored() -> None:
    p = peer()
    p.data_written(2)
    assert p.credit_received(100)
    assert p.acked == 2
    assert p.room() == 8


def test_a_batch_carries_the_credited_total_so_no_lone_credit_is_due() -> None:
    p = owing(3)
    assert p.lone_credit_due()  # 3 waiting >= credit_batch 2
    p.credit_written(p.credited)
    p.data_written(1)
    assert p.credit_sent == 3
    assert not p.lone_credit_due()


# -- the receiving side: credit --------------------------------------------------------


def test_the_receiver_credits_only_what_it_received() -> None:
    p = peer()
    p.hear(7)
    p.data_received(0, 2)
    p.credit(5)
    assert p.credited == 2


def test_a_lone_credit_waits_for_a_batch_of_credits_a_beat_or_the_timer() -> None:
    p = owing(1)
    assert not p.lone_credit_due()  # 1 < credit_batch: it rides on the next batch
    assert p.lone_credit_due(beat=True)
    # The timer: held back at the end of a flush, overdue when it fires.
    assert p.hold_credit()
    assert p.credit_overdue()
    assert p.lone_credit_due()
    p.credit_written(p.credited)
    assert not p.lone_credit_due()
    assert not p.hold_credit()


def test_a_credit_carried_by_a_batch_before_the_timer_fires_is_not_sent_again() -> None:
    p = owing(1)
    assert p.hold_credit()
    p.credit_written(p.credited)
    p.data_written(1)  # rode on a batch
    assert not p.credit_overdue()
    assert not p.lone_credit_due()


def test_a_gap_in_sequence_numbers_is_written_off_and_credited() -> None:
    p = peer()
    p.hear(7)
    assert p.data_received(0, 2) == 0
    # Envelopes 2..4 were written to a connection that broke.
    assert p.data_received(5, 1) == 3
    assert p.received == 6
    assert p.credited == 3
    p.credit(3)
    assert p.credited == 6


def test_a_heartbeat_repairs_a_loss_after_the_last_batch() -> None:
    p = peer()
    p.hear(7)
    p.data_received(0, 2)
    assert p.beat_received(2) == 0
    assert p.beat_received(5) == 3
    assert (p.received, p.credited) == (5, 3)
    assert p.beat_received(4) == 0  # an older heartbeat


# -- liveness -------------------------------------------------------------------------


def test_a_peer_heard_between_ticks_stays_reachable_and_gets_a_beat() -> None:
    p = peer(now=0.0)
    for now in (0.5, 1.0, 1.5, 2.0, 2.5, 3.0):
        p.hear(7)
        assert p.tick(now) is Verdict.BEAT
        assert p.need_beat
        p.need_beat = False
    assert p.reachable


def test_a_silent_peer_is_lost_after_the_timeout_then_forgotten() -> None:
    p = peer(now=10.0)
    assert p.tick(11.0) is Verdict.BEAT
    assert p.tick(12.0) is Verdict.BEAT  # silent for exactly the timeout: not yet
    assert p.tick(12.5) is Verdict.LOST
    assert not p.reachable
    assert p.silent_for(12.5) == 2.5
    assert p.tick(13.0) is Verdict.BEAT  # lost: still beaten, so it can be heard again
    assert p.tick(40.0) is Verdict.BEAT
    assert p.tick(40.5) is Verdict.FORGET


def test_a_lost_peer_heard_again_is_regained_and_its_silence_restarts() -> None:
    p = peer(now=0.0)
    assert p.tick(2.5) is Verdict.LOST
    assert p.hear(7) == REGAINED  # its first incarnation is no restart
    assert p.reachable
    assert p.tick(3.0) is Verdict.BEAT
    assert p.tick(5.0) is Verdict.BEAT
    assert p.tick(5.5) is Verdict.LOST


def test_a_new_incarnation_resets_the_receiving_counts_and_says_restarted() -> None:
    p = peer()
    assert p.hear(7) == 0
    p.data_received(0, 4)
    p.credit(4)
    p.data_written(3)
    assert p.hear(7) == 0
    assert p.hear(9) == RESTARTED
    assert (p.received, p.credited, p.credit_sent) == (0, 0, 0)
    assert p.sent == 3  # what we sent it is ours to count


def test_a_restart_seen_while_lost_is_regained_not_reported_twice() -> None:
    p = peer(now=0.0)
    p.hear(7)
    p.tick(0.5)
    assert p.tick(3.0) is Verdict.LOST
    assert p.hear(9) == REGAINED


def test_a_bye_counts_only_for_the_incarnation_we_know() -> None:
    p = peer()
    assert p.bye_received(5)  # none known yet
    p.hear(7)
    assert not p.bye_received(5)
    assert p.bye_received(7)


def test_a_forgotten_peer_is_owed_no_credit() -> None:
    p = owing(3)
    p.hold_credit()
    p.forgotten()
    assert not p.hold_credit()
    assert not p.credit_overdue()


def test_departures_fail_fast_for_a_while_oldest_first() -> None:
    d = Departures(forget_after_s=30.0)
    d.add("tcp://a:1", 0.0)
    d.add("tcp://b:1", 10.0)
    d.add("tcp://a:1", 20.0)  # again: it is now the newest
    d.expire(35.0)
    assert "tcp://b:1" in d
    assert "tcp://a:1" in d
    d.expire(45.0)
    assert "tcp://b:1" not in d
    assert len(d) == 1
    assert d.discard("tcp://a:1")
    assert not d.discard("tcp://a:1")


def test_answers_are_the_replies_and_errors() -> None:
    assert {Kind.REPLY, Kind.ERROR} == ANSWERS
    assert Kind.ASK not in ANSWERS


def test_the_repr_shows_the_counts() -> None:
    p = peer()
    p.data_written(2)
    assert repr(p) == "<PeerState reachable sent=2 acked=0 received=0 credited=0 credit_sent=0>"


# -- whatever the network does, the counts hold their invariants -----------------------

events = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(1, 10)),
        st.tuples(st.just("credit_received"), st.integers(0, 200)),
        st.tuples(st.just("data"), st.integers(0, 200), st.integers(1, 10)),
        st.tuples(st.just("beat"), st.integers(0, 200)),
        st.tuples(st.just("credit"), st.integers(1, 10)),
        st.tuples(st.just("hear"), st.sampled_from([3, 5])),
        st.tuples(st.just("tick"), st.floats(0.0, 5.0)),
    ),
    max_size=60,
)


@given(events)
def test_any_sequence_of_events_keeps_the_counts_consistent(
    sequence: list[tuple[str, float | int] | tuple[str, int, int]],
) -> None:
    p = peer()
    now = 0.0
    for event in sequence:
        match event:
            case ("write", int(count)):
                count = min(count, p.room())
                if count > 0:
                    p.credit_written(p.credited)
                    p.data_written(count)
            case ("credit_received", int(total)):
                p.credit_received(total)
            case ("data", int(seq), int(count)):
                p.data_received(seq, count)
            case ("beat", int(sent)):
                p.beat_received(sent)
            case ("credit", int(count)):
                p.credit(count)
            case ("hear", int(incarnation)):
                p.hear(incarnation)
            case ("tick", float(step)):
                now += step
                p.tick(now)
        assert 0 <= p.acked <= p.sent
        assert 0 <= p.sent - p.acked <= CONFIG.window
        assert 0 <= p.credited <= p.received
        assert p.credit_sent <= p.received


@pytest.mark.parametrize("window", [1, 3, 8192])
def test_a_sender_never_has_more_than_the_window_in_flight(window: int) -> None:
    p = peer(config=PeerConfig(window, 1, 2.0, 30.0))
    sent = 0
    for _ in range(5):
        room = p.room()
        p.data_written(room)
        sent += room
        assert p.sent - p.acked == window
        p.credit_received(sent - window // 2)
    assert p.sent == sent
