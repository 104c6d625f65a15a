"""Name resolution on a member: where each cluster actor's messages go, and what an
inbound ``name@epoch`` means here.

``Directory`` owns the member's route table (name -> the local cell, or the remote
target ``name@epoch``), kept current by the store's activation watch, and the refs that
follow a name (``ClusterTarget``). It is the core's ``NameResolver`` for this member
(``system.hosting.resolver``): ``admit`` accepts the current epoch of an activation
hosted here (and the earlier ones a re-claim keeps, ``ClusterMember.epoch_aliases``),
and lets the spawn protocol and the graceful leave take tells they hold. It also finds
the placement leader's actor. What the watch reports about our own claims it passes to
the parts that act on them (riding through an outage, fencing).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from cfactor._core.ref import ActorRef
from cfactor.abc import Admission
from cfactor.cluster.messages import PLACEMENT, PLACER
from cfactor.errors import ActorNotFound, AskTimeout, MembershipUnavailable

if TYPE_CHECKING:
    from cfactor._core.mailbox import MailboxStatistics
    from cfactor._core.ref import Target
    from cfactor.abc import Activation, RefAddress
    from cfactor.cluster.runtime import ClusterMember


class ClusterTarget:
    """The far end of a ref to a cluster actor by name: it follows the activation.

    Each send looks the name up in the member's route table (kept current by the
    store's watch): the local cell if the actor lives here, else a remote target
    addressed to ``name@epoch``. While the name has no activation (its member just
    died and it is being re-placed), sends wait for one, up to the ask timeout.
    """

    __slots__ = ("directory", "name", "ref")

    uid = 0

    def __init__(self, directory: Directory, name: str) -> None:
        self.directory = directory
        self.name = name
        self.ref = ActorRef(self)

    @property
    def is_alive(self) -> bool:
        return self.name in self.directory.routes

    def describe(self) -> str:
        activation = self.directory.member.membership.activations().get(self.name)
        where = f"@{activation.address} epoch={activation.epoch}" if activation else " (placing)"
        return f"{self.name}{where} cluster"

    def wire_address(self) -> RefAddress:
        target = self.directory.routes.get(self.name)
        if target is None:
            raise ActorNotFound(f"cluster actor {self.name!r} has no activation now")
        return target.wire_address()

    def statistics(self) -> MailboxStatistics:
        target = self.directory.routes.get(self.name)
        if target is None:
            raise ActorNotFound(f"cluster actor {self.name!r} has no activation now")
        return target.statistics()

    async def tell(self, message: Any) -> None:
        target = self.directory.routes.get(self.name) or await self.directory.route(self.name)
        await target.tell(message)

    def tell_nowait(self, message: Any) -> None:
        target = self.directory.routes.get(self.name)
        if target is None:
            raise ActorNotFound(f"cluster actor {self.name!r} has no activation now")
        target.tell_nowait(message)

    async def ask(self, message: Any, timeout: float | None) -> Any:
        target = self.directory.routes.get(self.name)
        if target is not None:
            return await target.ask(message, timeout)
        # No activation now: waiting for one spends the same budget as the answer.
        system = self.directory.member.system
        clock = system.clock
        budget = system.ask_timeout_s if timeout is None else timeout
        started = clock.now()
        target = await self.directory.route(self.name, budget)
        remaining = budget - (clock.now() - started)
        if remaining <= 0:
            raise AskTimeout(f"cluster actor {self.name!r} did not answer within {budget:g} s")
        return await target.ask(message, remaining)

    async def stop(self) -> None:
        await self.directory.member.spawner.remove(self.name)


class Directory:
    """The member's routes and the ``NameResolver`` of its activations (see the module)."""

    def __init__(self, member: ClusterMember) -> None:
        self.member = member
        #: name -> where its messages go now (local cell, or remote "name@epoch").
        self.routes: dict[str, Target] = {}
        self._targets: dict[str, ClusterTarget] = {}
        self._changed = asyncio.Event()
        #: Activations seen vanishing so far: placement reconciles when it grows.
        self.losses = 0
        #: The newest epoch the watch has shown per name.
        self.seen_epochs: dict[str, int] = {}
        #: Whether ``admit`` may hold or forward tells (``_redirect``); off once left.
        self.redirecting = False

    # -- the core's NameResolver ------------------------------------------------------------

    def admit(self, target: str, payload: Any, *, tell: bool) -> str | Admission:
        """``NameResolver.admit``: an activation here is addressed as ``name@epoch``;
        another epoch of it is stale, unless the tell is held (``_redirect``)."""
        name, at, epoch = target.rpartition("@")
        if not at or not epoch.isdigit():
            return Admission.UNKNOWN
        number = int(epoch)
        member = self.member
        if member.epochs.get(name) == number or number in member.epoch_aliases.get(name, ()):
            return name
        if tell and self.redirecting and self._redirect(name, number, payload):
            return Admission.TAKEN
        return Admission.STALE

    def hosts(self, name: str) -> bool:
        """``NameResolver.hosts``: ``name`` is an activation of ours (its refs follow it)."""
        return name in self.member.epochs

    def _redirect(self, name: str, epoch: int, payload: Any) -> bool:
        """Hold a tell to an activation of ours that is starting (until it runs) or
        that we are handing over (until the new one runs)."""
        member = self.member
        return member.activations.hold_arriving(name, epoch, payload) or member.leave.hold(
            name, epoch, payload
        )

    # -- routing ------------------------------------------------------------------------------

    def resolve(self, name: str) -> ActorRef | None:
        """A ref that follows ``name``, or None if neither the routes nor the store's
        view know it."""
        target = self._targets.get(name)
        if target is None:
            if name not in self.routes and name not in self.member.membership.activations():
                return None
            target = self._targets[name] = ClusterTarget(self, name)
        return target.ref

    def follow(self, name: str) -> ActorRef:
        """A ref that follows ``name``, known or not yet (a spawn whose activation the
        watch has not shown yet)."""
        ref = self.resolve(name)
        if ref is None:
            self._targets[name] = ClusterTarget(self, name)
            ref = self._targets[name].ref
        return ref

    async def route(self, name: str, timeout: float | None = None) -> Target:
        """Where ``name``'s messages go, waiting up to ``timeout`` for an activation.

        Raises:
            ActorNotFound: It has none within ``timeout`` (the system's ask timeout).
        """
        target = self.routes.get(name)
        if target is not None:
            return target
        system = self.member.system
        budget = system.ask_timeout_s if timeout is None else timeout
        clock = system.clock
        deadline = clock.now() + budget
        while (target := self.routes.get(name)) is None:
            remaining = deadline - clock.now()
            if remaining <= 0:
                raise ActorNotFound(
                    f"cluster actor {name!r} has no activation (waited {budget:g} s)"
                )
            await self.changed_or(remaining)
        return target

    def activation_changed(self, name: str, activation: Activation | None) -> None:
        """The watch: ``name`` has a new activation, or none (its claim vanished)."""
        member = self.member
        if activation is None:
            self.losses += 1
            if name in member.hosted and member.ride.claim_vanished():
                return  # riding through: it is re-claimed under a new lease
            self.routes.pop(name, None)
            if name in member.hosted:  # ours vanished from the store: stop it (fencing)
                member.lifecycle.fence_name(name)
        elif activation.member_id == member.member_id:
            self.seen_epochs[name] = activation.epoch
            cell = member.hosting.cell(name)
            if cell is not None:
                self.routes[name] = cell
        else:
            self.seen_epochs[name] = activation.epoch
            self.routes[name] = member.hosting.target(
                activation.address, f"{name}@{activation.epoch}"
            )
        self._changed.set()

    def changed(self) -> None:
        """Wake whoever waits in ``changed_or`` (the view, or our own activations, changed)."""
        self._changed.set()

    async def changed_or(self, timeout: float) -> None:
        """Wait until the membership view changes, or ``timeout`` seconds."""
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            async with self.member.system.clock.timeout(timeout):
                await self._changed.wait()

    async def placer(self) -> ActorRef:
        """The placement leader's actor, waiting up to ``request_timeout_s`` for one.

        Raises:
            MembershipUnavailable: No leader in the cluster right now.
        """
        member = self.member
        system = member.system
        clock = system.clock
        deadline = clock.now() + member.config.request_timeout_s
        while True:
            leader = member.membership.leader(PLACEMENT)
            info = member.membership.members().get(leader) if leader else None
            if info is not None:
                if info.member_id == member.member_id:
                    try:
                        return system.ref(PLACER)
                    except ActorNotFound:
                        pass  # elected, still starting it
                else:
                    return system.ref(PLACER, at=info.address)
            if clock.now() >= deadline:
                raise MembershipUnavailable("no placement leader in the cluster right now")
            await self.changed_or(0.05)
