"""The etcd membership backend, on ``aetcd`` (asyncio gRPC).

Keys, under a per-cluster prefix (``/cfactor/<cluster>/``):

- ``members/<member_id>``: the member's ``MemberInfo`` as JSON, bound to its lease;
- ``actors/<name>``: ``{"member_id", "address"}`` of the accepted activation, bound to
  the hosting member's lease; the activation's epoch is the key's create revision;
- ``leaders/<role>``: the leading member's id, bound to its lease.

One prefix watch feeds the local view. It starts from the revision of a full load and,
after any disconnect, resumes from the last revision seen, so no change is missed; if
etcd compacted that revision away, the state is loaded again and the difference is
announced as events. Every call to etcd is bounded by ``request_timeout_s`` and turns
any failure into ``MembershipUnavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import os
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

# gRPC's fork handlers are for processes that fork and go on without exec; cfactor only
# forks to exec (shell steps, `cfactor cluster start`). With the handlers on, a fork
# while gRPC threads are busy logs "Other threads are currently calling into gRPC,
# skipping fork() handlers", and once in a full test run the child (`cfactor status`)
# died with SIGSEGV right after that line. grpc reads this when first imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import aetcd
from aetcd import rpc
from aetcd import watcher as aetcd_watcher
from grpc import ssl_channel_credentials as rpc_ssl_credentials

from cfactor.abc import Activation, MemberInfo
from cfactor.errors import ConfigError, MembershipError, MembershipUnavailable
from cfactor.membership._common import (
    DELETE,
    PUT,
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
from cfactor.security import EtcdTLS

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from cfactor.abc import Clock

T = TypeVar("T")

DEFAULT_ENDPOINT = "http://127.0.0.1:2379"
DEFAULT_PREFIX = "/cfactor"

#: How soon a failed keepalive is retried (the regular interval is a third of the TTL).
KEEPALIVE_RETRY_S = 0.25
#: How long ``aclose`` lets gRPC finish the calls it cancelled (measured: under 5 ms).
_GRPC_SETTLE_S = 0.05
#: Backoff between attempts to re-establish the watch.
WATCH_RETRY_MIN_S = 0.05
WATCH_RETRY_MAX_S = 1.0

_CHANNEL_OPTIONS: dict[str, Any] = {
    # gRPC's default reconnect backoff grows to 120 s; a member must see etcd again
    # within half a second of its return, or its lease may run out meanwhile.
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 500,
    # A connection that dies without a FIN (a partition) would hold the watch forever;
    # HTTP/2 pings notice it. etcd refuses pings more often than every 5 s.
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
}

# What a failing etcd call may raise besides aetcd's own errors: gRPC errors the client
# does not translate (a closed channel, a stream reset; ``aetcd.rpc`` re-exports them)
# and the socket layer's.
_STORE_ERRORS = (aetcd.ClientError, rpc.RpcError, rpc.BaseError, OSError, TimeoutError)


class _LeaseNotFound(MembershipError):
    """etcd says the lease is gone (expired or revoked)."""


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """Split ``http://host:port`` (or ``etcd://``, ``https://``) into host and port.

    Raises:
        ConfigError: Not one etcd endpoint URL.
    """
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except (ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"not an etcd endpoint URL: {endpoint!r}") from exc
    if parts.scheme not in {"http", "etcd", "https"} or not parts.hostname or "," in parts.netloc:
        raise ConfigError(f"not an etcd endpoint URL (http://host:port): {endpoint!r}")
    if parts.path not in {"", "/"} or parts.query or parts.username:
        raise ConfigError(f"an etcd endpoint has no path, query or user: {endpoint!r}")
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"  # gRPC's target syntax for IPv6 literals
    return host, port if port is not None else 2379


def parse_endpoints(url: str) -> tuple[bool, str]:
    """``"https://a:2379,https://b:2379"``: whether it is TLS, and the gRPC target.

    One endpoint is ``host:port``. Several must be IP addresses of one family (gRPC then
    tries them in turn, ``ipv4:a:p,b:p``); for names, give one name that resolves to
    all of them.

    Raises:
        ConfigError: A bad endpoint, mixed schemes, or several names.
    """
    endpoints = [e.strip() for e in url.split(",") if e.strip()]
    if not endpoints:
        raise ConfigError(f"no etcd endpoint in {url!r}")
    schemes = {urlsplit(e).scheme for e in endpoints}
    if len(schemes) > 1:
        raise ConfigError(f"etcd endpoints mix schemes: {url!r}")
    tls = schemes == {"https"}
    hosts = [parse_endpoint(e) for e in endpoints]
    if len(hosts) == 1:
        host, port = hosts[0]
        return tls, f"{host}:{port}"
    families = set()
    for host, _ in hosts:
        try:
            families.add(ipaddress.ip_address(host.strip("[]")).version)
        except ValueError:
            raise ConfigError(
                f"several etcd endpoints must be IP addresses (for names, give one name that "
                f"resolves to all of them): {url!r}"
            ) from None
    if len(families) > 1:
        raise ConfigError(f"several etcd endpoints must be of one IP family: {url!r}")
    scheme = "ipv4" if families == {4} else "ipv6"
    return tls, f"{scheme}:" + ",".join(f"{host}:{port}" for host, port in hosts)


class _Client(aetcd.Client):  # type: ignore[misc] # aetcd has no type information
    """aetcd's client on a channel it does not make itself: TLS, several endpoints.

    aetcd opens an insecure channel to one ``host:port`` in ``connect``; this is that
    method with the channel made here (the rest of it as in aetcd 1.0).
    """

    _is_connecting: bool

    def __init__(self, target: str, credentials: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._target = target
        self._credentials = credentials

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        if self._is_connecting:
            # Bounded by the caller (every call runs under the clock's request timeout).
            await self._connected.wait()
            return
        try:
            self._is_connecting = True
            options = self._options.items()
            if self._credentials is None:
                self.channel = rpc.insecure_channel(self._target, options=options)
            else:
                self.channel = rpc.secure_channel(self._target, self._credentials, options=options)
            if self._username is not None and self._password is not None:
                self.auth_stub = rpc.AuthStub(self.channel)
                request = rpc.AuthenticateRequest(name=self._username, password=self._password)
                response = await self.auth_stub.Authenticate(request, timeout=self._timeout)
                self.metadata = (("token", response.token),)
            self.kvstub = rpc.KVStub(self.channel)
            self.clusterstub = rpc.ClusterStub(self.channel)
            self.leasestub = rpc.LeaseStub(self.channel)
            self.maintenancestub = rpc.MaintenanceStub(self.channel)
            self._watcher = aetcd_watcher.Watcher(
                rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata
            )
            self._connected.set()
        finally:
            self._is_connecting = False


def _is_lease_not_found(exc: BaseException) -> bool:
    cause = exc.__cause__
    if isinstance(cause, rpc.AioRpcError) and cause.code() == rpc.StatusCode.NOT_FOUND:
        return True
    return "lease not found" in str(exc)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class EtcdMembership(MembershipBase):
    """``cf.abc.Membership`` on etcd v3.

    Args:
        endpoint: The etcd client URL, ``http://host:port``.
        cluster: The cluster's name: its keys live under ``/cfactor/<cluster>/``.
        clock: Keepalive intervals and the lease deadline run on this clock (default:
            the running loop's).
        request_timeout_s: The bound on every single call to etcd.
        wall_clock: Where ``MemberInfo.joined_at`` comes from (the top level passes
            ``time.time``); without it, ``joined_at`` is kept as given.
        prefix: The root of every cluster's keys.

    Raises:
        ConfigError: A bad endpoint, cluster name or timeout.
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        cluster: str,
        clock: Clock | None = None,
        request_timeout_s: float = 1.0,
        wall_clock: Callable[[], float] | None = None,
        prefix: str = DEFAULT_PREFIX,
        tls: EtcdTLS | None = None,
        user: str | None = None,
        password: str | None = None,
    ) -> None:
        super().__init__(request_timeout_s=request_timeout_s, wall_clock=wall_clock, clock=clock)
        secure, self._target = parse_endpoints(endpoint)
        if tls is not None and not secure:
            raise ConfigError(f"TLS settings for an etcd endpoint that is not https: {endpoint!r}")
        if (user is None) != (password is None):
            raise ConfigError("etcd auth: give the user and the password together")
        self._tls = (tls or EtcdTLS()) if secure else None
        self._user, self._password = user, password
        self._endpoint = endpoint
        check_name("cluster", cluster)
        if "/" in cluster:
            # "a" would otherwise watch "a/b"'s keys as well.
            raise ConfigError(f"a cluster name cannot contain '/': {cluster!r}")
        self.cluster = cluster
        self._prefix = f"{prefix.rstrip('/')}/{cluster}/".encode()
        self._client: aetcd.Client | None = None
        self._lease_id: int | None = None
        self._keepalive_task: asyncio.Task[None] | None = None
        self._deadline = LeaseDeadline(self._clock, self._lease_expired, self._guard_holds)
        self._watch_task: asyncio.Task[None] | None = None
        self._watch: Any = None
        self._watch_live = False
        self._background: set[asyncio.Task[None]] = set()
        self._joining = False

    def __repr__(self) -> str:
        who = self._info.member_id if self._info is not None else "-"
        state = "stale" if self.stale else "live"
        return (
            f"<EtcdMembership {self._endpoint} cluster={self.cluster!r} member={who} "
            f"revision={self._view.revision} {state}>"
        )

    @property
    def stale(self) -> bool:
        """True while the local view may lag etcd (the watch is not connected)."""
        return not self._watch_live

    # -- the protocol ---------------------------------------------------------------------

    async def join(self, info: MemberInfo, ttl_s: float = 5.0) -> None:
        """Register ``info`` under a lease of ``ttl_s`` seconds (rounded up to whole
        seconds, as etcd grants them), keep it alive every third of the TTL, and start
        watching the cluster.

        Raises:
            MembershipUnavailable: etcd cannot be reached.
            MembershipError: This membership was closed.
            ConfigError: Already joined, ``ttl_s`` out of range, or another live member
                has the same ``member_id``.
        """
        self._check_open()
        if self._info is not None:
            raise ConfigError(f"already joined as {self._info.member_id!r}")
        if self._joining:
            raise ConfigError("a join is already in progress")
        check_ttl(ttl_s)
        info = self._stamp(info)
        self._joining = True
        try:
            await self._join(info, ttl_s)
        finally:
            self._joining = False

    async def _join(self, info: MemberInfo, ttl_s: float) -> None:
        client = self._connect()
        sent_at = self._clock.now()
        lease = await self._rpc("grant a lease", lambda: client.lease(max(1, math.ceil(ttl_s))))
        lease_id, ttl = int(lease.id), float(lease.ttl)
        key = self._key(member_key(info.member_id))
        tx = client.transactions
        try:
            if self._watch_task is None:
                # Load, then watch from the loaded revision: nothing can fall in between.
                await self._load()
                self._watch_task = asyncio.get_running_loop().create_task(self._watch_loop())
            ok, responses = await self._rpc(
                "register the member",
                lambda: client.transaction(
                    compare=[tx.create(key) == 0],
                    success=[tx.put(key, encode_member(info), lease=lease_id), tx.get(key)],
                    failure=[],
                ),
            )
        except BaseException:
            # Nobody keeps this lease alive; if etcd is back soon, free it sooner.
            self._spawn(self._revoke_quietly(lease_id))
            raise
        if not ok:
            self._spawn(self._revoke_quietly(lease_id))
            raise ConfigError(f"member id {info.member_id!r} is already in the cluster")
        revision = int(responses[1][0][1].create_revision)
        self._info, self._lease_id = info, lease_id
        self._lease_is_lost = False
        self._store_trouble = False
        self._deadline.refreshed(sent_at, ttl)
        self._keepalive_task = asyncio.get_running_loop().create_task(
            self._keepalive_loop(lease_id, ttl)
        )
        await self._view.wait_revision(revision, self._request_timeout_s)

    async def leave(self) -> None:
        """Revoke the lease at once: this member and its activations disappear.

        Does nothing if not joined. The keepalive stops even when etcd cannot be
        reached, so the lease then ends by its TTL.

        Raises:
            MembershipUnavailable: etcd cannot be reached (the lease will expire).
        """
        lease_id = self._lease_id
        if self._info is None or lease_id is None:
            return
        self._stop_lease()
        self._info = None
        client = self._connect()
        with contextlib.suppress(_LeaseNotFound):  # gone already: so much the better
            await self._rpc("revoke the lease", lambda: client.revoke_lease(lease_id))

    async def claim(self, name: str) -> Activation | None:
        """Accept an activation of ``name`` on this member, if nobody holds one.

        A transaction ``create_revision(key) == 0 -> put(key, lease=own lease)``: of any
        number of concurrent claims, exactly one succeeds.

        Returns:
            The activation (its epoch is the key's create revision), or None if
            ``name`` is held, by this member or another.

        Raises:
            MembershipUnavailable: etcd cannot be reached.
            MembershipError: Not joined, closed, or this member's lease was lost.
            ConfigError: ``name`` is empty.
        """
        info = self._require_joined()
        check_name("name", name)
        key = self._key(actor_key(name))
        data = encode_activation(info.member_id, info.address)
        revision = await self._create_bound("claim " + name, key, data)
        if revision is None:
            return None
        await self._view.wait_revision(revision, self._request_timeout_s)
        return Activation(name, info.member_id, info.address, revision)

    async def release(self, activation: Activation) -> bool:
        """Remove ``activation`` if it is still the accepted one; False otherwise.

        A transaction ``create_revision(key) == epoch -> delete(key)``, so a stale
        activation never removes a newer one.

        Raises:
            MembershipUnavailable: etcd cannot be reached.
            MembershipError: This membership was closed.
        """
        self._check_open()
        client = self._connect()
        key = self._key(actor_key(activation.name))
        tx = client.transactions
        ok, responses = await self._rpc(
            "release " + activation.name,
            lambda: client.transaction(
                compare=[tx.create(key) == activation.epoch], success=[tx.delete(key)], failure=[]
            ),
        )
        if not ok:
            return False
        revision = int(responses[0].response_delete_range.header.revision)
        await self._view.wait_revision(revision, self._request_timeout_s)
        return True

    async def lookup(self, name: str) -> Activation | None:
        """The accepted activation of ``name``, read from etcd (linearizable).

        Raises:
            MembershipUnavailable: etcd cannot be reached.
            MembershipError: This membership was closed.
        """
        self._check_open()
        client = self._connect()
        key = self._key(actor_key(name))
        found = await self._rpc("look up " + name, lambda: client.get(key))
        if found is None:
            return None
        return decode_activation(name, found.value, int(found.create_revision))

    async def campaign(self, role: str) -> bool:
        """Try to become the leader of ``role``; True if this member now leads it.

        The same compare-and-set create as ``claim``, on ``leaders/<role>``, bound to
        this member's lease: leadership ends with the lease.

        Raises:
            MembershipUnavailable: etcd cannot be reached.
            MembershipError: Not joined, closed, or this member's lease was lost.
            ConfigError: ``role`` is empty.
        """
        info = self._require_joined()
        check_name("role", role)
        key = self._key(leader_key(role))
        revision = await self._create_bound("campaign for " + role, key, info.member_id.encode())
        if revision is not None:
            await self._view.wait_revision(revision, self._request_timeout_s)
            return True
        client = self._connect()
        held = await self._rpc("read the leader of " + role, lambda: client.get(key))
        return held is not None and int(held.lease) == self._lease_id

    async def put_record(self, kind: str, name: str, data: bytes) -> None:
        """Store ``data`` under ``records/<kind>/<name>``, bound to no lease: it outlives
        members (the placement actor keeps actor specs here for its successor).

        Raises:
            MembershipUnavailable: etcd cannot be reached.
            MembershipError: This membership was closed.
            ConfigError: ``kind`` is empty or has a ``/``, or ``name`` is empty.
        """
        self._check_open()
        key = self._key(record_key(kind, name))
        client = self._connect()
        await self._rpc(f"store record {kind}/{name}", lambda: client.put(key, bytes(data)))

    async def delete_record(self, kind: str, name: str) -> None:
        """Remove a record (no error if it is not there).

        Raises:
            MembershipUnavailable: etcd cannot be reached.
            MembershipError: This membership was closed.
            ConfigError: ``kind`` is empty or has a ``/``, or ``name`` is empty.
        """
        self._check_open()
        key = self._key(record_key(kind, name))
        client = self._connect()
        await self._rpc(f"delete record {kind}/{name}", lambda: client.delete(key))

    async def records(self, kind: str) -> dict[str, bytes]:
        """Every record of ``kind`` by name, read from etcd.

        Raises:
            MembershipUnavailable: etcd cannot be reached.
            MembershipError: This membership was closed.
            ConfigError: ``kind`` is empty or has a ``/``.
        """
        self._check_open()
        prefix = self._key(record_prefix(kind))
        client = self._connect()
        found = await self._rpc(f"read {kind} records", lambda: client.get_prefix(prefix))
        cut = len(prefix)
        return {kv.key[cut:].decode(errors="replace"): bytes(kv.value) for kv in found}

    async def aclose(self) -> None:
        """Leave (if joined), stop watching, close the connection. Idempotent; never
        raises for an unreachable etcd (the lease then ends by its TTL)."""
        if self._closed:
            return
        try:
            await self.leave()
        except MembershipError as exc:
            log.info("leaving on close failed, the lease will expire: %r", exc)
        finally:
            self._closed = True
            self._stop_lease()
            tasks = [t for t in (self._watch_task, *self._background) if t is not None]
            self._watch_task = None
            for task in tasks:
                task.cancel()
            if tasks:
                await self._clock.wait(tasks, timeout=self._request_timeout_s)
            await self._close_client()

    # -- calls to etcd --------------------------------------------------------------------

    def _connect(self) -> aetcd.Client:
        # Made on first use, inside the running loop: a gRPC channel belongs to one loop.
        if self._client is None:
            credentials = None
            if self._tls is not None:
                ca, key, cert = self._tls.read()
                credentials = rpc_ssl_credentials(
                    root_certificates=ca, private_key=key, certificate_chain=cert
                )
            self._client = _Client(
                self._target,
                credentials,
                timeout=self._request_timeout_s,
                options=_CHANNEL_OPTIONS,
                username=self._user,
                password=self._password,
            )
        return self._client

    def _key(self, relative: str) -> bytes:
        return self._prefix + relative.encode()

    async def _rpc(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """One bounded call to etcd, its failures translated at the boundary.

        Raises:
            MembershipUnavailable: It failed or took longer than ``request_timeout_s``.
            _LeaseNotFound: etcd says the lease it names is gone.
            aetcd.RevisionCompactedError: A watch asked for compacted history.
        """
        try:
            async with self._clock.timeout(self._request_timeout_s):
                return await call()
        except aetcd.RevisionCompactedError:
            raise
        except _STORE_ERRORS as exc:
            if isinstance(exc, aetcd.ClientError) and _is_lease_not_found(exc):
                raise _LeaseNotFound(f"etcd: {exc}") from exc
            raise MembershipUnavailable(
                f"etcd at {self._endpoint} did not {what}: {type(exc).__name__}: {exc}"
            ) from exc

    async def _create_bound(self, what: str, key: bytes, value: bytes) -> int | None:
        """Create ``key`` bound to this member's lease if absent; its revision, or None."""
        lease_id = self._lease_id
        assert lease_id is not None
        client = self._connect()
        tx = client.transactions
        try:
            ok, responses = await self._rpc(
                what,
                lambda: client.transaction(
                    compare=[tx.create(key) == 0],
                    success=[tx.put(key, value, lease=lease_id), tx.get(key)],
                    failure=[],
                ),
            )
        except _LeaseNotFound:
            if self._lease_id == lease_id:
                self._lease_expired()
            raise MembershipError("this member's lease was lost") from None
        if not ok:
            return None
        return int(responses[1][0][1].create_revision)

    async def observe(self) -> None:
        """Read the cluster's state into the local views without joining it.

        For observers such as ``cfactor status``: no lease, no registration, no watch.

        Raises:
            MembershipUnavailable: etcd cannot be reached.
        """
        await self._load()

    async def _load(self) -> None:
        """Read the cluster's whole state and make it the view (announcing the changes)."""
        client = self._connect()
        found = await self._rpc("load the cluster", lambda: client.get_prefix(self._prefix))
        cut = len(self._prefix)
        snapshot = [
            StoreEvent(
                PUT,
                kv.key[cut:].decode(errors="replace"),
                kv.value,
                int(kv.create_revision),
                int(kv.mod_revision),
            )
            for kv in found
        ]
        self._view.reset(snapshot, int(found.header.revision))

    async def _revoke_quietly(self, lease_id: int) -> None:
        client = self._connect()
        with contextlib.suppress(MembershipError):
            await self._rpc("revoke a lease", lambda: client.revoke_lease(lease_id))

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            async with self._clock.timeout(self._request_timeout_s):
                await client.close()
        except _STORE_ERRORS as exc:
            log.debug("closing the etcd client: %r", exc)
            channel = client.channel
            if channel is not None:
                with contextlib.suppress(*_STORE_ERRORS):
                    await channel.close()
        # Closing cancels the open streams (the watch, keepalives), but gRPC hands the
        # cancelled calls' completions back to this loop a few milliseconds later, from
        # its poller thread. Were the loop closed before that, gRPC would deliver them to
        # the next loop that uses it, as "Event loop is closed" errors.
        await self._clock.sleep(_GRPC_SETTLE_S)

    # -- the lease ------------------------------------------------------------------------

    async def _keepalive_loop(self, lease_id: int, ttl: float) -> None:
        interval = ttl / 3
        client = self._connect()
        while self._lease_id == lease_id:
            sent_at = self._clock.now()
            try:
                reply = await self._rpc(
                    "keep the lease alive", lambda: client.refresh_lease(lease_id)
                )
            except _LeaseNotFound:
                if self._lease_id == lease_id:
                    self._lease_expired()
                return
            except MembershipUnavailable as exc:
                if not self._store_trouble:
                    self._store_trouble = True
                    log.warning("keepalive of lease %x failed: %s", lease_id, exc)
                    # The watch shares the connection; do not trust it to have noticed.
                    self._kick_watch()
                # The lease deadline timer decides when this has gone on too long.
                await self._sleep(min(interval, KEEPALIVE_RETRY_S))
                continue
            if reply is None:
                await self._sleep(min(interval, KEEPALIVE_RETRY_S))
                continue
            if int(reply.TTL) <= 0:
                if self._lease_id == lease_id:
                    self._lease_expired()
                return
            self._store_trouble = False
            self._deadline.refreshed(sent_at, float(reply.TTL))
            await self._sleep(interval)

    def _stop_keepalive(self) -> None:
        """Stop refreshing the lease but keep its deadline: a hung member, for tests."""
        task, self._keepalive_task = self._keepalive_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def _stop_lease(self) -> None:
        self._stop_keepalive()
        self._deadline.cancel()
        self._lease_id = None

    def _lease_expired(self) -> None:
        lease_id = self._lease_id
        self._stop_lease()
        self._fire_lease_lost()
        if lease_id is not None and not self._closed:
            # etcd may still hold it (we only stopped hearing back, or it came back and
            # extended every lease): free the names now rather than a TTL later.
            self._spawn(self._revoke_quietly(lease_id))

    async def _sleep(self, delay: float) -> None:
        # On the membership's clock, so a simulation can drive the keepalive.
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        timer = self._clock.call_later(delay, _resolve, future)
        try:
            await future
        finally:
            timer.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- the watch ------------------------------------------------------------------------

    async def _watch_loop(self) -> None:
        backoff = WATCH_RETRY_MIN_S
        reload = False
        while not self._closed:
            try:
                if reload:
                    await self._load()
                    reload = False
                await self._watch_once()
                backoff = WATCH_RETRY_MIN_S
            except aetcd.RevisionCompactedError as exc:
                log.info(
                    "watch resume revision %d was compacted (%s): reloading",
                    self._view.revision,
                    exc,
                )
                reload = True
                continue
            except MembershipUnavailable as exc:
                log.debug("watch interrupted: %s", exc)
                backoff = min(backoff * 2, WATCH_RETRY_MAX_S)
            except Exception:
                # A bug must not end the watch for good: the view would silently freeze.
                log.exception("the membership watch failed; restarting it")
                backoff = WATCH_RETRY_MAX_S
            await self._clock.sleep(backoff)

    async def _watch_once(self) -> None:
        client = self._connect()
        # Resume *at* the last revision seen, not after it: if the stream broke halfway
        # through a revision's events, the rest come again. Applying is idempotent.
        start = max(self._view.revision, 1)
        watch = await self._rpc(
            "watch the cluster", lambda: client.watch_prefix(self._prefix, start_revision=start)
        )
        self._watch, self._watch_live = watch, True
        cut = len(self._prefix)
        try:
            async for event in watch:
                kv = event.kv
                kind = PUT if event.kind == "PUT" else DELETE
                key = kv.key[cut:].decode(errors="replace")
                self._view.apply(
                    StoreEvent(kind, key, kv.value, int(kv.create_revision), int(kv.mod_revision))
                )
        except aetcd.RevisionCompactedError:
            raise
        except _STORE_ERRORS as exc:
            raise MembershipUnavailable(
                f"the watch on etcd at {self._endpoint} broke: {exc}"
            ) from exc
        finally:
            self._watch, self._watch_live = None, False
            if not self._closed:  # on close, shutting the client down ends every watch
                self._spawn(self._cancel_watch(watch))

    def _kick_watch(self) -> None:
        """End the current watch so the loop re-creates it from the last revision."""
        watch = self._watch
        if watch is not None:
            self._watch_live = False
            self._spawn(self._cancel_watch(watch))

    async def _cancel_watch(self, watch: Any) -> None:
        # aetcd queues a cancel request on the stream; a dead stream may never take it.
        with contextlib.suppress(*_STORE_ERRORS):
            async with self._clock.timeout(self._request_timeout_s):
                await watch.cancel()
