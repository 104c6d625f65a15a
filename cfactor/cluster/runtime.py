"""A member of a cluster: directory, placement, re-placement and fencing.

Every member runs a ``$cluster`` agent (it activates actors here when asked, and
reports statistics). One member, elected through the membership store, also runs the
``$placement`` actor: it picks members for new named actors, remembers their specs in
the store, and re-places them when their member's lease expires. Only placement
decisions and membership changes touch the store; messages never do.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from cfactor._core.actor import Actor
from cfactor._core.cell import STOPPING, ActorCell
from cfactor._core.clock import wall_time
from cfactor._core.keyed import KeyedReplicaSet
from cfactor._core.ref import ActorRef
from cfactor._core.replicas import RemoteReplica
from cfactor.abc import Activation, Admission, MemberInfo
from cfactor.cluster import messages as m
from cfactor.cluster.outage import ASK, OutageGuard
from cfactor.cluster.policy import choose_member
from cfactor.cluster.spec import ActorSpec
from cfactor.errors import (
    ActorNotFound,
    ActorStartFailed,
    ActorStopped,
    AskTimeout,
    CfactorError,
    ConfigError,
    MembershipUnavailable,
    MemberUnreachable,
    NameTaken,
    RemoteActorError,
    SpawnOutcomeUnknown,
    wire_error_type,
)
from cfactor.membership import make_membership

if TYPE_CHECKING:
    from cfactor._core.mailbox import MailboxStatistics
    from cfactor._core.ref import Target
    from cfactor._core.replicas import ReplicaSet
    from cfactor._core.system import ActorSystem
    from cfactor.abc import Membership, RefAddress
    from cfactor.cluster.config import Cluster

log = logging.getLogger("cfactor.cluster")

PLACEMENT = "placement"  # the leader role
AGENT = "$cluster"
PLACER = "$placement"
SPECS = "specs"


#: The refusals a cluster actor's caller sees as themselves; any other error it
#: answers with (rebuilt through the wire table in cfactor.errors) is reported as
#: MembershipUnavailable, as the cluster's operations document.
_REFUSALS = (NameTaken, MembershipUnavailable, ConfigError, ActorNotFound, ActorStartFailed)


_A = TypeVar("_A")


def refusal(exc: CfactorError) -> m.Refused:
    """An expected failure as an answer (its wire name and message)."""
    if isinstance(exc, RemoteActorError):
        return m.Refused(exc.type_name.rpartition(".")[2], exc.message)
    return m.Refused(type(exc).__name__, str(exc))


def check_reply(reply: Any) -> None:
    """Raise the typed error a cluster actor answered with, if it did."""
    if isinstance(reply, m.Refused):
        cls = wire_error_type(reply.type_name)
        if cls is None or not issubclass(cls, _REFUSALS):
            cls = MembershipUnavailable
        raise cls(reply.message)


def expect(reply: Any, kind: type[_A]) -> _A:
    """``reply`` as the answer ``kind``; the typed error it carries if it is a refusal.

    Raises:
        MembershipUnavailable: Neither (a member of another version, or a bug).
    """
    if isinstance(reply, kind):
        return reply
    check_reply(reply)
    raise MembershipUnavailable(f"expected {kind.__name__}, got {reply!r:.100}")


def decision_stats(decision: Any, now: float) -> dict[str, Any] | None:
    """An autoscaler ``Decision`` for ``cfactor status`` (its age, not its clock time)."""
    if decision is None:
        return None
    return {
        "replicas": decision.replicas,
        "direction": decision.direction,
        "reason": decision.reason,
        "age_s": round(max(0.0, now - decision.at), 3),
    }


def group_stats(group: ReplicaSet, now: float) -> dict[str, Any]:
    """One replicated actor for ``cfactor status``: its replicas, its backlog, and
    what its autoscaler decided last (and last changed), with the reason."""
    stats = group.statistics()
    depth, active = group.load()
    controller = group.controller
    decisions = getattr(controller, "decisions", None)
    where: dict[str, int] = {}
    for replica in group.replicas:
        if replica.draining or replica.cell.state >= STOPPING:
            continue
        cell = replica.cell
        address = cell.address if isinstance(cell, RemoteReplica) else group.system.address
        where[address] = where.get(address, 0) + 1
    return {
        "name": group.name,
        "replicas": active,
        "draining": sum(1 for r in group.replicas if r.draining),
        "backlog": group.depth,
        "depth": depth,
        "capacity": stats.capacity,
        "processed": stats.processed,
        "keyed": isinstance(group, KeyedReplicaSet),
        "where": where,
        "last": decision_stats(getattr(controller, "last", None), now),
        "last_change": decision_stats(decisions[-1] if decisions else None, now),
    }


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


class ClusterTarget:
    """The far end of a ref to a cluster actor by name: it follows the activation.

    Each send looks the name up in the member's route table (kept current by the
    store's watch): the local cell if the actor lives here, else a remote target
    addressed to ``name@epoch``. While the name has no activation (its member just
    died and it is being re-placed), sends wait for one, up to the ask timeout.
    """

    __slots__ = ("name", "ref", "runtime")

    uid = 0

    def __init__(self, runtime: ClusterMember, name: str) -> None:
        self.runtime = runtime
        self.name = name
        self.ref = ActorRef(self)

    @property
    def is_alive(self) -> bool:
        return self.name in self.runtime.routes

    def describe(self) -> str:
        activation = self.runtime.membership.activations().get(self.name)
        where = f"@{activation.address} epoch={activation.epoch}" if activation else " (placing)"
        return f"{self.name}{where} cluster"

    def wire_address(self) -> RefAddress:
        target = self.runtime.routes.get(self.name)
        if target is None:
            raise ActorNotFound(f"cluster actor {self.name!r} has no activation now")
        return target.wire_address()

    def statistics(self) -> MailboxStatistics:
        target = self.runtime.routes.get(self.name)
        if target is None:
            raise ActorNotFound(f"cluster actor {self.name!r} has no activation now")
        return target.statistics()

    async def tell(self, message: Any) -> None:
        target = self.runtime.routes.get(self.name) or await self.runtime.route(self.name)
        await target.tell(message)

    def tell_nowait(self, message: Any) -> None:
        target = self.runtime.routes.get(self.name)
        if target is None:
            raise ActorNotFound(f"cluster actor {self.name!r} has no activation now")
        target.tell_nowait(message)

    async def ask(self, message: Any, timeout: float | None) -> Any:
        target = self.runtime.routes.get(self.name)
        if target is not None:
            return await target.ask(message, timeout)
        # No activation now: waiting for one spends the same budget as the answer.
        clock = self.runtime.system.clock
        budget = self.runtime.system.ask_timeout_s if timeout is None else timeout
        started = clock.now()
        target = await self.runtime.route(self.name, budget)
        remaining = budget - (clock.now() - started)
        if remaining <= 0:
            raise AskTimeout(f"cluster actor {self.name!r} did not answer within {budget:g} s")
        return await target.ask(message, remaining)

    async def stop(self) -> None:
        await self.runtime.remove(self.name)


class ClusterAgent(Actor):
    """Runs on every member: activates actors here and reports this member's state."""

    def __init__(self, runtime: ClusterMember) -> None:
        self.runtime = runtime

    async def receive(self, message: Any) -> Any:  # noqa: PLR0911 - a dispatcher
        match message:
            case m.Activate(spec=data, budget_s=budget_s):
                try:
                    spec = ActorSpec.decode(data)
                    return m.Activated(*await self.runtime.activate_here(spec, budget_s))
                except CfactorError as exc:  # an answer, not a crash of the agent
                    return refusal(exc)
            case m.Deactivate(name=name):
                await self.runtime.deactivate_here(name)
                return None
            case m.Stats():
                return self.runtime.stats()
            case m.StoreQuery():
                return self.runtime.outage_answer()
            case m.HostReplica(spec=data, in_flight=in_flight, owner=owner):
                try:
                    return m.ReplicaHosted(*await self.runtime.host_replica(data, in_flight, owner))
                except CfactorError as exc:
                    return refusal(exc)
        raise ValueError(f"unknown cluster agent message {message!r:.100}")


class PlacementActor(Actor):
    """The cluster's placement: runs on the elected leader only."""

    def __init__(self, runtime: ClusterMember) -> None:
        self.runtime = runtime
        self.specs: dict[str, ActorSpec] = {}
        self.task: asyncio.Task[None] | None = None
        #: Names placed lately: (when, epoch). Until the watch has shown that claim, a
        #: reconcile must not take its absence for a loss and place it again.
        self.recent: dict[str, tuple[float, int]] = {}
        self.losses_seen = -1
        self.last_sweep = float("-inf")
        #: Names whose re-placement failed: how often, and when to try again.
        self.failures: dict[str, int] = {}
        self.retry_at: dict[str, float] = {}
        #: Load reports per member: (when, replicas it hosts, {group: (depth, replicas)}).
        self.loads: dict[str, tuple[float, int, dict[str, Any]]] = {}
        #: Replicas placed on a member since its last report (so a burst spreads).
        self.placed_since: dict[str, int] = {}
        #: Spawns reserved, not yet confirmed: name -> (token, member id, when).
        self.reservations: dict[str, tuple[str, str, float]] = {}
        #: Members that said they are leaving (nothing new is placed on them): -> when.
        self.leaving: dict[str, float] = {}
        #: Re-placements in progress, one task per name (never inside ``receive``: an
        #: ask to one hung member must not hold up placement for the others).
        self.replacing: dict[str, asyncio.Task[None]] = {}

    async def on_start(self) -> None:
        # Rebuild from the store: a new leader knows every spec the old one stored.
        for name, data in (await self.runtime.membership.records(SPECS)).items():
            try:
                self.specs[name] = ActorSpec.decode(data)
            except CfactorError:
                log.exception("ignoring an unreadable spec for %r", name)
        log.info(
            "placement leader on %s with %d specs", self.runtime.system.address, len(self.specs)
        )
        self.task = asyncio.get_running_loop().create_task(self._reconcile_forever())

    async def on_stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        for task in list(self.replacing.values()):
            task.cancel()

    async def receive(self, message: Any) -> Any:  # noqa: PLR0911 - a dispatcher
        match message:
            case m.Reserve(spec=data):
                return self._reserve(data)
            case m.Confirm(spec=data, epoch=epoch):
                return self._confirm(data, epoch)
            case m.Unreserve(name=name, token=token):
                held = self.reservations.get(name)
                if held is not None and held[0] == token:
                    del self.reservations[name]
                return None
            case m.Forget(name=name):
                self.specs.pop(name, None)
                self.reservations.pop(name, None)
                return None
            case m.Leaving(member_id=member_id):
                self.leaving[member_id] = self.system.clock.now()
                log.info("member %s is leaving: nothing new goes there", member_id)
                return None
            case m.Reconcile():
                return await self._reconcile()
            case m.LoadReport(member_id=member_id, hosted=hosted, groups=groups):
                self.loads[member_id] = (self.system.clock.now(), hosted, groups)
                self.placed_since.pop(member_id, None)
                return None
            case m.ChooseReplica(placement=placement):
                return self._choose_replica(placement)
            case m.Loads():
                now = self.system.clock.now()
                return {
                    member_id: {"age_s": round(now - at, 3), "hosted": hosted, "groups": groups}
                    for member_id, (at, hosted, groups) in self.loads.items()
                }
        raise ValueError(f"unknown placement message {message!r:.100}")

    def replica_load(self) -> dict[str, int]:
        """Per member: its named actors plus the replicas it hosts (as last reported,
        plus those placed on it since)."""
        load: dict[str, int] = {}
        for activation in self.runtime.membership.activations().values():
            load[activation.member_id] = load.get(activation.member_id, 0) + 1
        for member_id, (_at, hosted, _groups) in self.loads.items():
            load[member_id] = load.get(member_id, 0) + hosted
        for member_id, placed in self.placed_since.items():
            load[member_id] = load.get(member_id, 0) + placed
        return load

    def _choose_replica(self, placement: Any) -> m.Placed | m.Refused:
        members = self.runtime.membership.members()
        for gone in set(self.loads) - set(members):
            self.loads.pop(gone, None)
            self.placed_since.pop(gone, None)
        wire = tuple(placement) if isinstance(placement, list | tuple) else None
        member_id = choose_member(members, self.replica_load(), wire, self.system.random)
        if member_id is None:
            return refusal(MembershipUnavailable(f"no member can host a replica ({wire})"))
        self.placed_since[member_id] = self.placed_since.get(member_id, 0) + 1
        return m.Placed(member_id, members[member_id].address)

    def candidates(self) -> dict[str, MemberInfo]:
        """The members new activations may go to (not those leaving)."""
        members = self.runtime.membership.members()
        for gone in set(self.leaving) - set(members):
            del self.leaving[gone]
        return {k: v for k, v in members.items() if k not in self.leaving}

    def _reserve(  # noqa: PLR0911 - one answer per case
        self, data: bytes
    ) -> m.Placed | m.AlreadyPlaced | m.Refused:
        """Step one of a spawn: choose a member and remember the choice (in memory
        only: no store call, no ask to a member, so placement never waits on one).

        Answers ``Placed``: the caller asks that member's agent to activate;
        ``AlreadyPlaced``: this same spawn (same token) succeeded before.
        """
        try:
            spec = ActorSpec.decode(data)
        except CfactorError as exc:
            return refusal(exc)
        name = spec.name
        now = self.system.clock.now()
        stale = now - 2 * self.runtime.config.placement_timeout_s
        for old in [n for n, (_t, _m, at) in self.reservations.items() if at < stale]:
            del self.reservations[old]  # abandoned: its member never holds it unstarted
        known = self.specs.get(name)
        if known is not None:
            if spec.token and known.token == spec.token:
                return m.AlreadyPlaced()
            return refusal(NameTaken(f"cluster actor {name!r} is already running"))
        members = self.candidates()
        held = self.reservations.get(name)
        if held is not None:
            token, member_id, _at = held
            if token != spec.token:
                return refusal(NameTaken(f"cluster actor {name!r} is being spawned"))
            if member_id in members:  # a retry: to the member of the first attempt
                self.reservations[name] = (token, member_id, now)
                return m.Placed(member_id, members[member_id].address)
        activation = self.runtime.membership.activations().get(name)
        if activation is not None:
            # Claimed, with no spec here: an earlier attempt that was never confirmed,
            # or someone else's. Its member's agent tells which, by the token.
            self.reservations[name] = (spec.token, activation.member_id, now)
            return m.Placed(activation.member_id, activation.address)
        load: dict[str, int] = {}
        for current in self.runtime.membership.activations().values():
            load[current.member_id] = load.get(current.member_id, 0) + 1
        for _token, reserved_on, _at in self.reservations.values():
            load[reserved_on] = load.get(reserved_on, 0) + 1
        chosen = choose_member(members, load, spec.placement, self.system.random)
        if chosen is None:
            return refusal(
                MembershipUnavailable(f"no member can host {name!r} (placement {spec.placement})")
            )
        self.reservations[name] = (spec.token, chosen, now)
        return m.Placed(chosen, members[chosen].address)

    def _confirm(self, data: bytes, epoch: int) -> m.Refused | None:
        """Step three: the actor runs and its spec is stored; re-place it from now on."""
        try:
            spec = ActorSpec.decode(data)
        except CfactorError as exc:
            return refusal(exc)
        self.reservations.pop(spec.name, None)
        self.specs[spec.name] = spec
        self.recent[spec.name] = (self.system.clock.now(), epoch)
        return None

    async def _place(self, spec: ActorSpec, *, replacing: bool = False) -> Activation:
        membership = self.runtime.membership
        members = self.candidates()
        load: dict[str, int] = {}
        for activation in membership.activations().values():
            load[activation.member_id] = load.get(activation.member_id, 0) + 1
        member_id = choose_member(
            members, load, spec.placement, self.system.random, replacing=replacing
        )
        if member_id is None:
            raise MembershipUnavailable(
                f"no member can host {spec.name!r} (placement {spec.placement})"
            )
        timeout = self.runtime.agent_timeout_s
        reply = await self.runtime.agent_of(members[member_id].address).ask(
            m.Activate(spec.encode(), timeout * 0.8), timeout=timeout
        )
        done = expect(reply, m.Activated)
        return Activation(spec.name, done.member_id, done.address, done.epoch)

    async def _reconcile(self) -> int:
        """Start re-placing every remembered actor that has no activation, one task
        per name; how many were started."""
        if not self.runtime.may_replace():
            # Just joined, or the store just came back: owners that rode through its
            # outage are re-claiming their names; they go first (docs/cluster.md).
            return 0
        started = 0
        current = self.runtime.membership.activations()
        now = self.system.clock.now()
        grace = self.runtime.config.placement_timeout_s
        for name, spec in list(self.specs.items()):
            if name in current:
                self.recent.pop(name, None)
                continue
            if name in self.replacing:
                continue
            placed_at, epoch = self.recent.get(name, (-grace, 0))
            if self.runtime.seen_epochs.get(name, 0) < epoch and now - placed_at < grace:
                continue  # just placed: the watch has not shown the claim yet
            if spec.restart == "temporary":
                self.specs.pop(name, None)
                with contextlib.suppress(CfactorError):  # the next leader retries
                    await self.runtime.membership.delete_record(SPECS, name)
                continue
            if now < self.retry_at.get(name, now):
                continue  # failed lately: back off instead of hammering the store
            task = asyncio.get_running_loop().create_task(self._replace(name, spec))
            self.replacing[name] = task
            task.add_done_callback(partial(self._replaced, name))
            started += 1
        return started

    def _replaced(self, name: str, task: asyncio.Task[None]) -> None:
        if self.replacing.get(name) is task:
            del self.replacing[name]

    async def _replace(self, name: str, spec: ActorSpec) -> None:
        try:
            activation = await self._place(spec, replacing=True)
        except CfactorError as exc:
            failures = self.failures[name] = self.failures.get(name, 0) + 1
            delay = min(0.1 * 2**failures, 10.0)
            self.retry_at[name] = self.system.clock.now() + delay
            log.warning(
                "re-placing %r failed (%d times), retry in %.1f s: %r", name, failures, delay, exc
            )
            return
        self.failures.pop(name, None)
        self.retry_at.pop(name, None)
        self.recent[name] = (self.system.clock.now(), activation.epoch)
        log.info("re-placed %r on %s (epoch %d)", name, activation.address, activation.epoch)

    async def _reconcile_forever(self) -> None:
        """Reconcile when an activation vanished or a member left, and once a second
        (to retry what failed); not on every new claim, which loses nothing."""
        while True:
            await self.runtime.changed_or(1.0)
            losses = self.runtime.losses
            if losses == self.losses_seen and not self._due():
                continue
            self.losses_seen = losses
            try:
                await self.ref.tell(m.Reconcile())
            except CfactorError:
                return

    def _due(self) -> bool:
        now = self.system.clock.now()
        if now - self.last_sweep >= 1.0:
            self.last_sweep = now
            return True
        return False


class ClusterMember:
    """The ``ClusterRuntime`` of one actor system (see ``cf.Cluster``)."""

    def __init__(self, config: Cluster, system: ActorSystem) -> None:
        self.config = config
        self.system = system
        self.membership: Membership
        self.member_id = ""
        self._new_incarnation()
        #: name -> where its messages go now (local cell, or remote "name@epoch").
        self.routes: dict[str, Target] = {}
        self.hosted: dict[str, Activation] = {}
        #: Epochs of the activations hosted here; an envelope addressed to
        #: ``name@epoch`` with another epoch is stale and rejected (see ``admit``).
        self.epochs: dict[str, int] = {}
        #: Earlier epochs still accepted for an activation re-claimed after a store
        #: outage (refs in flight name the epoch they resolved).
        self.epoch_aliases: dict[str, set[int]] = {}
        #: Whether ``admit`` may hold or forward tells (``_redirect``); off once left.
        self._redirecting = False
        self.hosting = system.hosting
        self._targets: dict[str, ClusterTarget] = {}
        self._changed = asyncio.Event()
        #: Activations seen vanishing so far: placement reconciles when it grows.
        self.losses = 0
        #: The newest epoch the watch has shown per name.
        self.seen_epochs: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._unsubscribe: list[Any] = []
        self._closed = False
        #: Replicas hosted here for groups on other members: name -> (group, owner address).
        self.hosted_replicas: dict[str, tuple[str, str]] = {}
        #: Groups whose replicas stay here because their class or arguments cannot travel.
        self._local_only: set[str] = set()
        config = self.config
        #: Riding through store outages (cfactor/cluster/outage.py, docs/cluster.md).
        self.outage = OutageGuard(
            system.clock, grace_s=config.ttl_s, margin_s=config.request_timeout_s + 0.5
        )
        self._recovering = False
        #: Hosted names re-claimed after the store revoked our lease (for tests, status).
        self.reclaimed = 0
        #: The spawn token of each hosted name (a retry of the same spawn finds it).
        self.tokens: dict[str, str] = {}
        #: Activations in progress here: name -> (token, outcome).
        self.activating: dict[str, tuple[str, asyncio.Future[tuple[str, str, int]]]] = {}
        #: Our claims with no activation behind them at the last check: name -> epoch.
        self._orphan_suspects: dict[str, int] = {}
        #: Claims released because no activation was behind them (for tests, status).
        self.orphans_released = 0
        #: Leaving gracefully: tells to our activations held at the boundary, per name,
        #: with the epoch they were addressed to, until the new activation takes them.
        self._leaving = False
        self._held: dict[str, collections.deque[Any]] = {}
        self._held_epochs: dict[str, int] = {}
        self._held_wakeup = asyncio.Event()
        #: Activations starting here: tells to them that arrive before they run (peers
        #: may see the claim in their watch before our claim call returns) are held
        #: here and handed to the actor once started. name -> (epochs above, held).
        self._arriving: dict[str, tuple[int, collections.deque[tuple[int, Any]]]] = {}
        #: Tells held while leaving / forwarded to the new activation / dropped.
        self.held = self.forwarded = self.held_dropped = 0

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._redirecting = True
        self.hosting.resolver = self
        await self.system.spawn_service(ClusterAgent, self, name=AGENT)
        await self._join()
        self._background(self._lead_when_possible())
        self._background(self._report_forever())
        self._background(self._poll_peers_forever())
        self._background(self._release_orphans_forever())

    async def _join(self) -> None:
        """Register this member (under a fresh lease) and follow the cluster's views.

        Raises:
            MembershipUnavailable: The store cannot be reached.
        """
        system = self.system
        info = MemberInfo(
            member_id=self.member_id,
            address=system.address,
            capacity=self.config.capacity,
            labels=tuple(sorted(self.config.labels.items())),
            joined_at=wall_time(),
        )
        await self.membership.join(info, ttl_s=self.config.ttl_s)
        self._unsubscribe.append(self.membership.subscribe_activations(self._activation_changed))
        self._unsubscribe.append(self.membership.subscribe(lambda _event: self._changed.set()))
        self.membership.on_lease_lost(self._lease_lost)
        self.membership.set_lease_guard(self._may_ride_through)
        self.outage.joined()
        self.routes.clear()
        for name in self.hosted:  # kept through a re-claim after a store outage
            cell = self.hosting.cell(name)
            if cell is not None:
                self.routes[name] = cell
        for name, activation in self.membership.activations().items():
            self._activation_changed(name, activation)
        log.info(
            "member %s joined cluster %r at %s", self.member_id, self.config.name, system.address
        )

    @property
    def agent_timeout_s(self) -> float:
        """The bound on placement's asks to a member's agent: inside the caller's
        ``placement_timeout_s``, so a caller is not told "timed out" about a spawn that
        then succeeds."""
        return self.config.placement_timeout_s * 0.8

    def _new_incarnation(self) -> None:
        """A fresh member id and membership client (at start, and after fencing)."""
        config = self.config
        self.member_id = f"{config.name}-{self.system.random.getrandbits(40):010x}"
        self.membership = make_membership(
            config.etcd,
            cluster=config.name,
            clock=self.system.clock,
            request_timeout_s=config.request_timeout_s,
            wall_clock=wall_time,
            store=config.store,
            etcd_tls=config.etcd_tls,
            etcd_user=config.etcd_user,
            etcd_password=config.etcd_password,
        )

    async def _rejoin_forever(self) -> None:
        """After fencing: join again as a new incarnation once the store answers."""
        old = self.membership
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        with contextlib.suppress(CfactorError):
            await old.aclose()
        delay = 0.2
        while not self._closed:
            self._new_incarnation()
            try:
                await self._join()
            except CfactorError as exc:
                with contextlib.suppress(CfactorError):
                    await self.membership.aclose()
                log.info("rejoining the cluster failed (%r); again in %.1f s", exc, delay)
                await self.system.clock.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            log.warning("member rejoined the cluster as %s", self.member_id)
            self._changed.set()
            return

    # -- riding through a store outage (docs/cluster.md, cfactor/cluster/outage.py) -------

    def _store_state(self) -> tuple[bool, set[str]]:
        """Whether this member reaches the store now, and its peers' addresses."""
        membership = self.membership
        reachable = membership.joined and membership.store_reachable
        own = self.system.address
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

    def _may_ride_through(self) -> bool:
        reachable, peers = self._store_state()
        self.outage.sync(reachable=reachable, peers=peers)
        return self.outage.may_ride_through()

    async def _poll_peers_forever(self) -> None:
        """While this member cannot reach the store, ask every peer's agent, twice a
        second, whether it can (their answers decide whether we may ride through)."""
        interval = min(0.5, self.config.ttl_s / 6)
        while True:
            await self.system.clock.sleep(interval)
            reachable, peers = self._store_state()
            self.outage.sync(reachable=reachable, peers=peers)
            if reachable:
                continue
            await asyncio.gather(
                *(self._ask_peer(address) for address in sorted(self.outage.peers))
            )

    async def _ask_peer(self, address: str) -> None:
        sent_at = self.system.clock.now()
        try:
            reply = await self.agent_of(address).ask(ASK, timeout=self.config.request_timeout_s)
        except CfactorError as exc:
            log.debug("peer %s did not say whether it reaches the store: %r", address, exc)
            return
        if not self.outage.heard(address, sent_at, reply) and self.outage.unreadable % 100 == 1:
            # Counted; logged once per hundred: a peer of another version, or a bug.
            log.warning(
                "peer %s answered %r to %r (%d such)", address, reply, ASK, self.outage.unreadable
            )

    def _lease_lost(self) -> None:
        """The membership gave our lease up: re-claim our names under a new lease if
        riding through is still safe, else fence."""
        if self._closed or self._recovering:
            return
        if self._may_ride_through():
            self._start_recovery()
        else:
            self._fence()

    def _start_recovery(self) -> None:
        if self._recovering or self._closed:
            return
        self._recovering = True
        log.warning(
            "member %s: the store dropped our lease during an outage; re-claiming %d names",
            self.member_id,
            len(self.hosted),
        )
        self._background(self._recover())

    async def _recover(self) -> None:
        """Re-join and re-claim every hosted name, watched: the moment riding through
        stops being safe (a peer regained the store ``ttl_s`` ago minus the margin),
        give up and fence whatever is not re-claimed yet."""
        work = asyncio.get_running_loop().create_task(self._reclaim_all())
        try:
            while True:
                done, _ = await self.system.clock.wait([work], timeout=0.1)
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
        self._recovering = False
        if not ok:
            if not self._closed:
                self._fence()
        elif not self.membership.joined:
            self._lease_lost()  # the new lease went too, while we were busy
        else:
            self._changed.set()

    async def _reclaim_all(self) -> bool:
        """A new incarnation (the old lease is gone), then a compare-and-set claim of
        every name we still serve; a name someone else holds is stopped at once.
        False if riding through stopped being safe before all were claimed."""
        old = self.membership
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        with contextlib.suppress(CfactorError):
            await old.aclose()  # revokes the old lease if the store still has it
        while True:
            if not self.outage.may_ride_through():
                return False
            self._new_incarnation()
            try:
                await self._join()
            except CfactorError as exc:
                with contextlib.suppress(CfactorError):
                    await self.membership.aclose()
                log.info("re-joining after the outage failed (%r); again", exc)
                await self.system.clock.sleep(0.2)
                continue
            break
        for name, before in list(self.hosted.items()):
            if not self.outage.may_ride_through():
                return False
            cell = self.hosting.cell(name)
            if cell is None or cell.state >= STOPPING:
                continue  # stopping anyway: its stop gives the name back
            accepted = self._accept_epochs(cell, before)
            accepted.newer_than = before.epoch
            try:
                activation = await self.membership.claim(name)
            finally:
                accepted.newer_than = None
            if activation is None:
                log.error("%r was claimed elsewhere during the outage: stopping ours", name)
                self.hosted.pop(name, None)
                self.epochs.pop(name, None)
                self.routes.pop(name, None)
                self._stop_local(name)
                continue
            self._adopt(cell, activation)
        log.warning("member %s re-claimed its names after the outage", self.member_id)
        return True

    def _accept_epochs(self, cell: ActorCell, before: Activation) -> AcceptedEpochs:
        """The epochs, besides the current one, that the running actor still accepts:
        its earlier ones, dropped when it stops."""
        name = before.name
        accepted = self.epoch_aliases.get(name)
        if not isinstance(accepted, AcceptedEpochs):
            accepted = AcceptedEpochs()
            self.epoch_aliases[name] = accepted

            def stopped() -> None:
                if self.epoch_aliases.get(name) is accepted:
                    del self.epoch_aliases[name]

            self.hosting.on_stopped(cell.ref, stopped)
        accepted.add(before.epoch)
        return accepted

    def _adopt(self, cell: ActorCell, activation: Activation) -> None:
        """The running actor is now ``activation``."""
        name = activation.name
        self.hosted[name] = activation
        self.epochs[name] = activation.epoch
        self.routes[name] = cell
        self.reclaimed += 1
        self.hosting.on_stopped(cell.ref, lambda: self._local_stopped(name, activation))

    def _background(self, coro: Any) -> None:
        """Run ``coro`` as a task this member cancels when it leaves (done ones drop out)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        if self._closed:
            return
        try:
            await self._leave_gracefully()
        except Exception:  # never stop a close half-way
            log.exception("leaving gracefully failed; leaving now")
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        try:
            await self.membership.aclose()  # revokes the lease: others re-place at once
        except CfactorError as exc:
            log.warning("leaving the cluster: %r (the lease will expire on its own)", exc)
        self._redirecting = False
        lost = sum(len(queue) for queue in self._held.values())
        if lost:
            self.held_dropped += lost
            log.warning("%d tells held while leaving were not forwarded: dropped", lost)

    # -- leaving gracefully (SIGTERM, close) ----------------------------------------------------

    async def _leave_gracefully(self) -> None:
        """Hand our named actors over without losing an accepted tell, and without two
        activations at once: tell placement we leave (nothing new comes here); hold
        new tells at the boundary; let each actor handle what it accepted; stop it
        (``on_stop``); only then release its name, so placement re-places it
        elsewhere; forward the held tells to the new activation. The lease is revoked
        after this, by ``aclose``."""
        if not self.membership.joined or self._recovering:
            return
        leaving = [
            (name, activation, cell)
            for name, activation in self.hosted.items()
            if (cell := self.hosting.cell(name)) is not None and cell.state < STOPPING
        ]
        if not leaving:
            return
        self._leaving = True
        timeout = self.config.leave_timeout_s
        loop = asyncio.get_running_loop()
        clock = self.system.clock
        deadline = clock.now() + timeout
        try:
            placer = await self._placer()
            await placer.ask(m.Leaving(self.member_id), timeout=self.config.request_timeout_s)
        except CfactorError as exc:
            log.warning("could not tell placement that we leave: %r", exc)
        # Hold: from now on a tell to one of these activations is kept, not delivered.
        for name, activation, _cell in leaving:
            self._held[name] = collections.deque()
            self._held_epochs[name] = activation.epoch
            self.epochs.pop(name, None)
            self.epoch_aliases.pop(name, None)
        self._redirecting = True
        log.info("leaving: draining %d named actors", len(leaving))
        # Drain what each accepted, then stop it (on_stop runs).
        cells = [cell for _name, _activation, cell in leaving]
        while clock.now() < deadline and any(
            cell.depth or cell.waiters or cell.task is not None for cell in cells
        ):
            await clock.sleep(0.005)
        for name, _activation, _cell in leaving:
            self.hosted.pop(name, None)
            self.tokens.pop(name, None)
            self.routes.pop(name, None)
        await asyncio.gather(*(cell.stop() for cell in cells))
        # Only now may another member activate them.
        await asyncio.gather(*(self._release(activation) for _n, activation, _c in leaving))
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
            target.wire_address().address for name, target in self.routes.items() if name in routed
        }
        await asyncio.gather(
            *(self._ask_peer(a) for a in sorted(hosts) if a != self.system.address)
        )
        log.info(
            "left gracefully: %d tells held, %d forwarded to the new activations",
            self.held,
            self.forwarded,
        )

    def admit(self, target: str, payload: Any, *, tell: bool) -> str | Admission:
        """``NameResolver.admit``: an activation here is addressed as ``name@epoch``;
        another epoch of it is stale, unless the tell is held (``_redirect``)."""
        name, at, epoch = target.rpartition("@")
        if not at or not epoch.isdigit():
            return Admission.UNKNOWN
        number = int(epoch)
        if self.epochs.get(name) == number or number in self.epoch_aliases.get(name, ()):
            return name
        if tell and self._redirecting and self._redirect(name, number, payload):
            return Admission.TAKEN
        return Admission.STALE

    def hosts(self, name: str) -> bool:
        """``NameResolver.hosts``: ``name`` is an activation of ours (its refs follow it)."""
        return name in self.epochs

    def _redirect(self, name: str, epoch: int, payload: Any) -> bool:
        """Hold a tell to an activation of ours that is starting (until it runs) or
        that we are handing over (until the new one runs)."""
        arriving = self._arriving.get(name)
        if arriving is not None and epoch > arriving[0]:
            arriving[1].append((epoch, payload))
            return True
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
            target = await self.route(name, timeout)
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

    # -- routing ------------------------------------------------------------------------------

    def resolve(self, name: str) -> ActorRef | None:
        target = self._targets.get(name)
        if target is None:
            if name not in self.routes and name not in self.membership.activations():
                return None
            target = self._targets[name] = ClusterTarget(self, name)
        return target.ref

    async def route(self, name: str, timeout: float | None = None) -> Target:
        target = self.routes.get(name)
        if target is not None:
            return target
        budget = self.system.ask_timeout_s if timeout is None else timeout
        clock = self.system.clock
        deadline = clock.now() + budget
        while (target := self.routes.get(name)) is None:
            remaining = deadline - clock.now()
            if remaining <= 0:
                raise ActorNotFound(
                    f"cluster actor {name!r} has no activation (waited {budget:g} s)"
                )
            await self.changed_or(remaining)
        return target

    def _activation_changed(self, name: str, activation: Activation | None) -> None:
        if activation is None:
            self.losses += 1
            if name in self.hosted and self._may_ride_through():
                # Ours vanished while we ride through a store outage: the store revoked
                # our lease. Re-claim under a new one instead of stopping.
                self._start_recovery()
                return
            self.routes.pop(name, None)
            if name in self.hosted:  # ours vanished from the store: stop it (fencing)
                self.hosted.pop(name)
                self._stop_local(name)
        elif activation.member_id == self.member_id:
            self.seen_epochs[name] = activation.epoch
            cell = self.hosting.cell(name)
            if cell is not None:
                self.routes[name] = cell
        else:
            self.seen_epochs[name] = activation.epoch
            self.routes[name] = self.hosting.target(
                activation.address, f"{name}@{activation.epoch}"
            )
        self._changed.set()

    async def changed_or(self, timeout: float) -> None:
        """Wait until the membership view changes, or ``timeout`` seconds."""
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            async with self.system.clock.timeout(timeout):
                await self._changed.wait()

    def agent_of(self, address: str) -> ActorRef:
        return self.system.ref(AGENT, at=None if address == self.system.address else address)

    # -- placement ----------------------------------------------------------------------------

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
        # The token makes a retry of this same spawn find the earlier attempt.
        spec = spec.with_token(self.system.address)  # the member's id changes on a rejoin
        data = spec.encode()  # refuse what cannot cross the wire before asking anyone
        clock = self.system.clock
        started = clock.now()
        # 1. Reserve: placement only chooses (it never waits on a member or the store).
        reply = await self._ask_placer(m.Reserve(data))
        if not isinstance(reply, m.AlreadyPlaced):
            placed = expect(reply, m.Placed)
            member_id, address = placed.member_id, placed.address
            # 2. Activate: that member claims the name (compare-and-set) and starts it.
            budget = self.config.placement_timeout_s - (clock.now() - started)
            epoch = await self._activate_on(spec, data, address, budget)
            # 3. Confirm: store the spec (so it is re-placed if its member dies), then
            # tell placement. Stored only now: a spec of an actor that never started
            # would be placed later by a reconcile, after the spawn raised.
            try:
                await self.membership.put_record(SPECS, name, data)
            except CfactorError as exc:
                raise SpawnOutcomeUnknown(
                    f"{name!r} started on {address} (member {member_id}) but its spec could "
                    f"not be stored ({exc}); spawn it again the same way to make sure"
                ) from exc
            try:
                await self._ask_placer(m.Confirm(data, epoch))
            except CfactorError as exc:  # stored: the next leader reads it
                log.warning("placement did not hear that %r started: %r", name, exc)
        ref = self.resolve(name)
        if ref is None:  # the watch has not shown the activation yet
            self._targets[name] = ClusterTarget(self, name)
            ref = self._targets[name].ref
        return ref

    async def _activate_on(self, spec: ActorSpec, data: bytes, address: str, budget: float) -> int:
        """Ask the agent at ``address`` to activate ``spec``; the activation's epoch.

        The agent starts the actor only within ``0.8 * budget`` of receiving the ask,
        so an ask that timed out here is not followed by a start much later.

        Raises:
            SpawnOutcomeUnknown: The agent did not answer in time, or its member went
                away while asked: the actor may be running.
            NameTaken, ActorStartFailed, ConfigError, MembershipUnavailable: It did not
                start, and never will (the reservation is dropped).
        """
        if budget <= 0:
            await self._unreserve(spec)
            raise MembershipUnavailable(f"placing {spec.name!r} took the whole placement time")
        try:
            reply = await self.agent_of(address).ask(m.Activate(data, budget * 0.8), timeout=budget)
        except (AskTimeout, MemberUnreachable) as exc:
            raise SpawnOutcomeUnknown(
                f"member {address} did not say whether it started {spec.name!r} ({exc}); "
                "spawn it again the same way to find out"
            ) from exc
        except (ActorNotFound, ActorStopped) as exc:  # no agent there: nothing started
            await self._unreserve(spec)
            raise MembershipUnavailable(f"member {address} cannot host actors now: {exc}") from exc
        try:
            return expect(reply, m.Activated).epoch
        except CfactorError:
            await self._unreserve(spec)
            raise

    async def _unreserve(self, spec: ActorSpec) -> None:
        with contextlib.suppress(CfactorError):  # reservations also expire
            await self._ask_placer(m.Unreserve(spec.name, spec.token))

    async def remove(self, name: str) -> None:
        """Forget ``name`` (so it is not re-placed), then stop its activation."""
        await self.membership.delete_record(SPECS, name)
        await self._ask_placer(m.Forget(name))
        current = await self.membership.lookup(name)  # the store, not a lagging view
        if current is not None:
            check_reply(
                await self.agent_of(current.address).ask(
                    m.Deactivate(name), timeout=self.agent_timeout_s
                )
            )

    async def _ask_placer(self, message: Any, timeout: float | None = None) -> Any:
        """Ask the placement leader; its answer, or the typed error it answered with.

        Raises:
            MembershipUnavailable: No leader, or it cannot be reached.
        """
        placer = await self._placer()
        try:
            reply = await placer.ask(message, timeout=timeout or self.config.placement_timeout_s)
        except (MemberUnreachable, ActorNotFound, ActorStopped) as exc:
            raise MembershipUnavailable(f"the placement leader is unreachable: {exc}") from exc
        check_reply(reply)
        return reply

    async def _placer(self) -> ActorRef:
        clock = self.system.clock
        deadline = clock.now() + self.config.request_timeout_s
        while True:
            leader = self.membership.leader(PLACEMENT)
            member = self.membership.members().get(leader) if leader else None
            if member is not None:
                if member.member_id == self.member_id:
                    try:
                        return self.system.ref(PLACER)
                    except ActorNotFound:
                        pass  # elected, still starting it
                else:
                    return self.system.ref(PLACER, at=member.address)
            if clock.now() >= deadline:
                raise MembershipUnavailable("no placement leader in the cluster right now")
            await self.changed_or(0.05)

    async def _lead_when_possible(self) -> None:
        """Campaign whenever nobody leads placement; run the placement actor if we win."""
        while not self._closed:
            try:
                leader = self.membership.leader(PLACEMENT)
                if leader is None and await self.membership.campaign(PLACEMENT):
                    leader = self.member_id
                if leader == self.member_id and self.hosting.cell(PLACER) is None:
                    # Elected now, or its placement actor was given up on: run one.
                    await self.system.spawn_service(PlacementActor, self, name=PLACER)
            except MembershipUnavailable:
                pass  # the store is away: existing actors keep talking; retry later
            except NameTaken:
                pass  # still running from an earlier term
            except CfactorError as exc:
                log.warning("placement leadership: %r", exc)
            if self.membership.leader(PLACEMENT) != self.member_id:
                self._stop_local(PLACER)
            await self.changed_or(0.5)

    # -- replicas -----------------------------------------------------------------------------

    async def place_replica(self, group: ReplicaSet) -> ActorRef | None:
        """Start a replica of ``group`` on the member placement picks (least loaded);
        None means here. The group, its backlog and its autoscaler stay here.

        Raises:
            ActorStartFailed: The replica's constructor or ``on_start`` raised there.
            MembershipUnavailable: A placement constraint no member meets now.
        """
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
                await self._ask_placer(
                    m.ChooseReplica(spec.placement), self.config.request_timeout_s
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
        if member_id == self.member_id or address == self.system.address:
            return None
        try:
            reply = await self.agent_of(address).ask(
                m.HostReplica(data, group.in_flight, self.system.address),
                timeout=self.config.placement_timeout_s,
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
        return self.system.ref(hosted.name, at=hosted.address)

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
        ref = await self.hosting.spawn_at_root(  # not by the agent: see _claim_and_start
            cls, spec.args, spec.kwargs, name=None, restart=spec.restart, in_flight=in_flight
        )
        name = ref.name
        self.hosted_replicas[name] = (spec.name, owner)
        self.hosting.on_stopped(ref, lambda: self.hosted_replicas.pop(name, None) and None)
        return (self.system.address, name)

    async def _report_forever(self) -> None:
        """Every ``load_report_interval_s``: report this member's replica load to the
        placement actor (over the transport, not the store), and forget replicas
        whose other end (owner or host) has left the cluster."""
        interval = self.config.load_report_interval_s
        while True:
            await self.system.clock.sleep(interval)
            self._forget_departed()
            try:
                placer = await self._placer()
                await placer.tell(
                    m.LoadReport(self.member_id, self.replicas_here(), self.group_loads())
                )
            except CfactorError as exc:
                log.debug("load report not sent: %r", exc)

    def replicas_here(self) -> int:
        """Replicas running on this member, for this member's groups or others'."""
        local = sum(
            1
            for group in self.hosting.groups.values()
            for replica in group.replicas
            if isinstance(replica.cell, ActorCell)
        )
        return local + len(self.hosted_replicas)

    def group_loads(self) -> dict[str, list[int]]:
        return {name: list(group.load()) for name, group in self.hosting.groups.items()}

    def _forget_departed(self) -> None:
        addresses = {m.address for m in self.membership.members().values()}
        if not addresses:
            return  # no view of the cluster right now: judge nobody
        for name, (group_name, owner) in list(self.hosted_replicas.items()):
            if owner not in addresses:
                log.warning(
                    "the owner of %r at %s left: stopping its replica %s", group_name, owner, name
                )
                self.hosted_replicas.pop(name, None)
                self._stop_local(name)
        for group in self.hosting.groups.values():
            for replica in group.replicas:
                cell = replica.cell
                if isinstance(cell, RemoteReplica) and cell.address not in addresses:
                    cell.lost("its member left the cluster")

    # -- hosting ------------------------------------------------------------------------------

    async def activate_here(self, spec: ActorSpec, budget_s: float) -> tuple[str, str, int]:
        """Claim ``spec.name`` here and start it, within ``budget_s`` or not at all.

        A retry of the same spawn (same token) finds the activation, or waits for the
        attempt still in progress.

        Raises:
            NameTaken: Another spawn holds the name.
            MembershipUnavailable: The store cannot be reached, or answered too late
                (a claim made after the caller gave up is released, never used).
            ActorStartFailed: Its constructor or ``on_start`` raised.
            ConfigError: Its class cannot be loaded here.
        """
        name = spec.name
        pending = self.activating.get(name)
        if pending is not None:
            if pending[0] != spec.token:
                raise NameTaken(f"cluster actor {name!r} is being started here")
            try:
                async with self.system.clock.timeout(budget_s):
                    return await asyncio.shield(pending[1])
            except TimeoutError:
                raise MembershipUnavailable(f"{name!r} is still starting here") from None
        hosted = self.hosted.get(name)
        if hosted is not None:
            if self.tokens.get(name) == spec.token:
                return (hosted.member_id, hosted.address, hosted.epoch)
            raise NameTaken(f"cluster actor {name!r} is already running")
        outcome: asyncio.Future[tuple[str, str, int]] = asyncio.get_running_loop().create_future()
        self.activating[name] = (spec.token, outcome)
        try:
            result = await self._activate(spec, self.system.clock.now() + budget_s)
        except BaseException as exc:
            outcome.set_exception(exc)
            outcome.exception()  # retrieved: nobody else may be waiting
            raise
        else:
            outcome.set_result(result)
            return result
        finally:
            del self.activating[name]

    async def _activate(self, spec: ActorSpec, deadline: float) -> tuple[str, str, int]:
        name = spec.name
        cls = spec.load_class()
        arriving: collections.deque[tuple[int, Any]] = collections.deque()
        self._arriving[name] = (self.seen_epochs.get(name, 0), arriving)
        try:
            return await self._claim_and_start(spec, cls, deadline, arriving)
        finally:
            del self._arriving[name]
            for epoch, payload in arriving:  # it did not start
                self.system.dead_letter(f"{name}@{epoch}", payload, "its activation failed")

    async def _claim_and_start(
        self,
        spec: ActorSpec,
        cls: type[Actor],
        deadline: float,
        arriving: collections.deque[tuple[int, Any]],
    ) -> tuple[str, str, int]:
        name = spec.name
        activation = await self.membership.claim(name)
        if activation is None:
            found = await self.membership.lookup(name)
            if found is None or found.member_id != self.member_id or name in self.hosted:
                raise NameTaken(f"cluster actor {name!r} is already running")
            # Our own claim with nothing behind it (an earlier attempt whose claim
            # reached the store after it gave up): this activation may use it.
            activation = found
        if self.system.clock.now() > deadline:
            await self._release(activation)  # if this fails, the orphan check will
            raise MembershipUnavailable(
                f"claiming {name!r} took longer than the spawn could wait: released, not started"
            )
        # Supervised by the root, not by this agent: the agent's restart budget must
        # not be shared by every cluster actor on the member.
        try:
            ref = await self.hosting.spawn_at_root(
                cls, spec.args, spec.kwargs, name=name, restart=spec.restart
            )
        except BaseException:
            await self._release(activation)
            raise
        # Hand over what arrived while it started, in order; then accept its epoch
        # directly (no await between the last hand-over and that).
        while arriving:
            epoch, payload = arriving.popleft()
            if epoch == activation.epoch:
                await ref.tell(payload)
            else:
                self.system.dead_letter(f"{name}@{epoch}", payload, "not a current activation")
        self.epochs[name] = activation.epoch
        self.hosted[name] = activation
        self.tokens[name] = spec.token
        cell = self.hosting.cell_of(ref)
        if cell is not None:
            self.routes[name] = cell
            self.hosting.on_stopped(ref, lambda: self._local_stopped(name, activation))
        self._changed.set()
        return (activation.member_id, activation.address, activation.epoch)

    async def _release_orphans_forever(self) -> None:
        """Once a second: release our claims with no activation behind them (a claim
        that reached the store after its spawn gave up, a release that failed), when
        two checks in a row found the same one: within seconds, not at lease expiry."""
        while True:
            await self.system.clock.sleep(1.0)
            if self._recovering or not self.membership.joined:
                self._orphan_suspects.clear()
                continue
            now: dict[str, int] = {}
            for name, activation in self.membership.activations().items():
                if (
                    activation.member_id == self.member_id
                    and name not in self.hosted
                    and name not in self.activating
                ):
                    now[name] = activation.epoch
                    if self._orphan_suspects.get(name) == activation.epoch:
                        log.warning("releasing %r: claimed here with no activation", name)
                        self.orphans_released += 1
                        await self._release(activation)
                        del now[name]
            self._orphan_suspects = now

    async def deactivate_here(self, name: str) -> None:
        cell = self.hosting.cell(name)
        if cell is not None and name in self.hosted:
            await cell.stop()

    def _local_stopped(self, name: str, activation: Activation) -> None:
        """A hosted actor stopped for good: give its name back to the cluster."""
        if self.hosted.get(name) is activation:
            self.hosted.pop(name)
            self.tokens.pop(name, None)
        if self.epochs.get(name) == activation.epoch:
            del self.epochs[name]
        if not self._closed and not self._leaving:  # leaving releases them itself
            self._background(self._release(activation))

    async def _release(self, activation: Activation) -> None:
        try:
            await self.membership.release(activation)
        except CfactorError as exc:
            log.warning("could not release %r: %r (its lease will)", activation.name, exc)

    def _stop_local(self, name: str) -> None:
        self.hosting.stop_local(name)

    def _fence(self) -> None:
        """Our lease is gone: another activation of our names may be accepted anywhere
        now, so ours must stop before they could both answer."""
        log.error(
            "member %s lost its lease: stopping its %d cluster actors",
            self.member_id,
            len(self.hosted),
        )
        for name in list(self.hosted):
            self.hosted.pop(name)
            self.epochs.pop(name, None)
            self.routes.pop(name, None)
            self._stop_local(name)
        self._stop_local(PLACER)
        if not self._closed:
            self._background(self._rejoin_forever())

    def stats(self) -> dict[str, Any]:
        """This member's figures for ``cfactor status`` (the runtime's own ``$`` services
        are not counted as actors)."""
        system = self.system
        named = []
        actors = depth = 0
        for name, cell in system.hosting.cells.items():
            if name.startswith("$") and not name[1:].isdigit():
                continue  # a runtime service, not a user's actor
            actors += 1
            depth += cell.depth
            activation = self.hosted.get(name)
            if activation is not None:
                named.append(
                    {
                        "name": name,
                        "depth": cell.depth,
                        "restarts": cell.restarts,
                        "epoch": activation.epoch,
                    }
                )
        stats = system.statistics()
        return {
            "member_id": self.member_id,
            "address": system.address,
            "actors": actors,
            "depth": depth,
            "named": named,
            "groups": [
                group_stats(group, system.clock.now()) for group in system.hosting.groups.values()
            ],
            "dead_letters": stats.dead_letters,
            "restarts": stats.restarts,
            "hosted_replicas": len(self.hosted_replicas),
            "orphan_claims_released": self.orphans_released,
            "held_tells_dropped": self.held_dropped,
            "leader": self.membership.leader(PLACEMENT) == self.member_id,
        }
