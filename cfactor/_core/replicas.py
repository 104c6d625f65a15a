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

``KeyedReplicaSet`` (``cfactor/_core/keyed.py``) routes by key (``cf.Replicas(key=...)``):
the backlog is split into partitions by a stable hash of the key, each served by one
replica at a time.
In a cluster, a replica may run on another member (``RemoteReplica``,
``cfactor/_core/remote_replica.py``: the backlog stays here and hands it messages as
remote asks); the core only sees a ref.
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
from cfactor._core.remote_replica import RemoteReplica
from cfactor.abc import RefAddress
from cfactor.errors import (
    ActorStopped,
    AskTimeout,
    ConfigError,
    MailboxFull,
    MemberUnreachable,
)

if TYPE_CHECKING:
    from collections import deque

    from cfactor._core.actor import Actor
    from cfactor._core.keyed import Partition
    from cfactor._core.mailbox import Item
    from cfactor._core.supervision import Restart
    from cfactor._core.system import ActorSystem

log = logging.getLogger("cfactor.replicas")


class Replica:
    """One replica of a group: its cell and how many backlog messages it holds."""

    __slots__ = ("cell", "draining", "held", "ready")

    def __init__(self, cell: ActorCell | RemoteReplica) -> None:
        self.cell = cell
        self.held = 0
        self.draining = False
        #: Keyed groups only: its partitions that have messages it may take now.
        self.ready: deque[Partition] | None = None


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
        self.release()

    def set_exception(self, error: BaseException) -> None:
        reply = self.reply
        if reply is None:
            # A tell the stopping replica never handled, or lost with a replica's member.
            if isinstance(error, ActorStopped | MemberUnreachable):
                self.group.system.dead_letter(self.group.name, None, "its replica stopped")
        elif not reply.done():
            reply.set_exception(error)
        self.release()

    def release(self) -> None:
        """The replica's slot is free again (the keyed group also frees the partition)."""
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
        "placement",
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
        #: Where its replicas may run in a cluster (``spawn``'s ``placement``): opaque here.
        self.placement: Any = None
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

    def entry(self, message: Any, reply: Any) -> Item:
        """What goes into the backlog for ``message`` (the keyed group adds its partition).

        Raises:
            ConfigError: The message cannot be routed (a keyed group's key function failed).
        """
        return (message, reply)

    async def tell(self, message: Any) -> None:
        if self.state >= STOPPING:
            self.system.to_stopped(self.name, message, "the replicated actor is stopped")
            return
        entry = self.entry(message, None)
        if self.has_room():
            self.append(entry)
        else:
            await self.append_when_room(entry, self.system.loop, self.system.clock)
        self.dispatch()

    def tell_nowait(self, message: Any) -> None:
        if self.state >= STOPPING:
            self.system.to_stopped(self.name, message, "the replicated actor is stopped")
            return
        entry = self.entry(message, None)
        if not self.has_room():
            raise MailboxFull(f"backlog of {self.name!r} is full ({self.capacity} messages)")
        self.append(entry)
        self.dispatch()

    async def ask(self, message: Any, timeout: float | None) -> Any:
        system = self.system
        if timeout is None:
            timeout = system.ask_timeout_s
        elif not timeout > 0:
            raise ConfigError(f"ask timeout must be a positive number of seconds, got {timeout!r}")
        if self.state >= STOPPING:
            raise system.stopped_error(ActorStopped(f"replicated actor {self.name!r} is stopped"))
        future: asyncio.Future[Any] = system.loop.create_future()
        entry = self.entry(message, future)
        remaining = timeout
        if self.has_room():
            self.append(entry)
        else:
            started = system.clock.now()
            await self.append_when_room(entry, system.loop, system.clock, timeout)
            remaining = timeout - (system.clock.now() - started)
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
        message, reply = item
        try:
            entry = self.entry(message, reply)
        except ConfigError as exc:
            admission.set_result(None)  # refused, not parked: the sender's credit comes back
            if reply is not None:
                reply.set_exception(exc)
            else:
                log.warning("a tell to %r from another member is dropped: %s", self.name, exc)
                self.system.dead_letter(self.name, message, "it cannot be routed")
            return
        if self.has_room():
            self.append(entry)
            admission.set_result(None)
            self.dispatch()
        else:
            self.park(entry, admission)

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
                if self.state >= STOPPING:  # stopped while it started: stop it too
                    if isinstance(cell, ActorCell):
                        await cell.terminate()
                    else:
                        await ref.stop()
                    return
                if isinstance(cell, ActorCell):
                    self.replicas.append(self._new_replica(cell))
                else:  # placed on another member by the cluster
                    address = ref.__cfactor_address__().address
                    self.replicas.append(self._new_replica(RemoteReplica(self, ref, address)))
                self._replicas_changed()  # each new replica starts on the backlog at once
        elif count < len(active):
            # Drain the least busy first: they finish soonest.
            for replica in sorted(active, key=lambda r: r.held)[: len(active) - count]:
                replica.draining = True
                if replica.held == 0:
                    self._retire(replica)
            self._replicas_changed()

    def _new_replica(self, cell: ActorCell | RemoteReplica) -> Replica:
        return Replica(cell)

    def _replicas_changed(self) -> None:
        self.dispatch()

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
                stopped = ActorStopped(f"replicated actor {self.name!r} stopped")
                reply.set_exception(self.system.stopped_error(stopped))
        replicas, self.replicas = self.replicas, []
        # All at once: a replica stuck in a handler costs stop_timeout_s once, not N times.
        await asyncio.gather(*(replica.cell.terminate() for replica in replicas))
