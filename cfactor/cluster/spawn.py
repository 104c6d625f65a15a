"""The spawn protocol: reserve -> activate -> confirm (docs/cluster.md, "Spawning").

``Spawner`` is the calling side, on the member where ``system.spawn(..., name=)`` runs:
it asks ``$placement`` to reserve a member (``Reserve``), asks that member's agent to
activate (``Activate``, within a budget), stores the spec and confirms (``Confirm``);
it also removes a named actor for good (``ref.stop()``). ``Activations`` is the hosting
side, behind the ``$cluster`` agent: it claims the name in the store (compare-and-set,
``claim_and_start``), starts the actor only if the claim came back within the budget,
holds tells that arrive before the actor runs, gives the name back when the actor
stops, and releases orphan claims (``release_orphans_forever``). The activations both
sides agree on are the member's shared table (``ClusterMember.hosted``, ``epochs``,
``tokens``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from cfactor.cluster import messages as m
from cfactor.cluster.messages import SPECS, check_reply, expect
from cfactor.errors import (
    ActorNotFound,
    ActorStopped,
    AskTimeout,
    CfactorError,
    MembershipUnavailable,
    MemberUnreachable,
    NameTaken,
    SpawnOutcomeUnknown,
)

if TYPE_CHECKING:
    from cfactor._core.actor import Actor
    from cfactor._core.ref import ActorRef
    from cfactor.abc import Activation
    from cfactor.cluster.runtime import ClusterMember
    from cfactor.cluster.spec import ActorSpec

log = logging.getLogger("cfactor.cluster")


class Spawner:
    """The calling side of the spawn protocol (see the module)."""

    def __init__(self, member: ClusterMember) -> None:
        self.member = member

    async def spawn(self, spec: ActorSpec) -> ActorRef:
        """``ClusterRuntime.spawn`` of ``spec``: reserve, activate, confirm; the ref that
        follows it.

        Raises:
            SpawnOutcomeUnknown: The actor may be running (see ``activate_on``), or it
                started and its spec could not be stored.
            NameTaken, ActorStartFailed, ConfigError, MembershipUnavailable: It did not
                start, and never will.
        """
        member = self.member
        name = spec.name
        # The token makes a retry of this same spawn find the earlier attempt.
        spec = spec.with_token(member.system.address)  # the member's id changes on a rejoin
        data = spec.encode()  # refuse what cannot cross the wire before asking anyone
        clock = member.system.clock
        started = clock.now()
        # 1. Reserve: placement only chooses (it never waits on a member or the store).
        reply = await self.ask_placer(m.Reserve(data))
        if not isinstance(reply, m.AlreadyPlaced):
            placed = expect(reply, m.Placed)
            member_id, address = placed.member_id, placed.address
            # 2. Activate: that member claims the name (compare-and-set) and starts it.
            budget = member.config.placement_timeout_s - (clock.now() - started)
            epoch = await self.activate_on(spec, data, address, budget)
            # 3. Confirm: store the spec (so it is re-placed if its member dies), then
            # tell placement. Stored only now: a spec of an actor that never started
            # would be placed later by a reconcile, after the spawn raised.
            try:
                await member.membership.put_record(SPECS, name, data)
            except CfactorError as exc:
                raise SpawnOutcomeUnknown(
                    f"{name!r} started on {address} (member {member_id}) but its spec could "
                    f"not be stored ({exc}); spawn it again the same way to make sure"
                ) from exc
            try:
                await self.ask_placer(m.Confirm(data, epoch))
            except CfactorError as exc:  # stored: the next leader reads it
                log.warning("placement did not hear that %r started: %r", name, exc)
        return member.directory.follow(name)

    async def activate_on(self, spec: ActorSpec, data: bytes, address: str, budget: float) -> int:
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
            reply = await self.member.agent_of(address).ask(
                m.Activate(data, budget * 0.8), timeout=budget
            )
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
            await self.ask_placer(m.Unreserve(spec.name, spec.token))

    async def remove(self, name: str) -> None:
        """Forget ``name`` (so it is not re-placed), then stop its activation."""
        member = self.member
        await member.membership.delete_record(SPECS, name)
        await self.ask_placer(m.Forget(name))
        current = await member.membership.lookup(name)  # the store, not a lagging view
        if current is not None:
            check_reply(
                await member.agent_of(current.address).ask(
                    m.Deactivate(name), timeout=member.agent_timeout_s
                )
            )

    async def ask_placer(self, message: Any, timeout: float | None = None) -> Any:
        """Ask the placement leader; its answer, or the typed error it answered with.

        Raises:
            MembershipUnavailable: No leader, or it cannot be reached.
        """
        placer = await self.member.directory.placer()
        try:
            reply = await placer.ask(
                message, timeout=timeout or self.member.config.placement_timeout_s
            )
        except (MemberUnreachable, ActorNotFound, ActorStopped) as exc:
            raise MembershipUnavailable(f"the placement leader is unreachable: {exc}") from exc
        check_reply(reply)
        return reply


class Activations:
    """The hosting side of the spawn protocol (see the module)."""

    def __init__(self, member: ClusterMember) -> None:
        self.member = member
        #: Activations in progress here: name -> (token, outcome).
        self.activating: dict[str, tuple[str, asyncio.Future[tuple[str, str, int]]]] = {}
        #: Activations starting here: tells to them that arrive before they run (peers
        #: may see the claim in their watch before our claim call returns) are held
        #: here and handed to the actor once started. name -> (epochs above, held).
        self._arriving: dict[str, tuple[int, collections.deque[tuple[int, Any]]]] = {}
        #: Our claims with no activation behind them at the last check: name -> epoch.
        self._orphan_suspects: dict[str, int] = {}
        #: Claims released because no activation was behind them (for tests, status).
        self.orphans_released = 0

    def hold_arriving(self, name: str, epoch: int, payload: Any) -> bool:
        """Hold a tell to ``name@epoch`` if that is an activation starting here (the
        directory's ``admit``); it is handed over once the actor runs."""
        arriving = self._arriving.get(name)
        if arriving is not None and epoch > arriving[0]:
            arriving[1].append((epoch, payload))
            return True
        return False

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
        member = self.member
        name = spec.name
        pending = self.activating.get(name)
        if pending is not None:
            if pending[0] != spec.token:
                raise NameTaken(f"cluster actor {name!r} is being started here")
            try:
                async with member.system.clock.timeout(budget_s):
                    return await asyncio.shield(pending[1])
            except TimeoutError:
                raise MembershipUnavailable(f"{name!r} is still starting here") from None
        hosted = member.hosted.get(name)
        if hosted is not None:
            if member.tokens.get(name) == spec.token:
                return (hosted.member_id, hosted.address, hosted.epoch)
            raise NameTaken(f"cluster actor {name!r} is already running")
        outcome: asyncio.Future[tuple[str, str, int]] = asyncio.get_running_loop().create_future()
        self.activating[name] = (spec.token, outcome)
        try:
            result = await self._activate(spec, member.system.clock.now() + budget_s)
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
        self._arriving[name] = (self.member.directory.seen_epochs.get(name, 0), arriving)
        try:
            return await self._claim_and_start(spec, cls, deadline, arriving)
        finally:
            del self._arriving[name]
            for epoch, payload in arriving:  # it did not start
                self.member.system.dead_letter(f"{name}@{epoch}", payload, "its activation failed")

    async def _claim_and_start(
        self,
        spec: ActorSpec,
        cls: type[Actor],
        deadline: float,
        arriving: collections.deque[tuple[int, Any]],
    ) -> tuple[str, str, int]:
        member = self.member
        name = spec.name
        activation = await member.membership.claim(name)
        if activation is None:
            found = await member.membership.lookup(name)
            if found is None or found.member_id != member.member_id or name in member.hosted:
                raise NameTaken(f"cluster actor {name!r} is already running")
            # Our own claim with nothing behind it (an earlier attempt whose claim
            # reached the store after it gave up): this activation may use it.
            activation = found
        if member.system.clock.now() > deadline:
            await self.release(activation)  # if this fails, the orphan check will
            raise MembershipUnavailable(
                f"claiming {name!r} took longer than the spawn could wait: released, not started"
            )
        # Supervised by the root, not by this agent: the agent's restart budget must
        # not be shared by every cluster actor on the member.
        try:
            ref = await member.hosting.spawn_at_root(
                cls, spec.args, spec.kwargs, name=name, restart=spec.restart
            )
        except BaseException:
            await self.release(activation)
            raise
        # Hand over what arrived while it started, in order; then accept its epoch
        # directly (no await between the last hand-over and that).
        while arriving:
            epoch, payload = arriving.popleft()
            if epoch == activation.epoch:
                await ref.tell(payload)
            else:
                member.system.dead_letter(f"{name}@{epoch}", payload, "not a current activation")
        member.epochs[name] = activation.epoch
        member.hosted[name] = activation
        member.tokens[name] = spec.token
        cell = member.hosting.cell_of(ref)
        if cell is not None:
            member.directory.routes[name] = cell
            member.hosting.on_stopped(ref, lambda: self.local_stopped(name, activation))
        member.directory.changed()
        return (activation.member_id, activation.address, activation.epoch)

    async def release_orphans_forever(self) -> None:
        """Once a second: release our claims with no activation behind them (a claim
        that reached the store after its spawn gave up, a release that failed), when
        two checks in a row found the same one: within seconds, not at lease expiry."""
        member = self.member
        while True:
            await member.system.clock.sleep(1.0)
            if member.ride.recovering or not member.membership.joined:
                self._orphan_suspects.clear()
                continue
            now: dict[str, int] = {}
            for name, activation in member.membership.activations().items():
                if (
                    activation.member_id == member.member_id
                    and name not in member.hosted
                    and name not in self.activating
                ):
                    now[name] = activation.epoch
                    if self._orphan_suspects.get(name) == activation.epoch:
                        log.warning("releasing %r: claimed here with no activation", name)
                        self.orphans_released += 1
                        await self.release(activation)
                        del now[name]
            self._orphan_suspects = now

    async def deactivate_here(self, name: str) -> None:
        cell = self.member.hosting.cell(name)
        if cell is not None and name in self.member.hosted:
            await cell.stop()

    def local_stopped(self, name: str, activation: Activation) -> None:
        """A hosted actor stopped for good: give its name back to the cluster."""
        member = self.member
        if member.hosted.get(name) is activation:
            member.hosted.pop(name)
            member.tokens.pop(name, None)
        if member.epochs.get(name) == activation.epoch:
            del member.epochs[name]
        if not member.closed and not member.leave.leaving:  # leaving releases them itself
            member.background(self.release(activation))

    async def release(self, activation: Activation) -> None:
        try:
            await self.member.membership.release(activation)
        except CfactorError as exc:
            log.warning("could not release %r: %r (its lease will)", activation.name, exc)
