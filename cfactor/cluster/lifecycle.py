"""A member's life in the cluster: join, incarnations, leadership, fencing.

``Lifecycle`` registers the member under a lease and subscribes to the store's views
(``join``), makes a fresh member id and membership client per incarnation
(``new_incarnation``), campaigns for the placement role and runs ``$placement`` when it
wins (``lead_when_possible``), and fences: when our lease is gone, another activation
of our names may be accepted anywhere, so ours stop (``fence``, ``fence_name``), then
the member joins again as a new incarnation (``rejoin_forever``). Keepalives are the
membership backend's; whether a lost lease is fenced or ridden through is decided by
``cfactor.cluster.ridethrough``. Leaving is ``cfactor.cluster.leave``.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from cfactor._core.clock import wall_time
from cfactor.abc import MemberInfo
from cfactor.cluster.messages import PLACEMENT, PLACER
from cfactor.cluster.placement import PlacementActor
from cfactor.errors import CfactorError, MembershipUnavailable, NameTaken
from cfactor.membership import make_membership

if TYPE_CHECKING:
    from cfactor.cluster.runtime import ClusterMember

log = logging.getLogger("cfactor.cluster")


class Lifecycle:
    """Join, incarnations, leadership and fencing of one member (see the module)."""

    def __init__(self, member: ClusterMember) -> None:
        self.member = member
        #: Undo the current incarnation's subscriptions to the store's views.
        self._unsubscribe: list[Any] = []

    async def join(self) -> None:
        """Register this member (under a fresh lease) and follow the cluster's views.

        Raises:
            MembershipUnavailable: The store cannot be reached.
        """
        member = self.member
        system = member.system
        directory = member.directory
        membership = member.membership
        info = MemberInfo(
            member_id=member.member_id,
            address=system.address,
            capacity=member.config.capacity,
            labels=tuple(sorted(member.config.labels.items())),
            joined_at=wall_time(),
        )
        await membership.join(info, ttl_s=member.config.ttl_s)
        self._unsubscribe.append(membership.subscribe_activations(directory.activation_changed))
        self._unsubscribe.append(membership.subscribe(lambda _event: directory.changed()))
        membership.on_lease_lost(member.ride.lease_lost)
        membership.set_lease_guard(member.ride.may_ride_through)
        member.ride.outage.joined()
        directory.routes.clear()
        for name in member.hosted:  # kept through a re-claim after a store outage
            cell = member.hosting.cell(name)
            if cell is not None:
                directory.routes[name] = cell
        for name, activation in membership.activations().items():
            directory.activation_changed(name, activation)
        log.info(
            "member %s joined cluster %r at %s",
            member.member_id,
            member.config.name,
            system.address,
        )

    def new_incarnation(self) -> None:
        """A fresh member id and membership client (at start, and after fencing)."""
        member = self.member
        config = member.config
        member.member_id = f"{config.name}-{member.system.random.getrandbits(40):010x}"
        member.membership = make_membership(
            config.etcd,
            cluster=config.name,
            clock=member.system.clock,
            request_timeout_s=config.request_timeout_s,
            wall_clock=wall_time,
            store=config.store,
            etcd_tls=config.etcd_tls,
            etcd_user=config.etcd_user,
            etcd_password=config.etcd_password,
        )

    def unsubscribe(self) -> None:
        """Stop following the current incarnation's views."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()

    async def drop_incarnation(self) -> None:
        """Stop following the current incarnation and close its membership client
        (which revokes its lease if the store still has it)."""
        self.unsubscribe()
        with contextlib.suppress(CfactorError):
            await self.member.membership.aclose()

    async def rejoin_forever(self) -> None:
        """After fencing: join again as a new incarnation once the store answers."""
        member = self.member
        await self.drop_incarnation()
        delay = 0.2
        while not member.closed:
            self.new_incarnation()
            try:
                await self.join()
            except CfactorError as exc:
                with contextlib.suppress(CfactorError):
                    await member.membership.aclose()
                log.info("rejoining the cluster failed (%r); again in %.1f s", exc, delay)
                await member.system.clock.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            log.warning("member rejoined the cluster as %s", member.member_id)
            member.directory.changed()
            return

    async def lead_when_possible(self) -> None:
        """Campaign whenever nobody leads placement; run the placement actor if we win."""
        member = self.member
        while not member.closed:
            try:
                leader = member.membership.leader(PLACEMENT)
                if leader is None and await member.membership.campaign(PLACEMENT):
                    leader = member.member_id
                if leader == member.member_id and member.hosting.cell(PLACER) is None:
                    # Elected now, or its placement actor was given up on: run one.
                    await member.system.spawn_service(PlacementActor, member, name=PLACER)
            except MembershipUnavailable:
                pass  # the store is away: existing actors keep talking; retry later
            except NameTaken:
                pass  # still running from an earlier term
            except CfactorError as exc:
                log.warning("placement leadership: %r", exc)
            if member.membership.leader(PLACEMENT) != member.member_id:
                member.stop_local(PLACER)
            await member.directory.changed_or(0.5)

    def fence(self) -> None:
        """Our lease is gone: another activation of our names may be accepted anywhere
        now, so ours must stop before they could both answer."""
        member = self.member
        log.error(
            "member %s lost its lease: stopping its %d cluster actors",
            member.member_id,
            len(member.hosted),
        )
        for name in list(member.hosted):
            member.hosted.pop(name)
            member.epochs.pop(name, None)
            member.directory.routes.pop(name, None)
            member.stop_local(name)
        member.stop_local(PLACER)
        if not member.closed:
            member.background(self.rejoin_forever())

    def fence_name(self, name: str) -> None:
        """Our claim of ``name`` vanished from the store (and we do not ride through):
        stop the actor here."""
        self.member.hosted.pop(name)
        self.member.stop_local(name)
