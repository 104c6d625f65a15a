"""Replicated actors: one ref, several replicas pulling from one bounded backlog.

Messages to a replicated actor wait in the group's backlog (a ``Mailbox``, with its
bound and its blocked senders); each replica holds at most ``in_flight`` of them at a
time and gets the next one when it finishes one. So:

- a replica added now starts on the backlog that is already waiting (CloudFlow's
  workers pull tasks; Ray Serve's router holds queued requests likewise), instead of
  each replica owning a deep mailbox nobody else can drain;
- removing a replica loses nothing: it stops getting messages, finishes the few it
  holds, then stops (drained scale-in);
- the depth the autoscaler reads is the whole backlog: queued, held by replicas,
  in progress, and waiting senders' messages.

The replica count is changed by ``scale_to``; the policy that decides it lives
outside the core (``cfactor.autoscale``) and reaches the group through
``cf.abc.ReplicaGroup``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from functools import partial
from typing import TYPE_CHECKING, Any

from cfactor._core.cell import ALIVE, STOPPING, ActorCell
from cfactor._core.mailbox import Mailbox, MailboxStatistics
from cfactor._core.ref import ActorRef
from cfactor.abc import RefAddress
from cfactor.errors import ActorStopped, AskTimeout, ConfigError, MailboxFull

if TYPE_CHECKING:
    from cfactor._core.actor import Actor
    from cfactor._core.supervision import Restart
    from cfactor._core.system import ActorSystem

log = logging.getLogger("cfactor.replicas")


class Replica:
    """One replica of a group: its cell and how many backlog messages it holds."""

    __slots__ = ("cell", "draining", "held")

    def __init__(self, cell: ActorCell) -> None:
        self.cell = cell
        self.held = 0
        self.draining = False


class Done:
    """Where a replica's answer goes: frees the replica's slot, then answers the sender."""

    __slots__ = ("group", "replica", "reply")

    def __init__(self, group: ReplicaSet, replica: Replica, reply: Any) -> None:
        self.group = group
        self.replica = replica
        self.reply = reply

    def done(self) -> bool:
        return False  # the slot must be freed whatever became of the sender

    def set_result(self, result: Any) -> None:
        reply = self.reply
        if reply is not None and not reply.done():
            reply.set_result(result)
        self.group.finished(self.replica)

    def set_exception(self, error: BaseException) -> None:
        reply = self.reply
        if reply is None:
            if isinstance(error, ActorStopped):  # a tell the stopping replica never handled
                self.group.system.dead_letter(self.group.name, None, "its replica stopped")
        elif not reply.done():
            reply.set_exception(error)
        self.group.finished(self.replica)


def _ask_timeout(name: str, timeout: float) -> AskTimeout:
    return AskTimeout(f"replicated actor {name!r} did not answer within {timeout:g} s")


class ReplicaSet(Mailbox):
    """A replicated actor; its ``ref`` is the one users hold (duck-typed like a cell)."""

    __slots__ = (
        "args",
        "cls",
        "controller",
        "in_flight",
        "kwargs",
        "name",
        "ref",
        "replica_restart",
        "replicas",
        "state",
        "system",
        "uid",
    )

    def __init__(
        self,
        system: ActorSystem,
        cls: type[Actor],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        name: str,
        uid: int,
        capacity: int,
        in_flight: int,
        restart: Restart,
    ) -> None:
        if in_flight < 1:
            raise ConfigError(f"in_flight must be at least 1, got {in_flight}")
        Mailbox.__init__(self, capacity)
        self.system = system
        self.cls = cls
        self.args = args
        self.kwargs = kwargs
        self.name = name
        self.uid = uid
        self.in_flight = in_flight
        self.replica_restart = restart
        self.replicas: list[Replica] = []
        self.state = ALIVE
        self.controller: Any = None
        self.ref = ActorRef(self)

    # -- Target ---------------------------------------------------------------------------------

    @property
    def is_alive(self) -> bool:
        return self.state < STOPPING

    def describe(self) -> str:
        active = sum(1 for r in self.replicas if not r.draining)
        state = "alive" if self.is_alive else "stopped"
        return (
            f"{self.name}#{self.uid} {state} replicas={active} backlog={self.depth}/{self.capacity}"
        )

    def wire_address(self) -> RefAddress:
        return RefAddress(self.system.address, self.name, self.uid)

    async def tell(self, message: Any) -> None:
        if self.state >= STOPPING:
            self.system.dead_letter(self.name, message, "the replicated actor is stopped")
            return
        if self.waiters or (self.queue is not None and len(self.queue) >= self.capacity):
            await self.append_when_room((message, None), self.system.loop, self.system.clock)
        else:
            self.append((message, None))
        self.dispatch()

    def tell_nowait(self, message: Any) -> None:
        if self.state >= STOPPING:
            self.system.dead_letter(self.name, message, "the replicated actor is stopped")
            return
        if self.waiters or (self.queue is not None and len(self.queue) >= self.capacity):
            raise MailboxFull(f"backlog of {self.name!r} is full ({self.capacity} messages)")
        self.append((message, None))
        self.dispatch()

    async def ask(self, message: Any, timeout: float | None) -> Any:
        system = self.system
        if timeout is None:
            timeout = system.ask_timeout_s
        elif not timeout > 0:
            raise ConfigError(f"ask timeout must be a positive number of seconds, got {timeout!r}")
        if self.state >= STOPPING:
            raise ActorStopped(f"replicated actor {self.name!r} is stopped")
        future: asyncio.Future[Any] = system.loop.create_future()
        remaining = timeout
        if self.waiters or (self.queue is not None and len(self.queue) >= self.capacity):
            started = system.clock.now()
            await self.append_when_room((message, future), system.loop, system.clock, timeout)
            remaining = timeout - (system.clock.now() - started)
        else:
            self.append((message, future))
        self.dispatch()
        if timeout == math.inf:
            return await future
        key = system.deadlines.add(future, remaining, partial(_ask_timeout, self.name, timeout))
        try:
            return await future
        finally:
            system.deadlines.discard(key, future)

    def deliver(self, item: tuple[Any, Any], admission: Any) -> None:
        """A message from another member: enqueue, or park behind blocked senders."""
        if self.has_room():
            self.append(item)
            admission.set_result(None)
            self.dispatch()
        else:
            self.park(item, admission)

    async def stop(self) -> None:
        await self.system.stop_group(self)

    def statistics(self) -> MailboxStatistics:
        """The whole backlog: queued here, held by replicas, in progress, and waiting
        senders (counted in ``waiting_senders``)."""
        held = sum(r.held for r in self.replicas)
        return MailboxStatistics(
            depth=self.depth + held,
            capacity=self.capacity,
            peak=self.peak,
            waiting_senders=len(self.waiters) if self.waiters else 0,
            in_progress=sum(1 for r in self.replicas if r.cell.current is not None),
            processed=self.processed,
        )

    def load(self) -> tuple[int, int]:
        """(messages waiting anywhere, replicas taking work) for the autoscaler."""
        stats = self.statistics()
        return stats.depth + stats.waiting_senders, self.count

    # -- dispatching ------------------------------------------------------------------------------

    def dispatch(self) -> None:
        """Hand backlog messages to replicas with a free slot, least held first.

        Runs once per message: a linear scan, no allocation (a group has few replicas).
        """
        queue = self.queue
        if not queue:
            return
        limit = self.in_flight
        replicas = self.replicas
        while queue:
            best = None
            for replica in replicas:
                if (
                    replica.held < limit
                    and not replica.draining
                    and replica.cell.state < STOPPING
                    and (best is None or replica.held < best.held)
                ):
                    best = replica
            if best is None:
                break  # every replica is full: the next finished message pulls again
            message, reply = queue.popleft()
            if self.waiters:
                self.admit_waiter()
            best.held += 1
            cell = best.cell
            cell.append((message, Done(self, best, reply)))
            cell.schedule()
        if not queue and self.queue is queue:
            self.queue = None

    def finished(self, replica: Replica) -> None:
        replica.held -= 1
        self.processed += 1
        if replica.draining:
            if replica.held == 0:
                self._retire(replica)
            return
        self.dispatch()

    # -- scaling ----------------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Replicas taking work (draining and stopped ones not counted)."""
        return sum(1 for r in self.replicas if not r.draining and r.cell.state < STOPPING)

    async def scale_to(self, count: int) -> None:
        """Add replicas, or drain some: they finish what they hold, then stop.

        Raises:
            ConfigError: ``count`` is below 1.
            ActorStartFailed: A new replica's constructor or ``on_start`` raised.
        """
        if count < 1:
            raise ConfigError(f"a replicated actor needs at least one replica, got {count}")
        # A replica whose supervisor gave up on it is gone: forget it, so it is replaced.
        self.replicas = [r for r in self.replicas if r.cell.state < STOPPING or r.held]
        active = [r for r in self.replicas if not r.draining and r.cell.state < STOPPING]
        if count > len(active):
            for _ in range(count - len(active)):
                if self.state >= STOPPING:
                    return
                ref = await self.system.spawn_replica(self)
                cell = ref._cell
                assert isinstance(cell, ActorCell)
                self.replicas.append(Replica(cell))
            self.dispatch()
        elif count < len(active):
            # Drain the least busy first: they finish soonest.
            for replica in sorted(active, key=lambda r: r.held)[: len(active) - count]:
                replica.draining = True
                if replica.held == 0:
                    self._retire(replica)

    def _retire(self, replica: Replica) -> None:
        if replica in self.replicas:
            self.replicas.remove(replica)
        replica.cell.begin_stop()

    async def close(self) -> None:
        """Stop for good: queued asks fail with ActorStopped, tells are dead letters."""
        if self.state >= STOPPING:
            return
        self.state = STOPPING
        controller, self.controller = self.controller, None
        if controller is not None:
            await controller.aclose()
        for message, reply in self.take_all():
            if reply is None:
                self.system.dead_letter(self.name, message, "the replicated actor stopped")
            elif not reply.done():
                reply.set_exception(ActorStopped(f"replicated actor {self.name!r} stopped"))
        replicas, self.replicas = self.replicas, []
        # All at once: a replica stuck in a handler costs stop_timeout_s once, not N times.
        await asyncio.gather(*(replica.cell.terminate() for replica in replicas))
