"""Cluster membership, the directory of named actors, and leader election.

Two backends of ``cf.abc.Membership`` with the same behaviour (one conformance suite
runs against both):

- ``MemoryMembership`` on a ``MemoryStore``: the embedded default, and a whole simulated
  cluster in one process;
- ``EtcdMembership``: a real cluster, on etcd v3.

``make_membership(url)`` picks one by URL. The etcd backend (and with it ``aetcd`` and
gRPC) is imported only when asked for, so an embedded system loads neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cfactor.errors import ConfigError
from cfactor.membership.memory import MemoryMembership, MemoryStore

if TYPE_CHECKING:
    from collections.abc import Callable

    from cfactor.abc import Clock, Membership
    from cfactor.membership.etcd import EtcdMembership
    from cfactor.security import EtcdTLS

MEMORY_SCHEMES = frozenset({"memory"})
ETCD_SCHEMES = frozenset({"http", "etcd", "https"})


def make_membership(
    url: str | None = None,
    *,
    cluster: str = "default",
    clock: Clock | None = None,
    request_timeout_s: float = 1.0,
    wall_clock: Callable[[], float] | None = None,
    store: MemoryStore | None = None,
    etcd_tls: EtcdTLS | None = None,
    etcd_user: str | None = None,
    etcd_password: str | None = None,
) -> Membership:
    """The membership backend for ``url``.

    Args:
        url: ``None`` or ``"memory://"`` for the in-process backend; an etcd client URL
            (``"http://127.0.0.1:2379"``, or ``"etcd://host:port"``) for etcd.
        cluster: The cluster's name (the etcd key prefix ``/cfactor/<cluster>/``).
        clock: The clock leases and keepalives run on (default: the loop's). With a
            shared ``store``, the store's clock governs and this one is not used.
        request_timeout_s: The bound on every call to the store.
        wall_clock: The source of ``MemberInfo.joined_at`` (pass ``time.time``).
        store: For the memory backend: the store to share with other members; a new
            one (a cluster of its own) if omitted.
        etcd_tls: For an ``https://`` etcd: its CA and this member's client certificate.
        etcd_user: For an etcd with authentication: the user (with ``etcd_password``).
        etcd_password: The user's password.

    Raises:
        ConfigError: An unknown scheme or a bad setting.
    """
    scheme = "memory" if url is None else url.partition("://")[0].lower()
    if scheme in MEMORY_SCHEMES:
        if etcd_tls is not None or etcd_user is not None:
            raise ConfigError("etcd TLS and auth settings are for an etcd URL")
        if store is None:
            store = MemoryStore(clock=clock)
        # A shared store's leases run on the store's clock, whatever this member's is.
        return MemoryMembership(store, wall_clock=wall_clock, request_timeout_s=request_timeout_s)
    if scheme in ETCD_SCHEMES:
        if store is not None:
            raise ConfigError("store= is for the memory backend only")
        from cfactor.membership.etcd import EtcdMembership  # noqa: PLC0415 - loads gRPC

        assert url is not None
        return EtcdMembership(
            url,
            cluster=cluster,
            clock=clock,
            request_timeout_s=request_timeout_s,
            wall_clock=wall_clock,
            tls=etcd_tls,
            user=etcd_user,
            password=etcd_password,
        )
    raise ConfigError(f"no membership backend for {url!r} (use memory:// or http://host:port)")


def __getattr__(name: str) -> Any:
    # EtcdMembership on first use only: importing it loads aetcd and gRPC.
    if name == "EtcdMembership":
        from cfactor.membership.etcd import EtcdMembership  # noqa: PLC0415

        return EtcdMembership
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["EtcdMembership", "MemoryMembership", "MemoryStore", "make_membership"]
