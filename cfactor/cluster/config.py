"""``cf.Cluster``: how an actor system joins a cluster."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cfactor.errors import ConfigError, check_positive

if TYPE_CHECKING:
    from cfactor._core.system import ActorSystem
    from cfactor.cluster.runtime import ClusterMember
    from cfactor.membership import MemoryStore
    from cfactor.security import EtcdTLS


@dataclass(frozen=True, slots=True)
class Pin:
    """Place the actor on one member, named by member id or address."""

    member: str


@dataclass(frozen=True, slots=True)
class Labels:
    """Place the actor on a member whose labels include all of these."""

    required: dict[str, str] = field(default_factory=dict)

    def __init__(self, **required: str) -> None:
        object.__setattr__(self, "required", dict(required))


def placement_to_wire(placement: Any) -> tuple[Any, ...] | None:
    """Raises: ConfigError: not a placement the cluster understands."""
    if placement is None:
        return None
    if isinstance(placement, Pin):
        return ("pin", placement.member)
    if isinstance(placement, Labels):
        return ("labels", tuple(sorted(placement.required.items())))
    raise ConfigError(
        f"placement must be None, 'local', cf.Pin(...) or cf.Labels(...), got {placement!r}"
    )


@dataclass(frozen=True)
class Cluster:
    """Join a cluster: ``cf.ActorSystem(listen=..., cluster=cf.Cluster(etcd=..., name=...))``.

    Attributes:
        etcd: The etcd client URL (``"http://127.0.0.1:2379"``; ``https://`` for TLS;
            several IP endpoints comma-separated); ``None`` for an in-process cluster
            on ``store`` (tests, simulations).
        etcd_tls: The CA and client certificate for an ``https://`` etcd
            (``cf.EtcdTLS``); the system's roots and no client certificate if omitted.
        etcd_user: The etcd user, for an etcd with authentication on (with
            ``etcd_password``).
        name: The cluster's name; clusters of other names share an etcd unseen.
        ttl_s: The member's lease: a member silent this long is dead to the others.
        labels: This member's labels, for ``cf.Labels`` placement.
        capacity: How many named actors this member takes; 0 for no limit.
        store: The in-process store the members of a memory cluster share.
        request_timeout_s: The bound on every call to the store.
        placement_timeout_s: The bound on placing one actor.
        load_report_interval_s: How often the member reports its replica load to the
            placement actor (over the transport), which spreads new replicas by it.
        leave_timeout_s: The bound on leaving gracefully (close, SIGTERM): draining the
            named actors' mailboxes and handing the tells held meanwhile to their new
            activations.

    Raises:
        ConfigError: A setting out of range.
    """

    etcd: str | None = None
    name: str = "default"
    ttl_s: float = 5.0
    labels: dict[str, str] = field(default_factory=dict)
    capacity: int = 0
    store: MemoryStore | None = None
    request_timeout_s: float = 1.0
    placement_timeout_s: float = 15.0
    load_report_interval_s: float = 0.5
    leave_timeout_s: float = 10.0
    etcd_tls: EtcdTLS | None = None
    etcd_user: str | None = None
    etcd_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ConfigError(f"cluster names are non-empty and have no '/': {self.name!r}")
        for what, value in (
            ("ttl_s", self.ttl_s),
            ("request_timeout_s", self.request_timeout_s),
            ("placement_timeout_s", self.placement_timeout_s),
            ("load_report_interval_s", self.load_report_interval_s),
            ("leave_timeout_s", self.leave_timeout_s),
        ):
            check_positive(what, value)
        if self.capacity < 0:
            raise ConfigError(f"capacity must be >= 0, got {self.capacity}")

    async def start(self, system: ActorSystem) -> ClusterMember:
        """Attach to ``system`` and join (``ActorSystem.start`` calls this).

        Raises:
            MembershipUnavailable: The store cannot be reached.
        """
        from cfactor.cluster.runtime import ClusterMember  # noqa: PLC0415 - loads etcd lazily

        member = ClusterMember(self, system)
        await member.start()
        return member
