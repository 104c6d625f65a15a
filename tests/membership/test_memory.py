"""What only the memory backend has: its test hooks, virtual time, bounded history."""

from __future__ import annotations

import asyncio
import functools

import pytest

from cfactor.abc import MemberEvent, MemberInfo
from cfactor.errors import ConfigError, MembershipError, MembershipUnavailable
from cfactor.membership import MemoryMembership, MemoryStore, make_membership
from cfactor.testing import ManualClock

pytestmark = pytest.mark.anyio


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def joined(store: MemoryStore, member_id: str, ttl_s: float = 3.0) -> MemoryMembership:
    member = MemoryMembership(store)
    await member.join(MemberInfo(member_id, f"mem://{member_id}"), ttl_s=ttl_s)
    return member


async def test_watchers_hear_of_a_change_on_a_later_loop_iteration() -> None:
    store = MemoryStore(clock=ManualClock())
    a, b = await joined(store, "a"), await joined(store, "b")
    events: list[MemberEvent] = []
    a.subscribe(events.append)
    assert store.expire("b")
    assert events == []  # never inside the writer
    assert "b" in a.members()
    await settle()
    assert [(e.kind, e.member.member_id) for e in events] == [("left", "b")]
    await a.aclose()
    await b.aclose()


async def test_revisions_increase_on_every_change() -> None:
    store = MemoryStore(clock=ManualClock())
    assert store.revision == 1
    a = await joined(store, "a")
    assert store.revision == 2
    activation = await a.claim("x")
    assert activation is not None
    assert activation.epoch == store.revision == 3
    assert await a.campaign("r")
    assert store.revision == 4
    await a.leave()  # the lease's keys go in one revision
    assert store.revision == 5
    assert "revision=5" in repr(store)


async def test_a_hung_member_expires_exactly_at_its_ttl_on_virtual_time() -> None:
    clock = ManualClock()
    store = MemoryStore(clock=clock)
    a, hung = await joined(store, "a"), await joined(store, "hung", ttl_s=3.0)
    lost: list[str] = []
    hung.on_lease_lost(lambda: lost.append("hung"))
    hung._stop_keepalive()
    clock.advance(2.99)
    await settle()
    assert "hung" in a.members()
    assert lost == []
    clock.advance(0.02)
    await settle()
    assert "hung" not in a.members()
    assert lost == ["hung"]
    # Members that keep their keepalives live on, however long it runs.
    clock.advance(60.0)
    await settle()
    assert set(a.members()) == {"a"}
    assert a.joined


async def test_an_outage_longer_than_the_ttl_costs_every_lease() -> None:
    # The memory store keeps running while nobody reaches it (a partition of everyone,
    # not a crashed etcd): leases run out and every member fences itself.
    clock = ManualClock()
    store = MemoryStore(clock=clock)
    members = [await joined(store, name, ttl_s=2.0) for name in ("a", "b")]
    lost: list[str] = []
    for member, name in zip(members, ("a", "b"), strict=True):
        member.on_lease_lost(functools.partial(lost.append, name))
    store.set_available(False)
    assert all(m.stale for m in members)
    clock.advance(2.5)
    assert sorted(lost) == ["a", "b"]
    store.set_available(True)
    await settle()
    assert members[0].members() == {}
    with pytest.raises(MembershipError):
        await members[0].claim("x")


async def test_a_watcher_that_fell_behind_the_history_limit_reloads() -> None:
    store = MemoryStore(clock=ManualClock(), history_limit=3)
    observer = await joined(store, "observer")
    events: list[MemberEvent] = []
    observer.subscribe(events.append)
    store.disconnect("observer")
    worker = await joined(store, "worker")
    for i in range(5):
        assert await worker.claim(f"n{i}") is not None
    store.reconnect("observer")
    await settle()
    assert set(observer.activations()) == {f"n{i}" for i in range(5)}
    assert [(e.kind, e.member.member_id) for e in events] == [("joined", "worker")]


async def test_unreachable_member_calls_raise_at_once() -> None:
    store = MemoryStore(clock=ManualClock())
    a = await joined(store, "a")
    store.disconnect("a")
    for call in (lambda: a.claim("x"), lambda: a.lookup("x"), lambda: a.campaign("r"), a.leave):
        with pytest.raises(MembershipUnavailable):
            await call()
    store.reconnect("a")
    assert not a.joined  # leave went through locally; the store lets the lease run out


async def test_the_default_clock_is_the_loop() -> None:
    store = MemoryStore()
    a = await joined(store, "a", ttl_s=0.3)
    b = await joined(store, "b", ttl_s=0.3)
    await asyncio.sleep(0.5)  # keepalives every 0.1 s keep both alive
    assert set(a.members()) == {"a", "b"}
    b._stop_keepalive()
    await asyncio.sleep(0.5)
    assert set(a.members()) == {"a"}
    await a.aclose()


def test_make_membership_memory() -> None:
    clock = ManualClock()
    one = make_membership(None, clock=clock)
    assert isinstance(one, MemoryMembership)
    store = MemoryStore(clock=clock)
    shared = make_membership("memory://", store=store, clock=clock)
    assert isinstance(shared, MemoryMembership)
    with pytest.raises(ConfigError):
        make_membership("http://127.0.0.1:2379", store=store)
    with pytest.raises(ConfigError):
        MemoryStore(history_limit=0)
    with pytest.raises(ConfigError):
        MemoryMembership(store, request_timeout_s=-1)
