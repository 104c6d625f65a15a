"""The membership conformance suite: what every ``cfactor.abc.Membership`` must do.

Shipped for third-party membership backends, as trio ships its stream checks: give
:func:`check_membership` a :class:`MembershipKit` that makes members of your backend and
simulates what goes wrong with its store, and it runs every check (docs/testing.md).
The checks talk only through the protocol plus the kit's failure simulations (a member
that stops keeping its lease alive, a store that goes away, one member cut off,
compacted history). The project runs them against the memory backend (on a
``ManualClock``, so lease expiry is virtual time) and a real etcd
(tests/membership/test_conformance.py).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from cfactor.abc import Activation, MemberEvent, MemberInfo
from cfactor.errors import ConfigError, MembershipError, MembershipUnavailable
from cfactor.testing._check_transport import expect_raises

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

#: How long a change may take to reach another member's view.
PROPAGATION_S = 2.0
#: How long a call may take to fail when the store is gone.
FAIL_FAST_S = 1.5
#: Lease TTL the checks give members that must survive an outage of the store (the
#: kit's ``joined`` default is a short one, for members expected to die).
LONG_TTL_S = 6.0

T = TypeVar("T")


class MembershipKit(Protocol):
    """Makes members of one backend and simulates what goes wrong with their store.

    Conventions the checks rely on: ``info(member_id)`` has capacity 10 and the labels
    ``(("zone", "z1"),)``; every member the kit makes reads its wall clock (for
    ``joined_at``) from a fresh fake clock that answers 1000.0, 1001.0, ...
    """

    async def make(self) -> Any:
        """A new, not yet joined member."""
        ...

    def info(self, member_id: str) -> MemberInfo:
        """A ``MemberInfo`` with that id and a fresh address."""
        ...

    async def joined(self, member_id: str, ttl_s: float = ...) -> Any:
        """A new member, joined as ``member_id`` (by default with a short TTL)."""
        ...

    async def wait_until(
        self, predicate: Callable[[], bool], *, within: float, what: str = "condition"
    ) -> None:
        """Return once ``predicate()`` holds; fail (raise) after ``within`` seconds,
        which may be virtual time."""
        ...

    async def all_see(
        self,
        members: list[Any],
        predicate: Callable[[Any], bool],
        *,
        within: float,
        what: str = "condition",
    ) -> None:
        """Wait until ``predicate(member)`` holds for each of ``members``."""
        ...

    async def retry(self, call: Callable[[], Awaitable[T]], *, within: float = 5.0) -> T:
        """``call()`` until it stops raising ``MembershipUnavailable``."""
        ...

    async def pause(self, seconds: float) -> None:
        """Let ``seconds`` pass (virtual time may)."""
        ...

    @property
    def expiry_bound_s(self) -> float:
        """How long a dead member may take to be seen as gone."""
        ...

    async def kill(self, member: Any) -> None:
        """Make ``member`` stop keeping its lease alive, as a hung process would."""
        ...

    async def outage(self) -> None:
        """The store becomes unreachable for everyone."""
        ...

    async def restore(self) -> None:
        """The store is back (with its data)."""
        ...

    async def partition(self, member: Any) -> None:
        """Cut ``member`` alone off the store."""
        ...

    async def heal(self, member: Any) -> None:
        """Reconnect a member cut off by ``partition``."""
        ...

    async def compact(self) -> None:
        """Forget the store's history up to now."""
        ...


class Recorder:
    """Subscribes to everything one member sees."""

    def __init__(self, member: Any) -> None:
        self.events: list[MemberEvent] = []
        self.activations: list[tuple[str, Activation | None]] = []
        self.lost = 0
        #: Both kinds of event, in the order they arrived.
        self.timeline: list[str] = []
        self.unsubscribe = member.subscribe(self._member)
        member.subscribe_activations(self._activation)
        member.on_lease_lost(self._lost)

    def _member(self, event: MemberEvent) -> None:
        self.events.append(event)
        self.timeline.append(f"{event.kind} {event.member.member_id}")

    def _activation(self, name: str, activation: Activation | None) -> None:
        self.activations.append((name, activation))
        self.timeline.append(f"{'gone' if activation is None else 'placed'} {name}")

    def _lost(self) -> None:
        self.lost += 1

    def seen(self, kind: str) -> list[str]:
        return [e.member.member_id for e in self.events if e.kind == kind]


def ids(member: Any) -> set[str]:
    return set(member.members())


async def check_members_see_each_other(kit: MembershipKit) -> None:
    a, b, c = await kit.make(), await kit.make(), await kit.make()
    recorders = [Recorder(m) for m in (a, b, c)]
    for member, name in ((a, "a"), (b, "b"), (c, "c")):
        await member.join(kit.info(name), ttl_s=LONG_TTL_S)
    await kit.all_see([a, b, c], lambda m: ids(m) == {"a", "b", "c"}, within=PROPAGATION_S)
    # A subscriber registered before join hears of everyone, earlier members included.
    for recorder in recorders:
        assert sorted(recorder.seen("joined")) == ["a", "b", "c"]
    seen_by_a = a.members()["c"]
    assert seen_by_a.address == c.info.address
    assert seen_by_a.capacity == 10
    assert seen_by_a.labels == (("zone", "z1"),)
    assert seen_by_a.joined_at == 1000.0  # from the wall clock the caller passed
    assert not any(r.lost for r in recorders)


async def check_join_checks_its_arguments(kit: MembershipKit) -> None:
    a = await kit.joined("a")
    with expect_raises(ConfigError):
        await a.join(kit.info("a2"))  # already joined
    fresh = await kit.make()
    for ttl in (0, -1.0, float("nan"), float("inf")):
        with expect_raises(ConfigError):
            await fresh.join(kit.info("x"), ttl_s=ttl)
    with expect_raises(ConfigError):
        await fresh.join(kit.info("a"))  # a live member has this id
    racing = await kit.make()
    results = await asyncio.gather(
        racing.join(kit.info("r1")), racing.join(kit.info("r2")), return_exceptions=True
    )
    assert sorted(type(r).__name__ for r in results) == ["ConfigError", "NoneType"]
    await racing.leave()
    with expect_raises(MembershipError):
        await fresh.claim("nothing")  # not joined
    with expect_raises(MembershipError):
        await fresh.campaign("nothing")
    await fresh.join(kit.info("b"))
    assert ids(fresh) == {"a", "b"}


async def check_graceful_leave_is_seen_by_the_others_quickly(kit: MembershipKit) -> None:
    a, b, c = await kit.joined("a"), await kit.joined("b"), await kit.joined("c")
    watcher = Recorder(b)
    leaver = Recorder(a)
    assert await a.claim("svc") is not None
    assert await a.campaign("placement")
    await kit.wait_until(
        lambda: "svc" in c.activations() and b.leader("placement") == "a", within=PROPAGATION_S
    )
    await a.leave()
    await kit.all_see([b, c], lambda m: ids(m) == {"b", "c"}, within=1.0, what="leave seen")
    for member in (b, c):
        assert "svc" not in member.activations()
        assert member.leader("placement") is None
    assert watcher.seen("left") == ["a"]
    assert ("svc", None) in watcher.activations
    assert leaver.lost == 0  # leaving is not losing
    await a.leave()  # idempotent
    assert await b.lookup("svc") is None


async def check_a_dead_member_is_seen_as_left_with_its_names(kit: MembershipKit) -> None:
    a, b, c = await kit.joined("a"), await kit.joined("b"), await kit.joined("c")
    recorders = {name: Recorder(m) for name, m in (("a", a), ("b", b), ("c", c))}
    assert await c.claim("svc") is not None
    assert await c.campaign("placement")
    await kit.wait_until(lambda: "svc" in a.activations(), within=PROPAGATION_S)
    await kit.kill(c)
    await kit.all_see(
        [a, b], lambda m: ids(m) == {"a", "b"}, within=kit.expiry_bound_s, what="expiry seen"
    )
    for member in (a, b):
        assert "svc" not in member.activations()
        assert member.leader("placement") is None
    await kit.wait_until(lambda: recorders["c"].lost == 1, within=kit.expiry_bound_s)
    assert await a.lookup("svc") is None
    assert recorders["a"].seen("left") == ["c"]
    # Its names went before it did (one revision; the member key sorts last).
    assert recorders["a"].timeline[-2:] == ["gone svc", "left c"]
    with expect_raises(MembershipError):
        await c.claim("svc")  # fenced: its lease is gone
    await kit.pause(1.0)
    assert recorders["c"].lost == 1  # once
    assert recorders["a"].lost == recorders["b"].lost == 0


async def check_concurrent_claims_accept_exactly_one(kit: MembershipKit) -> None:
    members = [await kit.joined(name) for name in ("a", "b", "c")]
    results = await asyncio.gather(*(members[i % 3].claim("singleton") for i in range(10)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    winner = winners[0]
    assert winner.name == "singleton"
    assert winner.member_id in {"a", "b", "c"}
    host = next(m for m in members if m.info.member_id == winner.member_id)
    assert winner.address == host.info.address
    for member in members:
        assert await member.lookup("singleton") == winner
    await kit.all_see(
        members, lambda m: m.activations().get("singleton") == winner, within=PROPAGATION_S
    )
    # Claiming a held name fails even for its holder.
    assert await host.claim("singleton") is None


async def check_epochs_strictly_increase_and_stale_releases_fail(kit: MembershipKit) -> None:
    a, b = await kit.joined("a"), await kit.joined("b")
    first = await a.claim("x")
    assert first is not None
    assert a.activations()["x"] == first  # read your own write
    assert await a.release(first)
    assert "x" not in a.activations()
    assert not await a.release(first)  # already gone
    second = await b.claim("x")
    assert second is not None
    assert second.epoch > first.epoch
    assert not await a.release(first)  # a stale activation never removes a newer one
    assert await a.lookup("x") == second
    await kit.kill(b)
    await kit.wait_until(lambda: "x" not in a.activations(), within=kit.expiry_bound_s)
    third = await a.claim("x")
    assert third is not None
    assert third.epoch > second.epoch
    assert not await a.release(second)


async def check_lookup_and_views_agree(kit: MembershipKit) -> None:
    members = [await kit.joined(name) for name in ("a", "b", "c")]
    observer = Recorder(members[0])
    claimed = {}
    for i in range(6):
        activation = await members[i % 3].claim(f"actor-{i}")
        assert activation is not None
        claimed[activation.name] = activation
    released = claimed.pop("actor-4")
    assert await members[1].release(released)
    await kit.all_see(members, lambda m: m.activations() == claimed, within=PROPAGATION_S)
    for member in members:
        for name, activation in claimed.items():
            assert await member.lookup(name) == activation
        assert await member.lookup("actor-4") is None
    assert [n for n, a in observer.activations if a is not None] == [f"actor-{i}" for i in range(6)]
    assert observer.activations[-1] == ("actor-4", None)


async def check_campaign_elects_one_leader_and_a_successor(kit: MembershipKit) -> None:
    members = [await kit.joined(name) for name in ("a", "b", "c")]
    results = await asyncio.gather(*(m.campaign("placement") for m in members))
    assert results.count(True) == 1
    leader = members[results.index(True)]
    leader_id = leader.info.member_id
    await kit.all_see(members, lambda m: m.leader("placement") == leader_id, within=PROPAGATION_S)
    assert await leader.campaign("placement")  # still leads
    others = [m for m in members if m is not leader]
    assert not await others[0].campaign("placement")
    await kit.kill(leader)
    await kit.wait_until(
        lambda: others[0].leader("placement") is None, within=kit.expiry_bound_s, what="leader gone"
    )
    assert await others[1].campaign("placement")
    successor = others[1].info.member_id
    await kit.wait_until(lambda: others[0].leader("placement") == successor, within=PROPAGATION_S)
    assert not await others[0].campaign("placement")


async def check_subscribers_see_member_events_in_revision_order(kit: MembershipKit) -> None:
    observer = await kit.joined("observer", ttl_s=LONG_TTL_S)
    recorder = Recorder(observer)
    a = await kit.joined("a")
    b = await kit.joined("b")
    await a.leave()
    c = await kit.joined("c")
    await b.leave()
    await c.leave()
    await kit.wait_until(lambda: len(recorder.events) == 6, within=PROPAGATION_S)
    assert [(e.kind, e.member.member_id) for e in recorder.events] == [
        ("joined", "a"),
        ("joined", "b"),
        ("left", "a"),
        ("joined", "c"),
        ("left", "b"),
        ("left", "c"),
    ]
    revisions = [e.revision for e in recorder.events]
    assert revisions == sorted(revisions)
    assert len(set(revisions)) == len(revisions)
    # Unsubscribing stops the events.
    recorder.unsubscribe()
    await kit.joined("d")
    await kit.wait_until(lambda: "d" in observer.members(), within=PROPAGATION_S)
    assert len(recorder.events) == 6


async def check_an_unreachable_store_fails_every_call_fast_then_heals(kit: MembershipKit) -> None:
    observer = await kit.joined("observer", ttl_s=LONG_TTL_S)
    worker = await kit.joined("worker", ttl_s=LONG_TTL_S)
    leaver = await kit.joined("leaver", ttl_s=LONG_TTL_S)
    recorders = [Recorder(m) for m in (observer, worker)]
    held = await worker.claim("held")
    assert held is not None
    newcomer = await kit.make()
    await kit.outage()
    loop = asyncio.get_running_loop()
    calls = {
        "join": lambda: newcomer.join(kit.info("newcomer"), ttl_s=LONG_TTL_S),
        "claim": lambda: worker.claim("other"),
        "release": lambda: worker.release(held),
        "lookup": lambda: observer.lookup("held"),
        "campaign": lambda: worker.campaign("placement"),
        "leave": leaver.leave,
        "put_record": lambda: worker.put_record("specs", "x", b"x"),
        "delete_record": lambda: worker.delete_record("specs", "x"),
        "records": lambda: observer.records("specs"),
    }
    for what, call in calls.items():
        started = loop.time()
        with expect_raises(MembershipUnavailable):
            await call()
        assert loop.time() - started < FAIL_FAST_S, what
    # The local views still answer (they may be stale).
    assert "worker" in observer.members()
    await kit.restore()
    # A member that joins after the store came back is seen by those that were cut off:
    # their watches resume from the last revision they saw.
    late = await kit.joined("late", ttl_s=LONG_TTL_S)
    await kit.wait_until(lambda: "late" in observer.members(), within=10.0, what="watch resumed")
    await kit.wait_until(lambda: not observer.stale, within=10.0)
    assert await worker.claim("other") is not None
    assert await late.lookup("other") is not None
    assert await observer.lookup("held") == held
    # Nobody lost a lease over an outage shorter than the TTL.
    assert [r.lost for r in recorders] == [0, 0]
    assert newcomer.info is None


async def check_a_member_cut_off_catches_up_on_what_it_missed(kit: MembershipKit) -> None:
    observer = await kit.joined("observer", ttl_s=LONG_TTL_S)
    recorder = Recorder(observer)
    await kit.partition(observer)
    with expect_raises(MembershipUnavailable):
        await observer.lookup("x")
    a = await kit.joined("a")
    b = await kit.joined("b")
    await a.leave()
    assert await b.claim("x") is not None
    await kit.heal(observer)
    await kit.wait_until(lambda: ids(observer) == {"observer", "b"}, within=10.0)
    await kit.wait_until(lambda: "x" in observer.activations(), within=PROPAGATION_S)
    # Nothing was missed, in order: the watch resumed, it did not just reload.
    assert [(e.kind, e.member.member_id) for e in recorder.events] == [
        ("joined", "a"),
        ("joined", "b"),
        ("left", "a"),
    ]
    assert recorder.lost == 0


async def check_a_member_cut_off_longer_than_its_ttl_fences_itself(kit: MembershipKit) -> None:
    other = await kit.joined("other", ttl_s=LONG_TTL_S)
    cut = await kit.joined("cut")
    recorder = Recorder(cut)
    assert await cut.claim("svc") is not None
    await kit.partition(cut)
    # The member gives its lease up by its own clock, no later than the store frees it.
    await kit.wait_until(lambda: recorder.lost == 1, within=kit.expiry_bound_s, what="lost")
    await kit.wait_until(lambda: ids(other) == {"other"}, within=kit.expiry_bound_s)
    assert "svc" not in other.activations()
    taken = await other.claim("svc")
    assert taken is not None
    await kit.heal(cut)
    with expect_raises(MembershipError):
        await cut.claim("svc")
    # It may come back, as a new member.
    await kit.retry(lambda: cut.join(kit.info("cut-2")))
    await kit.wait_until(lambda: ids(other) == {"other", "cut-2"}, within=PROPAGATION_S)
    await kit.wait_until(lambda: cut.activations().get("svc") == taken, within=10.0)
    assert recorder.lost == 1


async def check_compacted_history_is_reloaded_and_the_difference_announced(
    kit: MembershipKit,
) -> None:
    observer = await kit.joined("observer", ttl_s=LONG_TTL_S)
    gone = await kit.joined("gone")
    assert await gone.claim("old") is not None
    await kit.wait_until(lambda: "old" in observer.activations(), within=PROPAGATION_S)
    recorder = Recorder(observer)
    await kit.partition(observer)
    await gone.leave()
    b = await kit.joined("b")
    assert await b.claim("new") is not None
    await kit.compact()
    await kit.heal(observer)
    await kit.wait_until(lambda: ids(observer) == {"observer", "b"}, within=10.0)
    await kit.wait_until(lambda: set(observer.activations()) == {"new"}, within=PROPAGATION_S)
    assert sorted((e.kind, e.member.member_id) for e in recorder.events) == [
        ("joined", "b"),
        ("left", "gone"),
    ]
    assert ("old", None) in recorder.activations
    revisions = [e.revision for e in recorder.events]
    assert revisions == sorted(revisions)


async def check_rejoin_after_leave_and_close_is_idempotent(kit: MembershipKit) -> None:
    a = await kit.joined("a")
    b = await kit.joined("b")
    await a.leave()
    await a.join(kit.info("a-2"))
    await kit.wait_until(lambda: ids(b) == {"a-2", "b"}, within=PROPAGATION_S)
    await a.aclose()
    await a.aclose()
    await kit.wait_until(lambda: ids(b) == {"b"}, within=PROPAGATION_S)
    with expect_raises(MembershipError):
        await a.join(kit.info("a-3"))
    with expect_raises(MembershipError):
        await a.lookup("x")


async def check_records_outlive_the_member_that_wrote_them(kit: MembershipKit) -> None:
    writer, reader = await kit.joined("writer"), await kit.joined("reader")
    await writer.put_record("specs", "counter", b"\x00spec-1")
    await writer.put_record("specs", "a/b", b"nested names are fine")
    await writer.put_record("other", "counter", b"another kind")
    await writer.put_record("specs", "counter", b"spec-2")  # overwrite
    assert await reader.records("specs") == {"counter": b"spec-2", "a/b": b"nested names are fine"}
    await kit.kill(writer)
    await kit.wait_until(lambda: ids(reader) == {"reader"}, within=kit.expiry_bound_s)
    assert await reader.records("specs") == {"counter": b"spec-2", "a/b": b"nested names are fine"}
    await reader.delete_record("specs", "a/b")
    await reader.delete_record("specs", "never-was")  # no error
    assert await reader.records("specs") == {"counter": b"spec-2"}
    assert await reader.records("none") == {}
    # Records are not members, activations or leaders.
    assert reader.activations() == {}
    for kind, name in (("", "x"), ("a/b", "x"), ("specs", "")):
        with expect_raises(ConfigError):
            await reader.put_record(kind, name, b"")
    # Nor do they need a lease: a member that never joined reads and writes them.
    fresh = await kit.make()
    assert await fresh.records("specs") == {"counter": b"spec-2"}


async def check_member_info_round_trips(kit: MembershipKit) -> None:
    a = await kit.make()
    info = MemberInfo(
        member_id="m-ü",
        address="tcp://[::1]:7001",
        capacity=3,
        labels=(("zone", "eu-1"), ("gpu", "yes")),
        public_key="rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7",
    )
    await a.join(info)
    seen = a.members()["m-ü"]
    assert seen == MemberInfo(**{**_fields(info), "joined_at": 1000.0})


def _fields(info: MemberInfo) -> dict[str, Any]:
    return {name: getattr(info, name) for name in MemberInfo.__slots__}


MEMBERSHIP_CHECKS: dict[str, Callable[[MembershipKit], Awaitable[None]]] = {
    name.removeprefix("check_"): check
    for name, check in sorted(globals().items())
    if name.startswith("check_") and name != "check_membership"
}
"""Every check by name, to run one at a time (the project's tests parametrize over it).
Each check wants a fresh kit: members it makes stay in the kit's store."""


async def check_membership(make_kit: Callable[[], Awaitable[Any]]) -> None:
    """Run every membership check, each on a fresh kit from ``await make_kit()``; the
    kit is closed with ``await kit.aclose()`` after its check if it has that method.

    Raises:
        AssertionError: A check failed; its message and traceback say which.
    """
    for check in MEMBERSHIP_CHECKS.values():
        kit = await make_kit()
        try:
            await check(kit)
        finally:
            close = getattr(kit, "aclose", None)
            if close is not None:
                await close()
