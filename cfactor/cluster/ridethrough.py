"""Riding through a store outage on a member (docs/cluster.md, "Riding through an outage").

``RideThrough`` wires the pure ``OutageGuard`` (``cfactor.cluster.outage``) to the
member: it answers peers' ``StoreQuery`` (``outage_answer``), asks every peer while
this member cannot reach the store (``poll_peers_forever``), tells the membership
backend whether a lease past its deadline may still be served (``may_ride_through``:
the fencing check), and decides what a lost lease means (``lease_lost``): re-claim our
names under a new lease while that is safe (``recover``, ``reclaim_all``), else fence
(``Lifecycle.fence``). It also tells placement on this member whether it may re-place
yet (``may_replace``: the grace after (re)joining).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from cfactor._core.cell import STOPPING
from cfactor.cluster.outage import ASK, OutageGuard
from cfactor.errors import CfactorError

if TYPE_CHECKING:
    from cfactor._core.cell import ActorCell
    from cfactor.abc import Activation
    from cfactor.cluster import messages as m
    from cfactor.cluster.runtime import ClusterMember

log = logging.getLogger("cfactor.cluster")


class AcceptedEpochs(set[int]):
    """Earlier epochs a re-claimed activation still accepts (``ClusterMember.epoch_aliases``).

    While its re-claim is in flight (``newer_than`` set), any newer epoch is accepted
    too: other members may see the new claim in their watch, and send to
    ``name@new``, before our own claim call returns with that epoch. A newer epoch
    routed to this address can only come from our own claim: an activation record
    names the address of the member that claimed it.
    """

    newer_than: int | None = None

    def __contains__(self, epoch: object) -> bool:
        if super().__contains__(epoch):
            return True
        floor = self.newer_than
        return floor is not None and isinstance(epoch, int) and epoch > floor


class RideThrough:
    """Store outages on one member: ride through them or fence (see the module)."""

    def __init__(self, member: ClusterMember) -> None:
        self.member = member
        config = member.config
        #: Riding through store outages (cfactor/cluster/outage.py, docs/cluster.md).
        self.outage = OutageGuard(
            member.system.clock, grace_s=config.ttl_s, margin_s=config.request_timeout_s + 0.5
        )
        #: Re-claiming our names under a new lease now.
        self.recovering = False
        #: Hosted names re-claimed after the store revoked our lease (for tests, status).
        self.reclaimed = 0

    def _store_state(self) -> tuple[bool, set[str]]:
        """Whether this member reaches the store now, and its peers' addresses."""
        membership = self.member.membership
        reachable = membership.joined and membership.store_reachable
        own = self.member.system.address
        peers = {m.address for m in membership.members().values() if m.address != own}
        return reachable, peers

    def outage_answer(self) -> m.StoreDown | m.StoreUp:
        """The ``$cluster`` agent's answer to a peer asking whether we reach the store."""
        reachable, peers = self._store_state()
        return self.outage.answer(reachable=reachable, peers=peers)

    def may_replace(self) -> bool:
        """Whether placement on this member may re-place names whose claims vanished:
        only ``ttl_s`` after this member (re)joined or regained the store, so owners
        that rode through an outage re-claim their names first."""
        reachable, peers = self._store_state()
        return self.outage.may_replace(reachable=reachable, peers=peers)

    def may_ride_through(self) -> bool:
        """The fencing check (the membership's lease guard): whether this member may
        still serve its names past its lease deadline, from its peers' answers."""
        reachable, peers = self._store_state()
        self.outage.sync(reachable=reachable, peers=peers)
        return self.outage.may_ride_through()

    async def poll_peers_forever(self) -> None:
        """While this member cannot reach the store, ask every peer's agent, twice a
        second, whether it can (their answers decide whether we may ride through)."""
        interval = min(0.5, self.member.config.ttl_s / 6)
        while True:
            await self.member.system.clock.sleep(interval)
            reachable, peers = self._store_state()
            self.outage.sync(reachable=reachable, peers=peers)
            if reachable:
                continue
            await asyncio.gather(*(self.ask_peer(address) for address in sorted(self.outage.peers)))

    async def ask_peer(self, address: str) -> None:
        """Ask the agent at ``address`` whether it reaches the store; note its answer."""
        sent_at = self.member.system.clock.now()
        try:
            reply = await self.member.agent_of(address).ask(
                ASK, timeout=self.member.config.request_timeout_s
            )
        except CfactorError as exc:
            log.debug("peer %s did not say whether it reaches the store: %r", address, exc)
            return
        if not self.outage.heard(address, sent_at, reply) and self.outage.unreadable % 100 == 1:
            # Counted; logged once per hundred: a peer of another version, or a bug.
            log.warning(
                "peer %s answered %r to %r (%d such)", address, reply, ASK, self.outage.unreadable
            )

    def lease_lost(self) -> None:
        """The membership gave our lease up: re-claim our names under a new lease if
        riding through is still safe, else fence."""
        if self.member.closed or self.recovering:
            return
        if self.may_ride_through():
            self.start_recovery()
        else:
            self.member.lifecycle.fence()

    def claim_vanished(self) -> bool:
        """A claim of ours vanished from the store (the directory's watch): if we ride
        through a store outage, the store revoked our lease; re-claim our names under a
        new one instead of stopping them. Whether we do."""
        if self.may_ride_through():
            self.start_recovery()
            return True
        return False

    def start_recovery(self) -> None:
        member = self.member
        if self.recovering or member.closed:
            return
        self.recovering = True
        log.warning(
            "member %s: the store dropped our lease during an outage; re-claiming %d names",
            member.member_id,
            len(member.hosted),
        )
        member.background(self._recover())

    async def _recover(self) -> None:
        """Re-join and re-claim every hosted name, watched: the moment riding through
        stops being safe (a peer regained the store ``ttl_s`` ago minus the margin),
        give up and fence whatever is not re-claimed yet."""
        member = self.member
        work = asyncio.get_running_loop().create_task(self._reclaim_all())
        try:
            while True:
                done, _ = await member.system.clock.wait([work], timeout=0.1)
                if done:
                    break
                if not self.outage.may_ride_through():
                    work.cancel()
                    await asyncio.wait([work])
                    break
        finally:
            if not work.done():
                work.cancel()  # we are being cancelled ourselves (aclose)
        failed = None if work.cancelled() else work.exception()
        ok = not work.cancelled() and failed is None and work.result()
        if failed is not None:
            log.warning("re-claiming after the outage failed: %r", failed)
        self.recovering = False
        if not ok:
            if not member.closed:
                member.lifecycle.fence()
        elif not member.membership.joined:
            self.lease_lost()  # the new lease went too, while we were busy
        else:
            member.directory.changed()

    async def _reclaim_all(self) -> bool:
        """A new incarnation (the old lease is gone), then a compare-and-set claim of
        every name we still serve; a name someone else holds is stopped at once.
        False if riding through stopped being safe before all were claimed."""
        member = self.member
        await member.lifecycle.drop_incarnation()  # revokes the old lease if it can
        while True:
            if not self.outage.may_ride_through():
                return False
            member.lifecycle.new_incarnation()
            try:
                await member.lifecycle.join()
            except CfactorError as exc:
                with contextlib.suppress(CfactorError):
                    await member.membership.aclose()
                log.info("re-joining after the outage failed (%r); again", exc)
                await member.system.clock.sleep(0.2)
                continue
            break
        for name, before in list(member.hosted.items()):
            if not self.outage.may_ride_through():
                return False
            cell = member.hosting.cell(name)
            if cell is None or cell.state >= STOPPING:
                continue  # stopping anyway: its stop gives the name back
            accepted = self._accept_epochs(cell, before)
            accepted.newer_than = before.epoch
            try:
                activation = await member.membership.claim(name)
            finally:
                accepted.newer_than = None
            if activation is None:
                log.error("%r was claimed elsewhere during the outage: stopping ours", name)
                member.hosted.pop(name, None)
                member.epochs.pop(name, None)
                member.directory.routes.pop(name, None)
                member.stop_local(name)
                continue
            self._adopt(cell, activation)
        log.warning("member %s re-claimed its names after the outage", member.member_id)
        return True

    def _accept_epochs(self, cell: ActorCell, before: Activation) -> AcceptedEpochs:
        """The epochs, besides the current one, that the running actor still accepts:
        its earlier ones, dropped when it stops."""
        member = self.member
        name = before.name
        accepted = member.epoch_aliases.get(name)
        if not isinstance(accepted, AcceptedEpochs):
            accepted = AcceptedEpochs()
            member.epoch_aliases[name] = accepted

            def stopped() -> None:
                if member.epoch_aliases.get(name) is accepted:
                    del member.epoch_aliases[name]

            member.hosting.on_stopped(cell.ref, stopped)
        accepted.add(before.epoch)
        return accepted

    def _adopt(self, cell: ActorCell, activation: Activation) -> None:
        """The running actor is now ``activation``."""
        member = self.member
        name = activation.name
        member.hosted[name] = activation
        member.epochs[name] = activation.epoch
        member.directory.routes[name] = cell
        self.reclaimed += 1
        member.hosting.on_stopped(
            cell.ref, lambda: member.activations.local_stopped(name, activation)
        )
