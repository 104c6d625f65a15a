"""The in-process membership backend: an etcd in memory.

``MemoryStore`` behaves like one etcd cluster: every change gets the next revision,
keys can be bound to leases that expire on the store's clock unless kept alive, a
compare-and-set creates a key only if it is absent, and watchers receive changes in
revision order, always on a later loop iteration than the write (as a network would).
Several ``MemoryMembership`` objects share one store to simulate a cluster in one
process; with a ``cfactor.testing.ManualClock`` the simulation runs on virtual time.

Test hooks simulate what goes wrong with a real store: ``expire`` (a member's lease
runs out as if it hung), ``set_available`` (the store is unreachable for everyone),
``disconnect``/``reconnect`` (one member is cut off), ``compact`` (history is gone, so
a watcher that was away must reload).
"""

from __future__ import annotations

import asyncio
import bisect
import contextvars
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cfactor._core.clock import LoopClock
from cfactor.abc import Activation, MemberInfo
from cfactor.errors import ConfigError, MembershipError, MembershipUnavailable
from cfactor.membership._common import (
    DELETE,
    PUT,
    ClusterView,
    LeaseDeadline,
    MembershipBase,
    StoreEvent,
    actor_key,
    check_name,
    check_ttl,
    decode_activation,
    encode_activation,
    encode_member,
    leader_key,
    log,
    member_key,
    record_key,
    record_prefix,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from cfactor.abc import Cancellable, Clock

#: How soon a failed keepalive is retried (the regular interval is a third of the TTL).
KEEPALIVE_RETRY_S = 0.25


class _LeaseNotFound(MembershipError):
    """The store no longer knows the lease (it expired or was revoked)."""


@dataclass(slots=True)
class _Value:
    data: bytes
    create_revision: int
    mod_revision: int
    lease: int


@dataclass(slots=True)
class _Lease:
    lease_id: int
    ttl: float
    deadline: float
    client: _Client
    keys: set[str] = field(default_factory=set)
    timer: Cancellable | None = None


class _Client:
    """One member's connection to the store: what ``disconnect`` cuts."""

    __slots__ = ("context", "cursor", "member_id", "view", "watching")

    def __init__(self, view: ClusterView) -> None:
        self.member_id = ""
        self.view = view
        self.watching = False
        self.cursor = 0
        # The member's watch callbacks run in its own context, as they would in its own
        # process, not in the context of whichever member wrote the change.
        self.context = contextvars.copy_context()


class MemoryStore:
    """A membership store in memory, shared by the members of one simulated cluster.

    Args:
        clock: Lease TTLs and keepalives run on this clock (default: the running
            loop's). Pass a ``cfactor.testing.ManualClock`` to run on virtual time.
        history_limit: Changes kept for watchers that fall behind; older ones are
            compacted away (as etcd's auto-compaction), and a watcher that needs them
            reloads the full state instead.

    Raises:
        ConfigError: ``history_limit`` is not positive.
    """

    def __init__(self, *, clock: Clock | None = None, history_limit: int = 10_000) -> None:
        if history_limit <= 0:
            raise ConfigError(f"history_limit must be positive, not {history_limit!r}")
        self.clock: Clock = clock if clock is not None else LoopClock()
        self._history_limit = history_limit
        # etcd starts at revision 1 with nothing in it; so does this store.
        self._revision = 1
        self._compacted = 0
        self._data: dict[str, _Value] = {}
        self._log: list[StoreEvent] = []
        self._leases: dict[int, _Lease] = {}
        self._lease_ids = itertools.count(1)
        self._available = True
        self._disconnected: set[str] = set()
        self._clients: list[_Client] = []
        self._pump_scheduled = False
        # The store's own timers (lease expiry, watch delivery) run in the context it was
        # made in, not in that of the member whose call set them: it is its own process.
        self._context = contextvars.copy_context()
        #: Watchers hear of changes this much later (a slow store, for simulations); a
        #: claim waits for its own change to come back, so it is slowed as much.
        self.watch_delay_s = 0.0
        #: Asked after each create is applied: True loses its answer (the caller sees
        #: ``MembershipUnavailable``), etcd's ambiguous outcome, for simulations.
        self.lose_reply: Callable[[str], bool] | None = None

    def __repr__(self) -> str:
        state = "available" if self._available else "unavailable"
        return f"<MemoryStore revision={self._revision} keys={len(self._data)} {state}>"

    @property
    def revision(self) -> int:
        """The revision of the last change."""
        return self._revision

    # -- test hooks ---------------------------------------------------------------------

    def set_available(self, available: bool) -> None:
        """Make the store unreachable for every member (every call raises
        ``MembershipUnavailable`` at once, watches stall), or reachable again (watches
        resume from where each member stopped). Leases keep running on the store's
        clock meanwhile, as they do on an etcd that its members cannot reach."""
        self._available = available
        if available:
            self._schedule_pump()

    def disconnect(self, member_id: str) -> None:
        """Cut one member off the store, as a network partition would."""
        self._disconnected.add(member_id)

    def reconnect(self, member_id: str) -> None:
        """Undo ``disconnect``: the member's calls work and its watch resumes."""
        self._disconnected.discard(member_id)
        self._schedule_pump()

    def expire(self, member_id: str) -> bool:
        """Expire ``member_id``'s lease now, as if it had stopped its keepalives a TTL
        ago. Its keys go in one revision; it finds out at its next keepalive.

        Returns:
            True if the member had a lease.
        """
        found = [i for i, lease in self._leases.items() if lease.client.member_id == member_id]
        for lease_id in found:
            self._drop_lease(lease_id)
        return bool(found)

    def compact(self) -> None:
        """Forget the change history up to now (etcd's compaction)."""
        if self._log:
            self._compacted = self._log[-1].revision
            self._log.clear()

    # -- the store's operations, for MemoryMembership ------------------------------------

    def _later(self, delay: float, callback: Callable[..., object], *args: Any) -> Cancellable:
        return self._context.copy().run(self.clock.call_later, delay, callback, *args)

    def _check(self, client: _Client) -> None:
        if not self._reachable(client):
            raise MembershipUnavailable("the membership store cannot be reached")

    def _reachable(self, client: _Client) -> bool:
        return self._available and client.member_id not in self._disconnected

    def _grant(self, client: _Client, ttl_s: float) -> tuple[int, float]:
        self._check(client)
        lease = _Lease(next(self._lease_ids), ttl_s, self.clock.now() + ttl_s, client)
        self._leases[lease.lease_id] = lease
        lease.timer = self._later(ttl_s, self._check_lease, lease.lease_id)
        return lease.lease_id, ttl_s

    def _keepalive(self, client: _Client, lease_id: int) -> float:
        """Refresh a lease; returns its TTL, or 0 if the store no longer has it."""
        self._check(client)
        lease = self._leases.get(lease_id)
        if lease is None:
            return 0.0
        lease.deadline = self.clock.now() + lease.ttl
        return lease.ttl

    def _revoke(self, client: _Client, lease_id: int) -> None:
        self._check(client)
        self._drop_lease(lease_id)

    def _create(self, client: _Client, key: str, data: bytes, lease_id: int) -> int | None:
        """Create ``key`` bound to the lease if it does not exist; its revision, or None.

        Raises:
            MembershipUnavailable: The client cannot reach the store.
            _LeaseNotFound: The lease is gone.
        """
        self._check(client)
        lease = self._leases.get(lease_id)
        if lease is None:
            raise _LeaseNotFound("requested lease not found")
        if key in self._data:
            return None
        revision = self._next_revision()
        self._data[key] = _Value(data, revision, revision, lease_id)
        lease.keys.add(key)
        self._record(StoreEvent(PUT, key, data, revision, revision))
        if self.lose_reply is not None and self.lose_reply(key):
            # etcd's ambiguous outcome: applied, but the client hears a timeout.
            raise MembershipUnavailable("the store applied the request but its answer was lost")
        return revision

    def _delete_if(self, client: _Client, key: str, create_revision: int) -> int | None:
        """Delete ``key`` if it was created at ``create_revision``; its revision, or None."""
        self._check(client)
        value = self._data.get(key)
        if value is None or value.create_revision != create_revision:
            return None
        revision = self._next_revision()
        self._remove(key, revision)
        return revision

    def _put(self, client: _Client, key: str, data: bytes) -> int:
        """Store ``data`` under ``key``, bound to no lease; returns the revision."""
        self._check(client)
        revision = self._next_revision()
        old = self._data.get(key)
        if old is not None:
            lease = self._leases.get(old.lease)
            if lease is not None:
                lease.keys.discard(key)
        created = revision if old is None else old.create_revision
        self._data[key] = _Value(data, created, revision, 0)
        self._record(StoreEvent(PUT, key, data, created, revision))
        return revision

    def _delete(self, client: _Client, key: str) -> int | None:
        """Delete ``key`` if it exists; returns the revision, or None."""
        self._check(client)
        if key not in self._data:
            return None
        revision = self._next_revision()
        self._remove(key, revision)
        return revision

    def _range(self, client: _Client, prefix: str) -> dict[str, bytes]:
        """Every key under ``prefix`` (the prefix cut off) and its value."""
        self._check(client)
        cut = len(prefix)
        return {k[cut:]: v.data for k, v in sorted(self._data.items()) if k.startswith(prefix)}

    def _get(self, client: _Client, key: str) -> _Value | None:
        self._check(client)
        return self._data.get(key)

    def _watch(self, client: _Client) -> tuple[list[StoreEvent], int]:
        """Start delivering changes to ``client.view``; returns the state to load first."""
        self._check(client)
        snapshot = [
            StoreEvent(PUT, key, value.data, value.create_revision, value.mod_revision)
            for key, value in self._data.items()
        ]
        client.cursor = self._revision
        client.watching = True
        if client not in self._clients:
            self._clients.append(client)
        return snapshot, self._revision

    def _unwatch(self, client: _Client) -> None:
        client.watching = False
        if client in self._clients:
            self._clients.remove(client)

    # -- internals ----------------------------------------------------------------------

    def _next_revision(self) -> int:
        self._revision += 1
        return self._revision

    def _remove(self, key: str, revision: int) -> None:
        value = self._data.pop(key)
        lease = self._leases.get(value.lease)
        if lease is not None:
            lease.keys.discard(key)
        self._record(StoreEvent(DELETE, key, b"", 0, revision))

    def _drop_lease(self, lease_id: int) -> None:
        lease = self._leases.pop(lease_id, None)
        if lease is None:
            return
        if lease.timer is not None:
            lease.timer.cancel()
        if lease.keys:
            # One revision for all of a lease's keys, deleted in key order, as etcd does.
            revision = self._next_revision()
            for key in sorted(lease.keys):
                if key in self._data:
                    self._remove(key, revision)

    def _check_lease(self, lease_id: int) -> None:
        lease = self._leases.get(lease_id)
        if lease is None:
            return
        now = self.clock.now()
        if now >= lease.deadline:
            self._drop_lease(lease_id)
        else:
            lease.timer = self._later(lease.deadline - now, self._check_lease, lease_id)

    def _record(self, event: StoreEvent) -> None:
        self._log.append(event)
        if len(self._log) > self._history_limit:
            # Drop whole revisions only, so a watcher never gets half of one.
            cut = len(self._log) - self._history_limit
            last = self._log[cut - 1].revision
            cut = bisect.bisect_right(self._log, last, key=lambda e: e.revision)
            if cut < len(self._log):
                self._compacted = last
                del self._log[:cut]
        self._schedule_pump()

    def _schedule_pump(self) -> None:
        # Watchers hear of a change on a later loop iteration, never inside the writer:
        # code that writes and then reads its own view behaves as it would against etcd.
        if not self._pump_scheduled:
            self._pump_scheduled = True
            if self.watch_delay_s > 0:
                self._later(self.watch_delay_s, self._pump)
            else:
                asyncio.get_running_loop().call_soon(self._pump, context=self._context.copy())

    def _pump(self) -> None:
        self._pump_scheduled = False
        for client in tuple(self._clients):
            if client.watching and self._reachable(client):
                client.context.copy().run(self._deliver, client)

    def _deliver(self, client: _Client) -> None:
        if client.cursor < self._compacted:
            snapshot, revision = self._watch(client)
            client.view.reset(snapshot, revision)
            return
        start = bisect.bisect_right(self._log, client.cursor, key=lambda e: e.revision)
        for event in self._log[start:]:
            # A subscriber may disconnect, close or compact from inside its callback.
            if not client.watching or not self._reachable(client):
                return
            client.cursor = event.revision
            client.view.apply(event)


class MemoryMembership(MembershipBase):
    """``cf.abc.Membership`` on a ``MemoryStore``: the embedded default.

    Args:
        store: The store this member's cluster shares.
        wall_clock: Where ``MemberInfo.joined_at`` comes from (the top level passes
            ``time.time``); without it, ``joined_at`` is kept as given.
        request_timeout_s: How long ``claim`` and ``join`` wait for this member's own
            view to show their change.

    Raises:
        ConfigError: ``request_timeout_s`` is not positive.
    """

    def __init__(
        self,
        store: MemoryStore,
        *,
        wall_clock: Callable[[], float] | None = None,
        request_timeout_s: float = 1.0,
    ) -> None:
        super().__init__(
            request_timeout_s=request_timeout_s, wall_clock=wall_clock, clock=store.clock
        )
        self._store = store
        self._client = _Client(self._view)
        self._lease: int | None = None
        self._ttl_s = 0.0
        self._keepalive_timer: Cancellable | None = None
        self._deadline = LeaseDeadline(self._clock, self._lease_expired, self._guard_holds)

    def __repr__(self) -> str:
        who = self._info.member_id if self._info is not None else "-"
        return f"<MemoryMembership member={who} revision={self._view.revision}>"

    @property
    def stale(self) -> bool:
        """True while the local view may lag the store (cut off, or not watching)."""
        return not (self._client.watching and self._store._reachable(self._client))

    async def join(self, info: MemberInfo, ttl_s: float = 5.0) -> None:
        """Register ``info`` under a lease of ``ttl_s`` seconds and start watching.

        Raises:
            MembershipUnavailable: The store cannot be reached.
            MembershipError: This membership was closed.
            ConfigError: Already joined, ``ttl_s`` out of range, or another live member
                has the same ``member_id``.
        """
        self._check_open()
        if self._info is not None:
            raise ConfigError(f"already joined as {self._info.member_id!r}")
        check_ttl(ttl_s)
        info = self._stamp(info)
        store, client = self._store, self._client
        client.member_id = info.member_id
        sent_at = self._clock.now()
        lease, ttl = store._grant(client, float(ttl_s))
        try:
            if not client.watching:
                snapshot, loaded = store._watch(client)
                self._view.reset(snapshot, loaded)
            revision = store._create(client, member_key(info.member_id), encode_member(info), lease)
        except BaseException:
            store._drop_lease(lease)
            raise
        if revision is None:
            store._drop_lease(lease)
            raise ConfigError(f"member id {info.member_id!r} is already in the cluster")
        self._info, self._lease, self._ttl_s = info, lease, ttl
        self._lease_is_lost = False
        self._deadline.refreshed(sent_at, ttl)
        self._schedule_keepalive(ttl / 3)
        await self._view.wait_revision(revision, self._request_timeout_s)

    async def leave(self) -> None:
        """Revoke the lease at once: this member and its activations disappear.

        Does nothing if not joined. Local keepalives stop even when the store cannot be
        reached, so the lease then ends by its TTL.

        Raises:
            MembershipUnavailable: The store cannot be reached (the lease will expire).
        """
        lease = self._lease
        if self._info is None or lease is None:
            return
        self._stop_lease()
        self._info = None
        self._store._revoke(self._client, lease)
        await asyncio.sleep(0)  # the revocation reaches watchers on the next iteration

    async def claim(self, name: str) -> Activation | None:
        """Accept an activation of ``name`` on this member, if nobody holds one.

        Returns:
            The activation (its epoch is the store revision that accepted it), or None
            if ``name`` is held, by this member or another.

        Raises:
            MembershipUnavailable: The store cannot be reached.
            MembershipError: Not joined, closed, or this member's lease was lost.
            ConfigError: ``name`` is empty.
        """
        info = self._require_joined()
        check_name("name", name)
        data = encode_activation(info.member_id, info.address)
        revision = self._create_bound(actor_key(name), data)
        if revision is None:
            return None
        await self._view.wait_revision(revision, self._request_timeout_s)
        return Activation(name, info.member_id, info.address, revision)

    async def release(self, activation: Activation) -> bool:
        """Remove ``activation`` if it is still the accepted one; False otherwise.

        Raises:
            MembershipUnavailable: The store cannot be reached.
            MembershipError: This membership was closed.
        """
        self._check_open()
        revision = self._store._delete_if(
            self._client, actor_key(activation.name), activation.epoch
        )
        if revision is None:
            return False
        await self._view.wait_revision(revision, self._request_timeout_s)
        return True

    async def lookup(self, name: str) -> Activation | None:
        """The accepted activation of ``name``, read from the store.

        Raises:
            MembershipUnavailable: The store cannot be reached.
            MembershipError: This membership was closed.
        """
        self._check_open()
        value = self._store._get(self._client, actor_key(name))
        await asyncio.sleep(0)  # a read is a round trip too: let others run
        if value is None:
            return None
        return decode_activation(name, value.data, value.create_revision)

    async def campaign(self, role: str) -> bool:
        """Try to become the leader of ``role``; True if this member now leads it.

        Raises:
            MembershipUnavailable: The store cannot be reached.
            MembershipError: Not joined, closed, or this member's lease was lost.
            ConfigError: ``role`` is empty.
        """
        info = self._require_joined()
        check_name("role", role)
        key = leader_key(role)
        revision = self._create_bound(key, info.member_id.encode())
        if revision is not None:
            await self._view.wait_revision(revision, self._request_timeout_s)
            return True
        held = self._store._get(self._client, key)
        return held is not None and held.lease == self._lease

    async def put_record(self, kind: str, name: str, data: bytes) -> None:
        """Store ``data`` under ``kind``/``name``, bound to no lease: it outlives members.

        Raises:
            MembershipUnavailable: The store cannot be reached.
            MembershipError: This membership was closed.
            ConfigError: ``kind`` is empty or has a ``/``, or ``name`` is empty.
        """
        self._check_open()
        self._store._put(self._client, record_key(kind, name), bytes(data))
        await asyncio.sleep(0)  # a write is a round trip: let others run

    async def delete_record(self, kind: str, name: str) -> None:
        """Remove a record (no error if it is not there).

        Raises:
            MembershipUnavailable: The store cannot be reached.
            MembershipError: This membership was closed.
            ConfigError: ``kind`` is empty or has a ``/``, or ``name`` is empty.
        """
        self._check_open()
        self._store._delete(self._client, record_key(kind, name))
        await asyncio.sleep(0)

    async def records(self, kind: str) -> dict[str, bytes]:
        """Every record of ``kind`` by name, read from the store.

        Raises:
            MembershipUnavailable: The store cannot be reached.
            MembershipError: This membership was closed.
            ConfigError: ``kind`` is empty or has a ``/``.
        """
        self._check_open()
        found = self._store._range(self._client, record_prefix(kind))
        await asyncio.sleep(0)
        return found

    async def aclose(self) -> None:
        """Leave (if joined), stop watching. Idempotent; never raises for an
        unreachable store (the lease then ends by its TTL)."""
        if self._closed:
            return
        try:
            await self.leave()
        except MembershipError as exc:
            log.info("leaving on close failed, the lease will expire: %r", exc)
        finally:
            self._closed = True
            self._stop_lease()
            self._store._unwatch(self._client)

    # -- internals ----------------------------------------------------------------------

    def _create_bound(self, key: str, data: bytes) -> int | None:
        assert self._lease is not None
        try:
            return self._store._create(self._client, key, data, self._lease)
        except _LeaseNotFound:
            self._lease_expired()
            raise MembershipError("this member's lease was lost") from None

    def _schedule_keepalive(self, delay: float) -> None:
        self._keepalive_timer = self._clock.call_later(delay, self._keepalive)

    def _keepalive(self) -> None:
        self._keepalive_timer = None
        lease = self._lease
        if lease is None:
            return
        sent_at = self._clock.now()
        interval = self._ttl_s / 3
        try:
            ttl = self._store._keepalive(self._client, lease)
        except MembershipUnavailable:
            self._store_trouble = True
            # The deadline timer decides when this has gone on too long.
            self._schedule_keepalive(min(interval, KEEPALIVE_RETRY_S))
            return
        if ttl <= 0:
            self._lease_expired()
            return
        self._store_trouble = False
        self._deadline.refreshed(sent_at, ttl)
        self._schedule_keepalive(interval)

    def _stop_keepalive(self) -> None:
        """Stop refreshing the lease but keep the deadline (a hung member, for tests)."""
        if self._keepalive_timer is not None:
            self._keepalive_timer.cancel()
            self._keepalive_timer = None

    def _stop_lease(self) -> None:
        self._stop_keepalive()
        self._deadline.cancel()
        self._lease = None

    def _lease_expired(self) -> None:
        lease = self._lease
        self._stop_lease()
        self._fire_lease_lost()
        if lease is not None and self._store._reachable(self._client):
            # The store may still hold it (we only stopped hearing back): free the names
            # now rather than a TTL later. Unreachable: the TTL will do it.
            self._store._drop_lease(lease)
