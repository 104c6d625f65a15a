"""What both membership backends share: the key layout, the value codec, the local
view that store events are applied to, and the client-side lease deadline.

The memory and etcd backends differ only in how they reach their store. Both feed the
same ``ClusterView`` with the same ``StoreEvent``s (keys relative to the cluster's
prefix, values as the same JSON bytes), so the views, the events subscribers see and
their order cannot drift apart between the two.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
from typing import TYPE_CHECKING, Any, NamedTuple

from cfactor._core.clock import LoopClock
from cfactor.abc import Activation, MemberEvent, MemberInfo
from cfactor.errors import ConfigError, MembershipError, check_positive

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from cfactor.abc import Cancellable, Clock

log = logging.getLogger("cfactor.membership")

MEMBERS = "members"
ACTORS = "actors"
LEADERS = "leaders"
RECORDS = "records"

#: Largest TTL etcd accepts (its ``MaxLeaseTTL``); the memory store keeps the same bound
#: so a setting that works in tests also works against etcd.
MAX_TTL_S = 9_000_000_000.0

PUT = "put"
DELETE = "delete"


class StoreEvent(NamedTuple):
    """One change of one key, as both stores report it.

    Attributes:
        kind: ``"put"`` or ``"delete"``.
        key: The key relative to the cluster prefix (``"members/m1"``).
        value: The stored bytes (empty for a delete).
        create_revision: The revision that created the key (0 for a delete).
        revision: The revision of this change (etcd's mod revision).
    """

    kind: str
    key: str
    value: bytes
    create_revision: int
    revision: int


def member_key(member_id: str) -> str:
    return f"{MEMBERS}/{member_id}"


def actor_key(name: str) -> str:
    return f"{ACTORS}/{name}"


def leader_key(role: str) -> str:
    return f"{LEADERS}/{role}"


def record_prefix(kind: str) -> str:
    """Where the records of ``kind`` live.

    Raises:
        ConfigError: ``kind`` is empty or has a ``/`` (it would overlap another kind).
    """
    check_name("kind", kind)
    if "/" in kind:
        raise ConfigError(f"a record kind cannot contain '/': {kind!r}")
    return f"{RECORDS}/{kind}/"


def record_key(kind: str, name: str) -> str:
    """The key of one record.

    Raises:
        ConfigError: A bad ``kind`` or an empty ``name``.
    """
    prefix = record_prefix(kind)
    check_name("name", name)
    return prefix + name


def check_name(what: str, value: str) -> None:
    """Reject names that would make an ambiguous or empty key.

    Raises:
        ConfigError: ``value`` is not a non-empty string.
    """
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what} must be a non-empty string, not {value!r}")


def check_ttl(ttl_s: float) -> None:
    """Check a lease TTL.

    Raises:
        ConfigError: ``ttl_s`` is not a finite number of seconds in (0, MAX_TTL_S].
    """
    if (
        isinstance(ttl_s, bool)
        or not isinstance(ttl_s, int | float)
        or not math.isfinite(ttl_s)
        or not 0 < ttl_s <= MAX_TTL_S
    ):
        raise ConfigError(f"ttl_s must be in (0, {MAX_TTL_S:.0f}] seconds, not {ttl_s!r}")


def check_timeout(request_timeout_s: float) -> None:
    """Check a per-request timeout.

    Raises:
        ConfigError: ``request_timeout_s`` is not a positive finite number.
    """
    check_positive("request_timeout_s", request_timeout_s)


# -- values ----------------------------------------------------------------------------
# JSON, not msgpack: an operator reads the cluster with ``etcdctl get --prefix /cfactor/``
# and these values are written once per join or placement, never per message.


def encode_member(info: MemberInfo) -> bytes:
    return json.dumps(
        {
            "member_id": info.member_id,
            "address": info.address,
            "capacity": info.capacity,
            "labels": [list(pair) for pair in info.labels],
            "public_key": info.public_key,
            "joined_at": info.joined_at,
        },
        separators=(",", ":"),
    ).encode()


def decode_member(data: bytes) -> MemberInfo:
    """Read a member record.

    Raises:
        ValueError: ``data`` is not JSON.
        TypeError: ``data`` is not a member record (written by something else).
        KeyError: A required field is missing.
    """
    raw = json.loads(data)
    if not isinstance(raw, dict):
        raise TypeError("a member record is a JSON object")
    labels = tuple((str(k), str(v)) for k, v in raw.get("labels", ()))
    return MemberInfo(
        member_id=str(raw["member_id"]),
        address=str(raw["address"]),
        capacity=int(raw.get("capacity", 0)),
        labels=labels,
        public_key=str(raw.get("public_key", "")),
        joined_at=float(raw.get("joined_at", 0.0)),
    )


def encode_activation(member_id: str, address: str) -> bytes:
    return json.dumps({"member_id": member_id, "address": address}, separators=(",", ":")).encode()


def decode_activation(name: str, data: bytes, epoch: int) -> Activation:
    """Read an activation record; ``epoch`` is the key's create revision.

    Raises:
        ValueError: ``data`` is not JSON.
        TypeError: ``data`` is not an activation record.
        KeyError: A required field is missing.
    """
    raw = json.loads(data)
    if not isinstance(raw, dict):
        raise TypeError("an activation record is a JSON object")
    return Activation(name, str(raw["member_id"]), str(raw["address"]), epoch)


def decode_leader(data: bytes) -> str:
    return data.decode()


# -- the local view --------------------------------------------------------------------


class _Entry(NamedTuple):
    create_revision: int
    revision: int


class ClusterView:
    """Members, activations and leaders as last seen in the store, with subscribers.

    ``apply`` is idempotent per (key, revision): a watch resumed *at* the last seen
    revision (not after it, in case that revision's events were cut in half) replays
    changes the view already has, and they change nothing and notify nobody.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock: Clock = clock if clock is not None else LoopClock()
        self.members: dict[str, MemberInfo] = {}
        self.activations: dict[str, Activation] = {}
        self.leaders: dict[str, str] = {}
        self.revision = 0
        self._entries: dict[str, _Entry] = {}
        self._member_subscribers: list[Callable[[MemberEvent], None]] = []
        self._activation_subscribers: list[Callable[[str, Activation | None], None]] = []
        self._leader_subscribers: list[Callable[[str, str | None], None]] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    # subscriptions

    def subscribe(self, callback: Callable[[MemberEvent], None]) -> Callable[[], None]:
        return _add(self._member_subscribers, callback)

    def subscribe_activations(
        self, callback: Callable[[str, Activation | None], None]
    ) -> Callable[[], None]:
        return _add(self._activation_subscribers, callback)

    def subscribe_leaders(self, callback: Callable[[str, str | None], None]) -> Callable[[], None]:
        return _add(self._leader_subscribers, callback)

    # changes

    def apply(self, event: StoreEvent) -> None:
        """Apply one store change and notify subscribers if it changed the view."""
        known = self._entries.get(event.key)
        if event.kind == PUT:
            # A replayed put (same or older revision than what the view holds) is a no-op.
            if known is not None and known.revision >= event.revision:
                self._advance(event.revision)
                return
            self._put(event, known)
        elif known is not None and known.revision < event.revision:
            self._delete(event.key, event.revision)
        self._advance(event.revision)

    def reset(self, snapshot: Iterable[StoreEvent], revision: int) -> None:
        """Replace the view with a full snapshot taken at ``revision``.

        Used for the first load and after the watch's resume revision was compacted:
        the difference to the old view is announced as events, so a subscriber sees
        every member that came or went while the watch was away. Events that cannot be
        timed exactly (a key that vanished) carry ``revision``.
        """
        fresh = {event.key: event for event in snapshot}
        # Arrivals first, in the order they happened; then departures, which can only be
        # timed as "by ``revision``". Member events thus stay in revision order.
        for key, event in sorted(fresh.items(), key=lambda item: item[1].revision):
            known = self._entries.get(key)
            if known is not None and known.create_revision != event.create_revision:
                # Deleted and created again while we were away: it went before it came
                # back, so a subscriber never sees two activations of one name at once.
                self._delete(key, event.create_revision)
                known = None
            if known is None or known.revision < event.revision:
                self._put(event, known)
        for key in sorted(key for key in self._entries if key not in fresh):
            self._delete(key, revision)
        self._advance(revision)

    def _put(self, event: StoreEvent, known: _Entry | None) -> None:
        # Records (and keys of any other family) are read on demand, not kept here.
        family, _, name = event.key.partition("/")
        try:
            if family == MEMBERS:
                info = decode_member(event.value)
                self._entries[event.key] = _Entry(event.create_revision, event.revision)
                fresh = name not in self.members
                self.members[name] = info
                if fresh:
                    self._notify_member(MemberEvent("joined", info, event.revision))
            elif family == ACTORS:
                activation = decode_activation(name, event.value, event.create_revision)
                self._entries[event.key] = _Entry(event.create_revision, event.revision)
                if self.activations.get(name) != activation:
                    self.activations[name] = activation
                    self._notify_activation(name, activation)
            elif family == LEADERS:
                leader = decode_leader(event.value)
                self._entries[event.key] = _Entry(event.create_revision, event.revision)
                if self.leaders.get(name) != leader:
                    self.leaders[name] = leader
                    self._notify_leader(name, leader)
        except (ValueError, KeyError, TypeError) as exc:
            # Someone else wrote under our prefix: skip the key, never stop the watch.
            log.warning(
                "ignoring unreadable key %r at revision %d: %r", event.key, event.revision, exc
            )
            if known is not None:
                self._delete(event.key, event.revision)

    def _delete(self, key: str, revision: int) -> None:
        self._entries.pop(key, None)
        family, _, name = key.partition("/")
        if family == MEMBERS:
            info = self.members.pop(name, None)
            if info is not None:
                self._notify_member(MemberEvent("left", info, revision))
        elif family == ACTORS:
            if self.activations.pop(name, None) is not None:
                self._notify_activation(name, None)
        elif family == LEADERS and self.leaders.pop(name, None) is not None:
            self._notify_leader(name, None)

    def _advance(self, revision: int) -> None:
        if revision <= self.revision:
            return
        self.revision = revision
        if self._waiters:
            keep: list[tuple[int, asyncio.Future[None]]] = []
            for wanted, future in self._waiters:
                if wanted <= revision:
                    if not future.done():
                        future.set_result(None)
                else:
                    keep.append((wanted, future))
            self._waiters = keep

    async def wait_revision(self, revision: int, timeout: float) -> bool:
        """Wait until the view has applied ``revision``; False after ``timeout`` seconds.

        Lets ``claim`` and ``join`` return only once the caller's own view shows the
        change (read your writes), without breaking the revision order of events.
        """
        if self.revision >= revision:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((revision, future))
        try:
            async with self._clock.timeout(timeout):
                await future
        except TimeoutError:
            return False
        finally:
            if not future.done():
                future.cancel()
            self._waiters = [(r, f) for r, f in self._waiters if f is not future]
        return True

    # notification: a subscriber's exception is logged and never stops the others

    def _notify_member(self, event: MemberEvent) -> None:
        for callback in tuple(self._member_subscribers):
            _call(callback, event)

    def _notify_activation(self, name: str, activation: Activation | None) -> None:
        for callback in tuple(self._activation_subscribers):
            _call(callback, name, activation)

    def _notify_leader(self, role: str, leader: str | None) -> None:
        for callback in tuple(self._leader_subscribers):
            _call(callback, role, leader)


def _add(subscribers: list[Any], callback: Any) -> Callable[[], None]:
    subscribers.append(callback)

    def unsubscribe() -> None:
        # Remove by identity: the same function may be subscribed twice.
        for index, existing in enumerate(subscribers):
            if existing is callback:
                del subscribers[index]
                return

    return unsubscribe


def _call(callback: Callable[..., object], *args: Any) -> None:
    try:
        callback(*args)
    except Exception:
        log.exception("membership subscriber %r raised", callback)


# -- the client-side lease deadline ----------------------------------------------------


#: How often an expired deadline held off by a guard asks the guard again.
GUARD_RECHECK_S = 0.1


class LeaseDeadline:
    """When this member must assume its lease is gone, by its own clock.

    The deadline is the send time of the last acknowledged keepalive plus the TTL the
    store granted: the store received that keepalive later than it was sent, so its
    expiry can only be later than ours. A member therefore fences itself no later than
    the store frees its names for someone else.
    """

    def __init__(
        self,
        clock: Clock,
        on_expired: Callable[[], None],
        guard: Callable[[], bool] | None = None,
    ) -> None:
        self._clock = clock
        self._on_expired = on_expired
        #: Asked when the deadline passes: True holds the expiry off (re-asked every
        #: ``GUARD_RECHECK_S``) until it says False or a keepalive moves the deadline.
        self._guard = guard
        self.deadline: float | None = None
        self._timer: Cancellable | None = None

    def refreshed(self, sent_at: float, ttl_s: float) -> None:
        """A keepalive sent at ``sent_at`` was acknowledged with ``ttl_s`` seconds left."""
        deadline = sent_at + ttl_s
        self.deadline = deadline if self.deadline is None else max(self.deadline, deadline)
        if self._timer is None:
            self._arm()

    def _arm(self) -> None:
        assert self.deadline is not None
        delay = max(self.deadline - self._clock.now(), 0.0)
        self._timer = self._clock.call_later(delay, self._check)

    def _check(self) -> None:
        self._timer = None
        if self.deadline is None:
            return
        if self._clock.now() < self.deadline:
            self._arm()
        elif self._guard is not None and self._guard():
            self._timer = self._clock.call_later(GUARD_RECHECK_S, self._check)
        else:
            self.deadline = None
            self._on_expired()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.deadline = None


# -- what both backends do the same way ------------------------------------------------


class MembershipBase:
    """The local half of ``cf.abc.Membership``: views, subscriptions, lease-loss callbacks.

    A backend feeds ``self._view`` from its store and calls ``_lease_lost`` when its
    lease is gone.
    """

    def __init__(
        self,
        *,
        request_timeout_s: float,
        wall_clock: Callable[[], float] | None,
        clock: Clock | None = None,
    ) -> None:
        check_timeout(request_timeout_s)
        self._request_timeout_s = float(request_timeout_s)
        self._wall_clock = wall_clock
        #: Every wait and timer of the backend runs on this (default: the loop's).
        self._clock: Clock = clock if clock is not None else LoopClock()
        self._view = ClusterView(self._clock)
        self._lost_callbacks: list[Callable[[], None]] = []
        self._info: MemberInfo | None = None
        self._lease_is_lost = False
        self._closed = False
        #: Set by a failed keepalive, cleared by an acknowledged one.
        self._store_trouble = False
        self._lease_guard: Callable[[], bool] | None = None

    # -- local views: never touch the store

    @property
    def store_reachable(self) -> bool:
        """False from a failed keepalive until the next acknowledged one."""
        return not self._store_trouble

    def set_lease_guard(self, guard: Callable[[], bool] | None) -> None:
        """Ask ``guard`` before giving the lease up when its deadline passes.

        While ``guard()`` returns True, the member's own clock does not end the lease
        (it is asked again every ``GUARD_RECHECK_S``); a keepalive answered "gone" still
        does. The cluster runtime uses this to ride through a store outage that it has
        shown nobody else can exploit (docs/cluster.md).
        """
        self._lease_guard = guard

    def _guard_holds(self) -> bool:
        guard = self._lease_guard
        return guard is not None and guard()

    @property
    def info(self) -> MemberInfo | None:
        """This member as registered, while joined; None otherwise."""
        return self._info

    @property
    def joined(self) -> bool:
        """True from a successful ``join`` until ``leave``, lease loss or ``aclose``."""
        return self._info is not None

    @property
    def revision(self) -> int:
        """The store revision the local view has caught up to."""
        return self._view.revision

    def members(self) -> dict[str, MemberInfo]:
        """The local view of live members by id (kept current by the watch)."""
        return dict(self._view.members)

    def activations(self) -> dict[str, Activation]:
        """The local view of accepted activations by name (kept current by the watch)."""
        return dict(self._view.activations)

    def leader(self, role: str) -> str | None:
        """The member id leading ``role`` in the local view, or None."""
        return self._view.leaders.get(role)

    def leaders(self) -> dict[str, str]:
        """The local view of every role's leader (member id by role)."""
        return dict(self._view.leaders)

    def subscribe(self, callback: Callable[[MemberEvent], None]) -> Callable[[], None]:
        """Call ``callback`` for every member event, in revision order.

        Members already in the cluster when the view is first loaded are announced as
        ``"joined"`` too, so a subscriber registered before ``join`` sees everyone.
        Returns a function that unsubscribes.
        """
        return self._view.subscribe(callback)

    def subscribe_activations(
        self, callback: Callable[[str, Activation | None], None]
    ) -> Callable[[], None]:
        """Call ``callback(name, activation)`` when an activation appears and
        ``callback(name, None)`` when it goes; returns an unsubscribe function."""
        return self._view.subscribe_activations(callback)

    def subscribe_leaders(self, callback: Callable[[str, str | None], None]) -> Callable[[], None]:
        """Call ``callback(role, member_id)`` when a role gets a leader and
        ``callback(role, None)`` when its leader goes, so a follower knows when to
        campaign again. Not part of ``cf.abc.Membership``."""
        return self._view.subscribe_leaders(callback)

    def on_lease_lost(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once when this member's own lease is lost.

        Fencing: the member must stop its named actors, because another activation
        may now be accepted elsewhere. A graceful ``leave`` does not call it.
        """
        self._lost_callbacks.append(callback)

    # -- helpers for the backends

    def _stamp(self, info: MemberInfo) -> MemberInfo:
        check_name("member_id", info.member_id)
        if self._wall_clock is None:
            return info
        return dataclasses.replace(info, joined_at=self._wall_clock())

    def _check_open(self) -> None:
        if self._closed:
            raise MembershipError("this membership is closed")

    def _require_joined(self) -> MemberInfo:
        self._check_open()
        if self._info is None:
            if self._lease_is_lost:
                raise MembershipError("this member's lease was lost; join again as a new member")
            raise MembershipError("not joined: call join() first")
        return self._info

    def _fire_lease_lost(self) -> None:
        """Forget the lease and tell the callbacks, once per lost lease."""
        if self._info is None:
            return
        log.warning("member %s lost its lease", self._info.member_id)
        self._info = None
        self._lease_is_lost = True
        for callback in tuple(self._lost_callbacks):
            _call(callback)
