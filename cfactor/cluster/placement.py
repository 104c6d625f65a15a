"""The placement actor (``$placement``, on the elected leader only): where new named
actors and replicas go, and re-placing the named actors whose member died.

It owns the cluster's view of named actors' specs (rebuilt from the store by each new
leader), the spawn reservations (step one of the spawn protocol, ``cfactor.cluster.spawn``),
the members that said they are leaving, the load reports, and the reconcile loop
that starts one re-placement task per vanished name. The choice itself is the pure
``cfactor.cluster.policy.choose_member``. From its member it uses the membership view,
the outage grace (``ClusterMember.ride.may_replace``), the directory's watch
(``losses``, ``seen_epochs``, ``changed_or``) and the agents of other members.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial
from typing import TYPE_CHECKING, Any

from cfactor._core.actor import Actor
from cfactor.abc import Activation
from cfactor.cluster import messages as m
from cfactor.cluster.messages import SPECS, expect, refusal
from cfactor.cluster.policy import choose_member
from cfactor.cluster.spec import ActorSpec
from cfactor.errors import CfactorError, MembershipUnavailable, NameTaken

if TYPE_CHECKING:
    from cfactor.abc import MemberInfo
    from cfactor.cluster.runtime import ClusterMember

log = logging.getLogger("cfactor.cluster")


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
        if not self.runtime.ride.may_replace():
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
            if self.runtime.directory.seen_epochs.get(name, 0) < epoch and now - placed_at < grace:
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
            await self.runtime.directory.changed_or(1.0)
            losses = self.runtime.directory.losses
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
