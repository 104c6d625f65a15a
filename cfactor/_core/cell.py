"""The actor cell: one actor's mailbox, lifecycle, run loop and children.

A message's way (docs/design.md): ``tell`` appends ``(message, None)`` to the mailbox, an
``ask`` appends ``(message, future)``; if the actor is idle, one run is scheduled as a
task. The run drains up to ``throughput`` messages through ``receive``, yields to the
loop, and ends when the mailbox is empty, so an idle actor owns no task.

Supervision follows Erlang/OTP: a handler's exception fails the actor; its supervisor
(the parent cell, or the system's root) restarts it, or it and its siblings, under a
restart intensity, and escalates when that is exceeded.

Lifecycle states, in order (a cell only moves forward, except HALTED -> STARTING on a
restart and FAILED -> HALTED -> STARTING):

    STARTING -> ALIVE -> FAILED -> HALTED -> STARTING ... -> STOPPING -> STOPPED
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import traceback
from functools import partial
from typing import TYPE_CHECKING, Any

from cfactor._core.actor import Actor
from cfactor._core.mailbox import LOCAL_ASK, Mailbox
from cfactor._core.ref import ActorRef
from cfactor._core.supervision import (
    Restart,
    RestartIntensity,
    Strategy,
    Supervision,
    backoff_s,
)
from cfactor.abc import RefAddress
from cfactor.errors import (
    ActorStopped,
    AskTimeout,
    ConfigError,
    MailboxFull,
    RemoteActorError,
    SupervisionError,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from cfactor._core.system import ActorSystem

log = logging.getLogger("cfactor.actor")

STARTING, ALIVE, FAILED, HALTED, STOPPING, STOPPED = range(6)
STATE_NAMES = ("starting", "alive", "failed", "restarting", "stopping", "stopped")

#: The cell whose code is running now (its run task, on_start or on_stop). Makes an
#: actor spawned from inside an actor its child, and lets ``stop`` notice self-stops.
current_cell: contextvars.ContextVar[ActorCell | None] = contextvars.ContextVar(
    "cfactor_current_cell", default=None
)

_NO_ARGS: tuple[Any, ...] = ()


def describe_exception(exc: BaseException) -> RemoteActorError:
    """Turn a handler's exception into the error its asker receives."""
    kind = type(exc)
    type_name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else (f"{kind.__module__}.{kind.__qualname__}")
    )
    text = "".join(traceback.format_exception(exc))
    return RemoteActorError(type_name, str(exc), text)


def _ask_timeout(name: str, timeout: float) -> AskTimeout:
    return AskTimeout(f"actor {name!r} did not answer within {timeout:g} s")


class SupervisorMixin:
    """Children bookkeeping and OTP supervision, shared by actor cells and the root.

    Subclasses provide the slots ``system``, ``children``, ``supervision``,
    ``intensity`` and ``supervising_lock``, and the three hooks below.
    """

    __slots__ = ()

    system: ActorSystem
    children: dict[ActorCell, None] | None
    supervision: Supervision
    intensity: RestartIntensity | None
    supervising_lock: asyncio.Lock | None

    @property
    def label(self) -> str:
        raise NotImplementedError

    def is_supervising(self) -> bool:
        """False while this supervisor is itself failing or stopping."""
        raise NotImplementedError

    async def give_up(
        self, child: ActorCell, group: list[ActorCell], error: SupervisionError
    ) -> None:
        raise NotImplementedError

    def add_child(self, child: ActorCell) -> None:
        children = self.children
        if children is None:
            # The concrete classes declare the slots; mypy sees only the mixin's empty ones.
            children = self.children = {}  # type: ignore[misc]
        children[child] = None

    def remove_child(self, child: ActorCell) -> None:
        children = self.children
        if children is not None:
            children.pop(child, None)
            if not children:
                self.children = None  # type: ignore[misc]

    async def stop_children(self) -> None:
        """Stop every child for good, in reverse start order."""
        # Snapshot first: popping from a dict while walking it backwards would walk
        # over every deleted slot again (quadratic for 100k children).
        while self.children:
            for child in list(reversed(self.children)):
                await child.terminate()

    async def supervise_child(self, child: ActorCell) -> None:
        """Apply this supervisor's strategy to a child that failed or exited."""
        lock = self.supervising_lock
        if lock is None:
            lock = self.supervising_lock = asyncio.Lock()  # type: ignore[misc]
        async with lock:
            await self._supervise(child)

    async def _supervise(self, child: ActorCell) -> None:
        spec = self.supervision
        while self.is_supervising() and child.parent is self and child.state == FAILED:
            exc = child.failure
            restart = child.restart
            if restart is Restart.TEMPORARY or (restart is Restart.TRANSIENT and exc is None):
                # Never restarted (OTP): removed, and its siblings are left alone.
                if exc is not None:
                    log.info("temporary actor %r failed and is removed: %r", child.name, exc)
                await child.terminate()
                return
            group = self._group(child, spec.strategy)
            if restart is Restart.RESILIENT:
                # Never charged to this supervisor's intensity: a service's input must
                # not make it give up on the service (or, through the shared window, on
                # its siblings). Only failures that consumed no message back off.
                if child.processed != child.started_processed:
                    child.idle_failures = 0
                else:
                    child.idle_failures += 1
                    delay = backoff_s(child.idle_failures)
                    log.warning(
                        "actor %r failed without handling a message (%d in a row): "
                        "restarting it in %.1f s",
                        child.name,
                        child.idle_failures,
                        delay,
                    )
                    self.system.clock.call_later(delay, self._restart_later, child)
                    return
            else:
                intensity = self.intensity
                if intensity is None:
                    intensity = self.intensity = RestartIntensity(  # type: ignore[misc]
                        spec.max_restarts, spec.within_s
                    )
                if not intensity.allow(self.system.clock.now()):
                    error = SupervisionError(
                        f"supervisor {self.label} gave up: more than {spec.max_restarts} "
                        f"restarts within {spec.within_s:g} s; last: {child.name!r} "
                        + (f"failed with {exc!r}" if exc is not None else "exited"),
                        child=child.name,
                    )
                    log.error("%s", error)
                    self.system.count_escalation()
                    await self.give_up(child, group, error)
                    return
            failed_again = await self._restart_group(child, group)
            if failed_again is None:
                return
            child = failed_again

    async def _restart_group(self, child: ActorCell, group: list[ActorCell]) -> ActorCell | None:
        """Halt ``group`` and start it again; the cell that failed while starting, if any."""
        for cell in reversed(group):
            await cell.halt()
        for cell in group:
            if cell.restart is Restart.TEMPORARY and cell is not child:
                await cell.terminate()
            elif not await cell.restart_instance():
                return cell
        return None

    def _restart_later(self, child: ActorCell) -> None:
        # The timer may fire after the system closed or the child stopped for good.
        if self.is_supervising() and child.state == FAILED:
            self.system.spawn_background(self._restart_after_backoff(child))

    async def _restart_after_backoff(self, child: ActorCell) -> None:
        """A resilient child's backoff is over: restart it (and back off again if needed)."""
        lock = self.supervising_lock
        if lock is None:
            lock = self.supervising_lock = asyncio.Lock()  # type: ignore[misc]
        async with lock:
            if not (self.is_supervising() and child.parent is self and child.state == FAILED):
                return  # stopped, or its supervisor is stopping: nothing to restart
            failed_again = await self._restart_group(
                child, self._group(child, self.supervision.strategy)
            )
            if failed_again is not None:
                await self._supervise(failed_again)

    def _group(self, child: ActorCell, strategy: Strategy | str) -> list[ActorCell]:
        if strategy is Strategy.ONE_FOR_ONE or not self.children:
            return [child]
        siblings = list(self.children)
        if strategy is Strategy.ONE_FOR_ALL:
            return siblings
        return siblings[siblings.index(child) :]


class ActorCell(Mailbox, SupervisorMixin):
    """One actor: its mailbox, its current instance, its place in the supervision tree."""

    __slots__ = (
        "args",
        "children",
        "cls",
        "failure",
        "failure_logged_at",
        "failures_unlogged",
        "idle_failures",
        "instance",
        "intensity",
        "kwargs",
        "name",
        "on_stopped",
        "parent",
        "ref",
        "restart",
        "restarts",
        "started_processed",
        "state",
        "stopping",
        "supervising_lock",
        "supervision",
        "system",
        "task",
        "uid",
    )

    def __init__(
        self,
        system: ActorSystem,
        parent: SupervisorMixin,
        cls: type[Actor],
        *,
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        name: str,
        uid: int,
        capacity: int,
        restart: Restart,
        supervision: Supervision,
    ) -> None:
        Mailbox.__init__(self, capacity)
        self.system = system
        self.parent = parent
        self.cls = cls
        self.args = args or _NO_ARGS
        self.kwargs = kwargs or None
        self.name = name
        self.uid = uid
        self.restart = restart
        self.supervision = supervision
        self.state = STARTING
        self.task: asyncio.Task[None] | None = None
        self.instance: Actor | None = None
        self.ref = ActorRef(self)
        self.failure: BaseException | None = None
        self.children: dict[ActorCell, None] | None = None
        self.stopping: asyncio.Future[None] | None = None
        self.restarts = 0
        #: ``processed`` when the current instance started: a failure that leaves it
        #: unchanged consumed no message (see ``Restart.RESILIENT``).
        self.started_processed = 0
        #: Failures in a row that consumed no message (a resilient child backs off).
        self.idle_failures = 0
        #: The rate limit of a resilient actor's failure log (see ``fail``).
        self.failure_logged_at = -math.inf
        self.failures_unlogged = 0
        self.intensity: RestartIntensity | None = None
        self.supervising_lock: asyncio.Lock | None = None
        #: Called once the actor has stopped for good (the cluster releases its name).
        self.on_stopped: list[Callable[[], None]] | None = None

    # -- sending ------------------------------------------------------------------------

    async def tell(self, message: Any) -> None:
        if self.state >= STOPPING:
            self.system.dead_letter(self.name, message, "the actor is stopped")
            return
        if self.waiters or (self.queue is not None and len(self.queue) >= self.capacity):
            # Full: wait behind the other blocked senders. If the actor stops
            # meanwhile, the message is counted as a dead letter by the stop.
            system = self.system
            await self.append_when_room((message, None), system.loop, system.clock)
        else:
            self.append((message, None))
        if self.task is None and self.state == ALIVE:
            self.task = self.system.loop.create_task(self._run())

    def tell_nowait(self, message: Any) -> None:
        if self.state >= STOPPING:
            self.system.dead_letter(self.name, message, "the actor is stopped")
            return
        if self.waiters or (self.queue is not None and len(self.queue) >= self.capacity):
            raise MailboxFull(f"mailbox of {self.name!r} is full ({self.capacity} messages)")
        self.append((message, None))
        if self.task is None and self.state == ALIVE:
            self.task = self.system.loop.create_task(self._run())

    async def ask(self, message: Any, timeout: float | None) -> Any:
        system = self.system
        if timeout is None:
            timeout = system.ask_timeout_s
        elif not timeout > 0:  # also catches NaN
            raise ConfigError(f"ask timeout must be a positive number of seconds, got {timeout!r}")
        if self.state >= STOPPING:
            raise ActorStopped(f"actor {self.name!r} is stopped")
        loop = system.loop
        future: asyncio.Future[Any] = loop.create_future()
        if self.waiters or (self.queue is not None and len(self.queue) >= self.capacity):
            # Full: park behind the blocked senders. The ask's own deadline ends the
            # wait for room too (no timer of its own); a parked ask whose asker gave
            # up is dropped when its turn comes, or by ``compact``.
            self.park((message, future), LOCAL_ASK)
        else:
            self.append((message, future))
            if self.task is None and self.state == ALIVE:
                self.task = loop.create_task(self._run())
        if timeout == math.inf:
            return await future
        deadlines = system.deadlines
        key = deadlines.add(future, timeout, partial(_ask_timeout, self.name, timeout))
        try:
            return await future
        except AskTimeout:
            self._ask_timed_out()
            raise
        finally:
            deadlines.discard(key, future)
            # The future holds the error, whose traceback holds this frame: without
            # this, every failed ask is a reference cycle only the cyclic GC frees, and
            # 10,000 timeouts at once made GC passes the largest part of their lateness.
            del future

    def _ask_timed_out(self) -> None:
        # The timed-out ask may still sit in the mailbox: once about half of what
        # it holds is asks nobody waits for, drop them all (one pass, amortised).
        stale = self.stale = self.stale + 1
        if 2 * stale >= self.depth + (len(self.waiters) if self.waiters else 0):
            self.compact()
            self.schedule()

    # -- running ------------------------------------------------------------------------

    def schedule(self) -> None:
        if self.queue and self.task is None and self.state == ALIVE:
            self.task = self.system.loop.create_task(self._run())

    async def _run(self) -> None:
        current_cell.set(self)  # this task's own context copy: no reset needed
        instance = self.instance
        assert instance is not None
        receive = instance.receive
        budget = self.system.throughput
        queue = self.queue
        handled = 0
        try:
            while queue and self.state == ALIVE:
                item = queue.popleft()
                if self.waiters:
                    self.admit_waiter()
                message, reply = item
                if reply is not None and reply.done():
                    # The asker gave up (timed out, cancelled, or a remote ask out of
                    # its budget): the handler never runs for it.
                    self.asks_expired += 1
                    continue
                self.current = item
                try:
                    result = await receive(message)
                except Exception as exc:
                    self.current = None
                    self.processed += 1
                    if reply is not None and not reply.done():
                        reply.set_exception(describe_exception(exc))
                    self.fail(exc)
                    return
                self.current = None
                self.processed += 1
                if reply is not None and not reply.done():
                    reply.set_result(result)
                handled += 1
                if handled >= budget:
                    handled = 0
                    await asyncio.sleep(0)  # let other actors and senders run
        finally:
            self.task = None
            unfinished = self.current
            if unfinished is not None:  # cancelled in the middle of a message
                self.current = None
                reply = unfinished[1]
                if reply is not None and not reply.done():
                    reply.set_exception(ActorStopped(f"actor {self.name!r} was stopped"))
            if not queue and self.queue is queue:
                self.queue = None  # an idle actor keeps no deque

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def is_alive(self) -> bool:
        return self.state < STOPPING

    @property
    def state_name(self) -> str:
        return STATE_NAMES[self.state]

    @property
    def label(self) -> str:
        return repr(self.name)

    def describe(self) -> str:
        return f"{self.name}#{self.uid} {self.state_name} depth={self.depth}/{self.capacity}"

    def wire_address(self) -> RefAddress:
        return RefAddress(self.system.address, self.name, self.uid)

    def is_supervising(self) -> bool:
        return self.state in (STARTING, ALIVE)

    async def start_instance(self) -> BaseException | None:
        """Build a fresh instance and run ``on_start``; the error if either raised."""
        self.state = STARTING
        self.started_processed = self.processed
        try:
            instance = self.cls(*self.args, **(self.kwargs or {}))
        except Exception as exc:
            return exc
        instance.ref = self.ref
        instance.system = self.system
        if type(instance).on_start is not Actor.on_start:
            token = current_cell.set(self)
            try:
                await instance.on_start()
            except Exception as exc:
                return exc
            finally:
                current_cell.reset(token)
        if self.state != STARTING:
            # Stopped while on_start ran: halt() found no instance to stop then, so stop
            # this one now, or what on_start set up (a task, a timer) would outlive it.
            await self._run_on_stop(instance)
            return None
        self.instance = instance
        self.state = ALIVE
        self.schedule()
        return None

    async def restart_instance(self) -> bool:
        """Restart a halted cell; False if it failed again while starting."""
        if self.state >= STOPPING:
            return True  # stopped for good meanwhile: nothing to restart
        self.restarts += 1
        self.system.count_restart()
        # A restarted supervisor starts with a clean restart history, as a restarted
        # OTP supervisor process does; otherwise it would give up again at once.
        self.intensity = None
        error = await self.start_instance()
        if error is None:
            log.info("actor %r restarted (restart %d)", self.name, self.restarts)
            return True
        if self.state < STOPPING:
            log.warning("actor %r failed while restarting: %r", self.name, error)
            self.state = FAILED
            self.failure = error
        return False

    def fail(self, exc: BaseException | None) -> None:
        """Mark the actor failed (or exited, if ``exc`` is None) and tell its supervisor."""
        if self.state >= FAILED:
            return
        self.state = FAILED
        self.failure = exc
        if exc is not None:
            if self.restart is not Restart.RESILIENT:
                log.warning("actor %r failed: %r", self.name, exc, exc_info=exc)
            else:
                self._log_resilient_failure(exc)
        self.system.spawn_background(self.parent.supervise_child(self))

    def _log_resilient_failure(self, exc: BaseException) -> None:
        """At most one traceback a second: a resilient actor fails as often as its input
        says (a crash storm at a public endpoint must not flood the log)."""
        now = self.system.clock.now()
        if now - self.failure_logged_at < 1.0:
            self.failures_unlogged += 1
            return
        unlogged, self.failures_unlogged = self.failures_unlogged, 0
        self.failure_logged_at = now
        more = f" ({unlogged} more failures since the last line)" if unlogged else ""
        log.warning("actor %r failed: %r%s", self.name, exc, more, exc_info=exc)

    def request_normal_exit(self) -> None:
        if self.state <= ALIVE:
            self.fail(None)

    async def give_up(
        self, child: ActorCell, group: list[ActorCell], error: SupervisionError
    ) -> None:
        del child, group  # halting this cell stops every child
        self.fail(error)

    async def _run_on_stop(self, instance: Actor) -> None:
        if type(instance).on_stop is Actor.on_stop:
            return
        token = current_cell.set(self)
        try:
            await instance.on_stop()
        except Exception as exc:
            log.warning("on_stop of %r raised %r", self.name, exc, exc_info=exc)
        finally:
            current_cell.reset(token)

    async def halt(self) -> None:
        """Stop handling messages, stop the children, drop the instance.

        The mailbox, name and ref survive: used before a restart and by ``terminate``.
        """
        self.state = max(self.state, HALTED)
        task = self.task
        if task is not None and task is not asyncio.current_task():
            await self._wait_for_task(task)
        await self.stop_children()
        instance = self.instance
        self.instance = None
        if instance is not None:
            await self._run_on_stop(instance)

    async def _wait_for_task(self, task: asyncio.Task[None]) -> None:
        """Let the current message finish; cancel it after ``stop_timeout_s``."""
        timer = self.system.clock.call_later(self.system.stop_timeout_s, task.cancel)
        try:
            await asyncio.wait((task,))
        finally:
            timer.cancel()

    def begin_stop(self) -> asyncio.Future[None]:
        """Start stopping for good (idempotent); the future completes when stopped."""
        stopping = self.stopping
        if stopping is not None:
            return stopping
        stopping = self.stopping = self.system.loop.create_future()
        self.state = STOPPING
        # Nothing queued will be handled any more: fail queued asks now, not at their
        # timeout. Only the message in progress may still finish.
        self._flush_mailbox()
        instance = self.instance
        if (
            self.task is None
            and not self.children
            and (instance is None or type(instance).on_stop is Actor.on_stop)
        ):
            # Idle with nothing to wait for: stop now, no task needed.
            self.instance = None
            self._finish_stop()
            stopping.set_result(None)
        else:
            self.system.spawn_background(self._stop_slowly(stopping))
        return stopping

    async def _stop_slowly(self, stopping: asyncio.Future[None]) -> None:
        try:
            await self.halt()
        finally:
            self._finish_stop()
            stopping.set_result(None)

    def _flush_mailbox(self) -> None:
        for message, reply in self.take_all():
            if reply is None:
                self.system.dead_letter(self.name, message, "the actor stopped")
            elif not reply.done():
                reply.set_exception(ActorStopped(f"actor {self.name!r} stopped before answering"))

    def _finish_stop(self) -> None:
        self.state = STOPPED
        self._flush_mailbox()  # anything that arrived while stopping
        self.system.unregister(self)
        self.parent.remove_child(self)
        callbacks, self.on_stopped = self.on_stopped, None
        for callback in callbacks or ():
            try:
                callback()
            except Exception:
                log.exception("a stop callback of %r raised", self.name)

    async def terminate(self) -> None:
        """Stop for good and wait until stopped."""
        await asyncio.shield(self.begin_stop())

    async def stop(self) -> None:
        stopping = self.begin_stop()
        if self._called_from_inside():
            return  # waiting here would wait for ourselves
        await asyncio.shield(stopping)

    def _called_from_inside(self) -> bool:
        cell = current_cell.get()
        while isinstance(cell, ActorCell):
            if cell is self:
                return True
            parent = cell.parent
            cell = parent if isinstance(parent, ActorCell) else None
        return False


class RootSupervisor(SupervisorMixin):
    """The system's supervisor of top-level actors.

    When its intensity is exceeded it has no parent to escalate to: it stops the
    children it would have restarted and logs the ``SupervisionError`` (an embedded
    runtime must not take the host application down).
    """

    __slots__ = ("children", "closing", "intensity", "supervising_lock", "supervision", "system")

    def __init__(self, system: ActorSystem, supervision: Supervision) -> None:
        self.system = system
        self.supervision = supervision
        self.children: dict[ActorCell, None] | None = None
        self.intensity: RestartIntensity | None = None
        self.supervising_lock: asyncio.Lock | None = None
        self.closing = False

    @property
    def label(self) -> str:
        return "<root>"

    def is_supervising(self) -> bool:
        return not self.closing

    async def give_up(
        self, child: ActorCell, group: list[ActorCell], error: SupervisionError
    ) -> None:
        del child, error
        for cell in reversed(group):
            await cell.terminate()
