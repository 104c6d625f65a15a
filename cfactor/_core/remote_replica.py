"""A replica on another cluster member, as its group sees it (``RemoteReplica``).

The group (``cfactor/_core/replicas.py``) keeps the backlog on the member that owns
it; a replica the cluster placed elsewhere is handed messages as remote asks, and
stands in for the ``ActorCell`` of a local replica in what the group uses. The core
does not know how it was placed: the cluster layer starts the far actor and the group
only holds its ref.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING, Any

from cfactor._core.cell import ALIVE, STOPPED, STOPPING
from cfactor.errors import (
    ActorNotFound,
    ActorStopped,
    CfactorError,
    MemberUnreachable,
    RemoteActorError,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from cfactor._core.mailbox import Item
    from cfactor._core.ref import ActorRef
    from cfactor._core.replicas import Done, ReplicaSet

log = logging.getLogger("cfactor.replicas")


class RemoteReplica:
    """A replica on another cluster member, as the owning group sees it.

    Duck-typed like the ``ActorCell`` of a local replica for what the group uses:
    ``append`` + ``schedule`` hand it a message (sent as a remote ask; the answer
    completes the message's ``Done``, which frees the slot), ``state``, ``begin_stop``
    and ``terminate``. The group's backlog stays with the owner; this replica only
    ever holds ``in_flight`` messages, so its mailbox there never overflows.

    If its member is lost (the ask fails with ``MemberUnreachable``, its replica is gone,
    or the cluster says the member left: ``lost``), it is forgotten: its state becomes
    stopped, and the messages it held **fail** (asks raise ``MemberUnreachable``, tells are
    counted as dead letters). They are not re-queued: one may have been handled
    already, and a replicated actor delivers at most once, like ``tell``.
    """

    __slots__ = ("address", "current", "group", "on_stopped", "pending", "ref", "state", "stopping")

    def __init__(self, group: ReplicaSet, ref: ActorRef, address: str) -> None:
        self.group = group
        self.ref = ref
        self.address = address
        self.state = ALIVE
        #: Never "in progress" as far as the owner knows (the far member runs it).
        self.current: Item | None = None
        self.pending: dict[Done, asyncio.Task[None]] = {}
        self.stopping: asyncio.Future[None] | None = None
        #: Called once it stopped for good (a keyed group moves its partitions).
        self.on_stopped: list[Callable[[], None]] | None = None

    @property
    def name(self) -> str:
        return self.ref.name

    def append(self, item: tuple[Any, Done]) -> None:
        message, done = item
        loop = self.group.system.loop
        self.pending[done] = loop.create_task(self._send(message, done))

    def schedule(self) -> None:
        """Nothing to do: ``append`` sent the message already."""

    async def _send(self, message: Any, done: Done) -> None:
        try:
            result = await self.ref.ask(message, math.inf)
        except (MemberUnreachable, ActorNotFound) as exc:
            # The member or the replica is gone: everything it holds fails with it.
            self.pending.pop(done, None)
            done.set_exception(MemberUnreachable(f"replica of {self.group.name!r}: {exc}"))
            self.lost(f"{exc}")
            return
        except CfactorError as exc:  # the handler raised, or the message cannot travel
            self.pending.pop(done, None)
            if done.reply is None and not isinstance(exc, RemoteActorError | ActorStopped):
                # A tell that never reached the replica (a handler's failure is logged
                # where it ran; a stop's leftovers are counted by Done).
                log.warning("a tell to %r did not reach its replica: %r", self.group.name, exc)
                self.group.system.dead_letter(self.group.name, message, f"{exc}")
            done.set_exception(exc)
            return
        self.pending.pop(done, None)
        done.set_result(result)

    def lost(self, why: str, *, stop_far: bool = True) -> None:
        """Forget this replica: it stops counting, and what it held fails (see above).

        Unless it was stopped already, it is also told to stop, in case its member
        is still there (a transient failure must not leave an orphan running).
        """
        if self.state >= STOPPED:
            return
        if stop_far and self.stopping is None:
            self.group.system.spawn_background(self._stop_quietly())
        self.state = STOPPED
        pending, self.pending = self.pending, {}
        if pending:
            log.warning(
                "replica %s of %r at %s is lost (%s): %d messages it held failed",
                self.name,
                self.group.name,
                self.address,
                why,
                len(pending),
            )
        error = MemberUnreachable(f"the replica of {self.group.name!r} at {self.address} is lost")
        for done, task in pending.items():
            task.cancel()
            done.set_exception(error)
        if self.stopping is not None and not self.stopping.done():
            self.stopping.set_result(None)
        callbacks, self.on_stopped = self.on_stopped, None
        for callback in callbacks or ():
            callback()

    def begin_stop(self) -> asyncio.Future[None]:
        """Stop the far replica (drained: it holds nothing more from us)."""
        stopping = self.stopping
        if stopping is None:
            stopping = self.stopping = self.group.system.loop.create_future()
            if self.state >= STOPPED:
                stopping.set_result(None)
            else:
                self.state = STOPPING
                self.group.system.spawn_background(self._stop())
        return stopping

    async def _stop(self) -> None:
        await self._stop_quietly()
        self.lost("stopped", stop_far=False)

    async def _stop_quietly(self) -> None:
        try:
            await self.group.system.clock.wait_for(
                self.ref.stop(), self.group.system.stop_timeout_s + 1.0
            )
        except (CfactorError, TimeoutError) as exc:
            log.info("stopping replica %s at %s: %r", self.name, self.address, exc)

    async def terminate(self) -> None:
        await asyncio.shield(self.begin_stop())
