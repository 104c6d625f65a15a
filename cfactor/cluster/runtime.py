"""A member of a cluster: ``ClusterMember``, the ``ClusterRuntime`` plug-in that wires
the cluster's parts to one actor system.

Every member runs a ``$cluster`` agent (it activates actors here when asked, and
reports statistics). One member, elected through the membership store, also runs the
``$placement`` actor: it picks members for new named actors, remembers their specs in
the store, and re-places them when their member's lease expires. Only placement
decisions and membership changes touch the store; messages never do.

The parts, one module each (docs/cluster.md, "Modules"), collaborate through the
member: it owns what they share (the membership client and member id of the current
incarnation, and the table of activations hosted here: ``hosted``, ``epochs``,
``epoch_aliases``, ``tokens``) and the background tasks it cancels when it leaves.

- ``directory``: routes, refs that follow a name, the core's ``NameResolver``;
- ``spawn``: the spawn protocol, calling side (``Spawner``) and hosting side
  (``Activations``, orphan claims);
- ``placement``: the ``$placement`` actor (reservations, re-placement);
- ``lifecycle``: join, incarnations, leadership, fencing;
- ``ridethrough``: riding through a store outage (the fencing check);
- ``leave``: the graceful hand-over on ``aclose``;
- ``replicas``: replicated actors' replicas on other members;
- ``status``: the figures of ``cfactor status``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from cfactor._core.actor import Actor
from cfactor.cluster import messages as m
from cfactor.cluster.directory import ClusterTarget, Directory
from cfactor.cluster.leave import GracefulLeave
from cfactor.cluster.lifecycle import Lifecycle
from cfactor.cluster.messages import AGENT, PLACEMENT, PLACER, SPECS, check_reply, expect, refusal
from cfactor.cluster.placement import PlacementActor
from cfactor.cluster.replicas import ClusterReplicas
from cfactor.cluster.ridethrough import AcceptedEpochs, RideThrough
from cfactor.cluster.spawn import Activations, Spawner
from cfactor.cluster.spec import ActorSpec
from cfactor.cluster.status import member_stats
from cfactor.errors import CfactorError

if TYPE_CHECKING:
    from cfactor._core.ref import ActorRef, Target
    from cfactor._core.replicas import ReplicaSet
    from cfactor._core.system import ActorSystem
    from cfactor.abc import Activation, Membership
    from cfactor.cluster.config import Cluster

#: Names other code imported from here before the split (kept so they still resolve).
__all__ = [
    "AGENT",
    "PLACEMENT",
    "PLACER",
    "SPECS",
    "AcceptedEpochs",
    "ClusterAgent",
    "ClusterMember",
    "ClusterTarget",
    "PlacementActor",
    "check_reply",
    "expect",
    "refusal",
]

log = logging.getLogger("cfactor.cluster")


class ClusterAgent(Actor):
    """Runs on every member: activates actors here and reports this member's state."""

    def __init__(self, runtime: ClusterMember) -> None:
        self.runtime = runtime

    async def receive(self, message: Any) -> Any:  # noqa: PLR0911 - a dispatcher
        runtime = self.runtime
        match message:
            case m.Activate(spec=data, budget_s=budget_s):
                try:
                    spec = ActorSpec.decode(data)
                    return m.Activated(*await runtime.activations.activate_here(spec, budget_s))
                except CfactorError as exc:  # an answer, not a crash of the agent
                    return refusal(exc)
            case m.Deactivate(name=name):
                await runtime.activations.deactivate_here(name)
                return None
            case m.Stats():
                return member_stats(runtime)
            case m.StoreQuery():
                return runtime.ride.outage_answer()
            case m.HostReplica(spec=data, in_flight=in_flight, owner=owner):
                try:
                    return m.ReplicaHosted(
                        *await runtime.replicas.host_replica(data, in_flight, owner)
                    )
                except CfactorError as exc:
                    return refusal(exc)
        raise ValueError(f"unknown cluster agent message {message!r:.100}")


class ClusterMember:
    """The ``ClusterRuntime`` of one actor system (see ``cf.Cluster`` and the module)."""

    def __init__(self, config: Cluster, system: ActorSystem) -> None:
        self.config = config
        self.system = system
        self.hosting = system.hosting
        #: The current incarnation (``Lifecycle.new_incarnation`` makes a new one).
        self.membership: Membership
        self.member_id = ""
        #: The activations hosted here, by name: added by the spawn's hosting side,
        #: adopted by a re-claim, removed by fencing, the leave and the actor's stop.
        self.hosted: dict[str, Activation] = {}
        #: Epochs of the activations hosted here; an envelope addressed to
        #: ``name@epoch`` with another epoch is stale and rejected (``Directory.admit``).
        self.epochs: dict[str, int] = {}
        #: Earlier epochs still accepted for an activation re-claimed after a store
        #: outage (refs in flight name the epoch they resolved).
        self.epoch_aliases: dict[str, set[int]] = {}
        #: The spawn token of each hosted name (a retry of the same spawn finds it).
        self.tokens: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Set by ``aclose`` once the hand-over is done: nothing rejoins or releases now.
        self.closed = False
        self.directory = Directory(self)
        self.spawner = Spawner(self)
        self.activations = Activations(self)
        self.lifecycle = Lifecycle(self)
        self.ride = RideThrough(self)
        self.leave = GracefulLeave(self)
        self.replicas = ClusterReplicas(self)
        self.lifecycle.new_incarnation()

    async def start(self) -> None:
        self.directory.redirecting = True
        self.hosting.resolver = self.directory
        await self.system.spawn_service(ClusterAgent, self, name=AGENT)
        await self.lifecycle.join()
        self.background(self.lifecycle.lead_when_possible())
        self.background(self.replicas.report_forever())
        self.background(self.ride.poll_peers_forever())
        self.background(self.activations.release_orphans_forever())

    async def aclose(self) -> None:
        if self.closed:
            return
        try:
            await self.leave.run()
        except Exception:  # never stop a close half-way
            log.exception("leaving gracefully failed; leaving now")
        self.closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.lifecycle.unsubscribe()
        try:
            await self.membership.aclose()  # revokes the lease: others re-place at once
        except CfactorError as exc:
            log.warning("leaving the cluster: %r (the lease will expire on its own)", exc)
        self.directory.redirecting = False
        self.leave.drop_unforwarded()

    # -- the ClusterRuntime protocol ----------------------------------------------------------

    def resolve(self, name: str) -> ActorRef | None:
        return self.directory.resolve(name)

    async def spawn(
        self,
        cls: type,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        name: str,
        placement: Any,
        restart: str,
    ) -> ActorRef:
        spec = ActorSpec.of(cls, args, kwargs, name=name, restart=restart, placement=placement)
        return await self.spawner.spawn(spec)

    async def place_replica(self, group: ReplicaSet) -> ActorRef | None:
        return await self.replicas.place_replica(group)

    # -- what the parts share -----------------------------------------------------------------

    async def route(self, name: str, timeout: float | None = None) -> Target:
        """Where ``name``'s messages go (``Directory.route``; the flow layer waits on it)."""
        return await self.directory.route(name, timeout)

    @property
    def agent_timeout_s(self) -> float:
        """The bound on placement's asks to a member's agent: inside the caller's
        ``placement_timeout_s``, so a caller is not told "timed out" about a spawn that
        then succeeds."""
        return self.config.placement_timeout_s * 0.8

    def agent_of(self, address: str) -> ActorRef:
        """The ``$cluster`` agent of the member at ``address`` (this one's, locally)."""
        return self.system.ref(AGENT, at=None if address == self.system.address else address)

    def background(self, coro: Any) -> None:
        """Run ``coro`` as a task this member cancels when it leaves (done ones drop out)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def stop_local(self, name: str) -> None:
        """Stop the local actor ``name`` (if any) without waiting."""
        self.hosting.stop_local(name)
