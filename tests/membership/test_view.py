"""The local view both backends share: replays are harmless, reloads announce the
difference, a bad subscriber or a bad value never stops the stream."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cfactor.abc import Activation, MemberEvent, MemberInfo
from cfactor.membership._common import (
    DELETE,
    PUT,
    ClusterView,
    StoreEvent,
    encode_activation,
    encode_member,
)

if TYPE_CHECKING:
    import pytest


def member_put(member_id: str, revision: int, created: int | None = None) -> StoreEvent:
    info = MemberInfo(member_id, f"tcp://{member_id}")
    created = revision if created is None else created
    return StoreEvent(PUT, f"members/{member_id}", encode_member(info), created, revision)


def actor_put(name: str, member_id: str, revision: int) -> StoreEvent:
    data = encode_activation(member_id, f"tcp://{member_id}")
    return StoreEvent(PUT, f"actors/{name}", data, revision, revision)


def delete(key: str, revision: int) -> StoreEvent:
    return StoreEvent(DELETE, key, b"", 0, revision)


class Seen:
    def __init__(self, view: ClusterView) -> None:
        self.members: list[tuple[str, str, int]] = []
        self.actors: list[tuple[str, int | None]] = []
        self.leaders: list[tuple[str, str | None]] = []
        view.subscribe(self.member)
        view.subscribe_activations(self.actor)
        view.subscribe_leaders(lambda role, leader: self.leaders.append((role, leader)))

    def member(self, event: MemberEvent) -> None:
        self.members.append((event.kind, event.member.member_id, event.revision))

    def actor(self, name: str, activation: Activation | None) -> None:
        self.actors.append((name, None if activation is None else activation.epoch))


def test_a_replayed_revision_changes_nothing() -> None:
    # A watch resumes *at* the last revision seen; what it already applied comes again.
    view = ClusterView()
    seen = Seen(view)
    stream = [
        member_put("a", 2),
        actor_put("x", "a", 3),
        delete("actors/x", 4),
        member_put("b", 4),
    ]
    for event in stream:
        view.apply(event)
    for event in stream[2:]:
        view.apply(event)
    assert seen.members == [("joined", "a", 2), ("joined", "b", 4)]
    assert seen.actors == [("x", 3), ("x", None)]
    assert view.revision == 4


def test_half_a_revision_then_a_resume_completes_it() -> None:
    # A lease revocation deletes several keys at one revision; the stream broke after
    # the first. Resuming at that revision delivers all of them: only the rest count.
    view = ClusterView()
    seen = Seen(view)
    view.apply(member_put("a", 2))
    view.apply(actor_put("x", "a", 3))
    view.apply(actor_put("y", "a", 4))
    view.apply(delete("actors/x", 5))
    for event in (delete("actors/x", 5), delete("actors/y", 5), delete("members/a", 5)):
        view.apply(event)
    assert seen.actors == [("x", 3), ("y", 4), ("x", None), ("y", None)]
    assert seen.members == [("joined", "a", 2), ("left", "a", 5)]


def test_a_reload_announces_the_difference_in_order() -> None:
    view = ClusterView()
    view.apply(member_put("stays", 2))
    view.apply(member_put("goes", 3))
    view.apply(actor_put("moved", "goes", 4))
    view.apply(actor_put("kept", "stays", 5))
    seen = Seen(view)
    snapshot = [
        member_put("stays", 2),
        member_put("new", 8),
        actor_put("kept", "stays", 5),
        actor_put("moved", "new", 9),
    ]
    view.reset(snapshot, 12)
    # Arrivals in revision order, then departures timed at the reload's revision.
    assert seen.members == [("joined", "new", 8), ("left", "goes", 12)]
    # A name that changed hands is first gone, then back, never two at once.
    assert seen.actors == [("moved", None), ("moved", 9)]
    assert set(view.members) == {"stays", "new"}
    assert view.activations["moved"].member_id == "new"
    assert view.revision == 12


def test_bad_values_and_bad_subscribers_do_not_stop_the_stream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    view = ClusterView()
    seen = Seen(view)

    def broken(event: MemberEvent) -> None:
        raise RuntimeError("subscriber bug")

    view.subscribe(broken)
    view.subscribe(seen.member)  # the same function twice: called twice
    with caplog.at_level(logging.WARNING, logger="cfactor.membership"):
        view.apply(StoreEvent(PUT, "members/junk", b"\xff not json", 2, 2))
        view.apply(StoreEvent(PUT, "actors/junk", b'{"member_id": 1}', 3, 3))
        view.apply(StoreEvent(PUT, "unknown/family", b"x", 4, 4))
        view.apply(member_put("a", 5))
    assert view.members.keys() == {"a"}
    assert view.activations == {}
    assert seen.members == [("joined", "a", 5), ("joined", "a", 5)]
    assert "ignoring unreadable key 'members/junk'" in caplog.text
    assert "subscriber bug" in caplog.text


def test_unsubscribe_removes_one_subscription() -> None:
    view = ClusterView()
    got: list[MemberEvent] = []
    first = view.subscribe(got.append)
    view.subscribe(got.append)
    first()
    first()  # twice is harmless
    view.apply(member_put("a", 2))
    assert len(got) == 1


def test_leaders_come_and_go() -> None:
    view = ClusterView()
    seen = Seen(view)
    view.apply(StoreEvent(PUT, "leaders/placement", b"a", 2, 2))
    view.apply(delete("leaders/placement", 3))
    view.apply(StoreEvent(PUT, "leaders/placement", b"b", 4, 4))
    assert seen.leaders == [("placement", "a"), ("placement", None), ("placement", "b")]
    assert view.leaders == {"placement": "b"}
