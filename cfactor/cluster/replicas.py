"""The cluster side of replicated actors (docs/replicas.md, "On a cluster").

A replicated actor's group, backlog and autoscaler stay on the member that spawned it;
``ClusterReplicas`` places its replicas over the members: it asks ``$placement`` to
choose one by load (``place_replica``) and that member's agent to start it
(``host_replica``), reports this member's replica load to placement
(``report_forever``), and stops replicas whose owner left (and marks lost those whose
host left).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cfactor._core.cell import ActorCell
from cfactor._core.remote_replica import RemoteReplica
from cfactor.cluster import messages as m
from cfactor.cluster.messages import expect
from cfactor.cluster.spec import ActorSpec
from cfactor.errors import (
    ActorNotFound,
    ActorStopped,
    AskTimeout,
    CfactorError,
    ConfigError,
    MembershipUnavailable,
    MemberUnreachable,
)

if TYPE_CHECKING:
    from cfactor._core.ref import ActorRef
    from cfactor._core.replicas import ReplicaSet
    from cfactor.cluster.runtime import ClusterMember

log = logging.getLogger("cfactor.cluster")


class ClusterReplicas:
    """Replicas of this member's groups on other members, and theirs here (see the module)."""

    def __init__(self, member: ClusterMember) -> None:
        self.member = member
        #: Replicas hosted here for groups on other members: name -> (group, owner address).
        self.hosted: dict[str, tuple[str, str]] = {}
        #: Groups whose replicas stay here because their class or arguments cannot travel.
        self._local_only: set[str] = set()

    async def place_replica(self, group: ReplicaSet) -> ActorRef | None:
        """Start a replica of ``group`` on the member placement picks (least loaded);
        None means here. The group, its backlog and its autoscaler stay here.

        Raises:
            ActorStartFailed: The replica's constructor or ``on_start`` raised there.
            MembershipUnavailable: A placement constraint no member meets now.
        """
        member = self.member
        if group.name in self._local_only:
            return None
        try:
            spec = ActorSpec.of(
                group.cls,
                group.args,
                group.kwargs,
                name=group.name,
                restart=group.replica_restart.value,
                placement=group.placement,
            )
            data = spec.encode()
        except CfactorError as exc:
            self._local_only.add(group.name)
            log.warning("replicas of %r stay on this member: %s", group.name, exc)
            return None
        try:
            placed = expect(
                await member.spawner.ask_placer(
                    m.ChooseReplica(spec.placement), member.config.request_timeout_s
                ),
                m.Placed,
            )
        except CfactorError as exc:
            if spec.placement is not None:
                raise MembershipUnavailable(
                    f"cannot place a replica of {group.name!r}: {exc}"
                ) from exc
            log.info("placing a replica of %r here (placement: %r)", group.name, exc)
            return None
        member_id, address = placed.member_id, placed.address
        if member_id == member.member_id or address == member.system.address:
            return None
        try:
            reply = await member.agent_of(address).ask(
                m.HostReplica(data, group.in_flight, member.system.address),
                timeout=member.config.placement_timeout_s,
            )
        except (MemberUnreachable, AskTimeout, ActorNotFound, ActorStopped) as exc:
            if spec.placement is not None:
                raise MembershipUnavailable(
                    f"member {address} did not start a replica of {group.name!r}: {exc}"
                ) from exc
            log.warning(
                "member %s did not start a replica of %r (%r): here", address, group.name, exc
            )
            return None
        hosted = expect(reply, m.ReplicaHosted)
        return member.system.ref(hosted.name, at=hosted.address)

    async def host_replica(self, data: bytes, in_flight: int, owner: str) -> tuple[str, str]:
        """Start a replica here for the group on member ``owner``: (address, name).

        Raises:
            ConfigError: The class cannot be loaded here, or ``in_flight`` is below 1.
            ActorStartFailed: Its constructor or ``on_start`` raised.
            MalformedFrame: ``data`` is not a spec.
        """
        spec = ActorSpec.decode(data)
        if in_flight < 1:
            raise ConfigError(f"in_flight must be at least 1, got {in_flight}")
        cls = spec.load_class()
        ref = await self.member.hosting.spawn_at_root(  # not by the agent: see spawn.py
            cls, spec.args, spec.kwargs, name=None, restart=spec.restart, in_flight=in_flight
        )
        name = ref.name
        self.hosted[name] = (spec.name, owner)
        self.member.hosting.on_stopped(ref, lambda: self.hosted.pop(name, None) and None)
        return (self.member.system.address, name)

    async def report_forever(self) -> None:
        """Every ``load_report_interval_s``: report this member's replica load to the
        placement actor (over the transport, not the store), and forget replicas
        whose other end (owner or host) has left the cluster."""
        member = self.member
        interval = member.config.load_report_interval_s
        while True:
            await member.system.clock.sleep(interval)
            self._forget_departed()
            try:
                placer = await member.directory.placer()
                await placer.tell(
                    m.LoadReport(member.member_id, self.replicas_here(), self.group_loads())
                )
            except CfactorError as exc:
                log.debug("load report not sent: %r", exc)

    def replicas_here(self) -> int:
        """Replicas running on this member, for this member's groups or others'."""
        local = sum(
            1
            for group in self.member.hosting.groups.values()
            for replica in group.replicas
            if isinstance(replica.cell, ActorCell)
        )
        return local + len(self.hosted)

    def group_loads(self) -> dict[str, list[int]]:
        return {name: list(group.load()) for name, group in self.member.hosting.groups.items()}

    def _forget_departed(self) -> None:
        addresses = {m.address for m in self.member.membership.members().values()}
        if not addresses:
            return  # no view of the cluster right now: judge nobody
        for name, (group_name, owner) in list(self.hosted.items()):
            if owner not in addresses:
                log.warning(
                    "the owner of %r at %s left: stopping its replica %s", group_name, owner, name
                )
                self.hosted.pop(name, None)
                self.member.stop_local(name)
        for group in self.member.hosting.groups.values():
            for replica in group.replicas:
                cell = replica.cell
                if isinstance(cell, RemoteReplica) and cell.address not in addresses:
                    cell.lost("its member left the cluster")
