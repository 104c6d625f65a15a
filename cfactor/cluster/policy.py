"""Where to place an actor: a pure function of the member list and its load."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from cfactor.abc import MemberInfo


class Chooser(Protocol):
    """The system's seeded random source (``random.Random`` has this method)."""

    def choice(self, seq: Sequence[str], /) -> str: ...


def eligible(member: MemberInfo, placement: tuple[Any, ...] | None, load: int) -> bool:
    """May ``member`` (hosting ``load`` named actors) take an actor with ``placement``?"""
    if member.capacity and load >= member.capacity:
        return False
    if placement is None:
        return True
    kind, value = placement
    if kind == "pin":
        return value in (member.member_id, member.address)
    if kind == "labels":
        labels = dict(member.labels)
        return all(labels.get(k) == v for k, v in value)
    return False


def choose_member(
    members: Mapping[str, MemberInfo],
    load: Mapping[str, int],
    placement: tuple[Any, ...] | None,
    rng: Chooser,
    *,
    replacing: bool = False,
) -> str | None:
    """The member id to place on: the least loaded eligible member, ties broken at
    random (so a burst of spawns spreads); None if no member is eligible.

    A pin binds the first placement only: when ``replacing`` an actor whose pinned
    member is gone, any member will do (an actor that can run nowhere would be lost).
    """
    if (
        replacing
        and placement is not None
        and placement[0] == "pin"
        and not any(placement[1] in (m.member_id, m.address) for m in members.values())
    ):
        placement = None
    best: list[str] = []
    best_load = -1
    for member_id, member in members.items():
        current = load.get(member_id, 0)
        if not eligible(member, placement, current):
            continue
        if not best or current < best_load:
            best, best_load = [member_id], current
        elif current == best_load:
            best.append(member_id)
    if not best:
        return None
    return rng.choice(sorted(best))
