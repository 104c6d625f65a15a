"""Leaving the cluster gracefully (docs/cluster.md, "Leaving gracefully").

``GracefulLeave`` hands a member's named actors over on ``aclose`` without losing an
accepted tell and without two activations at once: it tells placement we leave, holds
new tells at the boundary (``hold``, through the directory's ``admit``), lets each
actor handle what it accepted, stops it, releases its name, and forwards what it held
to the new activation. The lease is revoked after this, by ``ClusterMember.aclose``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import TYPE_CHECKING, Any

from cfactor._core.cell import STOPPING
from cfactor.cluster import messages as m
from cfactor.errors import ActorNotFound, CfactorError

if TYPE_CHECKING:
    from cfactor.cluster.runtime import ClusterMember

log = logging.getLogger("cfactor.cluster")


class GracefulLeave:
    """The hand-over of one member's named actors when it leaves (see the module)."""

    def __init__(self, member: ClusterMember) -> None:
        self.member = member
        #: Leaving gracefully: tells to our activations held at the boundary, per name,
        #: with the epoch they were addressed to, until the new activation takes them.
        self.leaving = False
        self._held: dict[str, collections.deque[Any]] = {}
        self._held_epochs: dict[str, int] = {}
        self._held_wakeup = asyncio.Event()
        #: Tells held while leaving / forwarded to the new activation / dropped.
        self.held = self.forwarded = self.held_dropped = 0

    async def run(self) -> None:
        """Hand our named actors over without losing an accepted tell, and without two
        activations at once: tell placement we leave (nothing new comes here); hold
        new tells at the boundary; let each actor handle what it accepted; stop it
        (``on_stop``); only then release its name, so placement re-places it
        elsewhere; forward the held tells to the new activation. The lease is revoked
        after this, by ``aclose``."""
        member = self.member
        if not member.membership.joined or member.ride.recovering:
            return
        leaving = [
            (name, activation, cell)
            for name, activation in member.hosted.items()
            if (cell := member.hosting.cell(name)) is not None and cell.state < STOPPING
        ]
        if not leaving:
            return
        self.leaving = True
        timeout = member.config.leave_timeout_s
        loop = asyncio.get_running_loop()
        clock = member.system.clock
        deadline = clock.now() + timeout
        try:
            placer = await member.directory.placer()
            await placer.ask(m.Leaving(member.member_id), timeout=member.config.request_timeout_s)
        except CfactorError as exc:
            log.warning("could not tell placement that we leave: %r", exc)
        # Hold: from now on a tell to one of these activations is kept, not delivered.
        for name, activation, _cell in leaving:
            self._held[name] = collections.deque()
            self._held_epochs[name] = activation.epoch
            member.epochs.pop(name, None)
            member.epoch_aliases.pop(name, None)
        member.directory.redirecting = True
        log.info("leaving: draining %d named actors", len(leaving))
        # Drain what each accepted, then stop it (on_stop runs).
        cells = [cell for _name, _activation, cell in leaving]
        while clock.now() < deadline and any(
            cell.depth or cell.waiters or cell.task is not None for cell in cells
        ):
            await clock.sleep(0.005)
        for name, _activation, _cell in leaving:
            member.hosted.pop(name, None)
            member.tokens.pop(name, None)
            member.directory.routes.pop(name, None)
        await asyncio.gather(*(cell.stop() for cell in cells))
        # Only now may another member activate them.
        await asyncio.gather(
            *(member.activations.release(activation) for _n, activation, _c in leaving)
        )
        remaining = max(0.5, deadline - clock.now())
        routed: set[str] = set()
        forwarders = {
            name: loop.create_task(self._forward_held(name, remaining, routed))
            for name in self._held
        }
        # Wait for what was held to be forwarded (a name with nothing held does not
        # wait for its new activation: with no other member, there may be none).
        while clock.now() < deadline and not all(
            task.done() or not self._held[name] for name, task in forwarders.items()
        ):
            await clock.sleep(0.01)
        # Tells already in flight to us may still arrive: forward them for a moment.
        await clock.sleep(min(0.5, max(0.0, deadline - clock.now())))
        for task in forwarders.values():
            task.cancel()
        await asyncio.gather(*forwarders.values(), return_exceptions=True)
        # An answer from each member we forwarded to comes after our tells to it (one
        # ordered connection): then they are there, and closing cannot drop them.
        hosts = {
            target.wire_address().address
            for name, target in member.directory.routes.items()
            if name in routed
        }
        await asyncio.gather(
            *(member.ride.ask_peer(a) for a in sorted(hosts) if a != member.system.address)
        )
        log.info(
            "left gracefully: %d tells held, %d forwarded to the new activations",
            self.held,
            self.forwarded,
        )

    def hold(self, name: str, epoch: int, payload: Any) -> bool:
        """Hold a tell to ``name@epoch`` if that is an activation we are handing over
        (the directory's ``admit``), until the new one runs."""
        queue = self._held.get(name)
        if queue is None or self._held_epochs.get(name) != epoch:
            return False
        queue.append(payload)
        self.held += 1
        self._held_wakeup.set()
        return True

    async def _forward_held(self, name: str, timeout: float, routed: set[str]) -> None:
        """Send what is held for ``name`` to its new activation, until cancelled."""
        queue = self._held[name]
        try:
            target = await self.member.directory.route(name, timeout)
            routed.add(name)
        except ActorNotFound:
            log.warning(
                "%r was not re-placed within %.1f s: %d held tells", name, timeout, len(queue)
            )
            return
        while True:
            while queue:
                await target.tell(queue[0])
                queue.popleft()
                self.forwarded += 1
            self._held_wakeup.clear()
            await self._held_wakeup.wait()

    def drop_unforwarded(self) -> None:
        """After the lease is gone: count and log the held tells never forwarded."""
        lost = sum(len(queue) for queue in self._held.values())
        if lost:
            self.held_dropped += lost
            log.warning("%d tells held while leaving were not forwarded: dropped", lost)
