"""The actors a flow's Nodes run as: Node replicas and the hosts of autoscaled groups.

How items move (docs/flow.md has the picture):

- A replica's outputs go downstream in batches, a bounded window of them unanswered
  (``cfactor.flow.sending``): a slow Node holds its upstream back.
- End of stream: when a replica's upstream has all finished, it flushes, waits for
  every batch it sent to be answered, then asks each replica downstream to take an
  ``EndOfStream``. A replica finishes when it has an end of stream from every upstream
  sender; a reduce calls its function then. Because the batches were answered first,
  no ordering between senders is assumed (it holds across members too).
- A ``cf.Auto`` map is a replicated group behind one ref (it autoscales on its
  backlog). Its replicas forward each batch's outputs before answering it, and the
  group's host actor counts the ends of stream and speaks for the group downstream.

The messages (and the plan a replica is built from) are in ``cfactor.flow.messages``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from cfactor._core.actor import Actor
from cfactor.errors import CfactorError
from cfactor.flow.context import Context, Store, endpoint_ref
from cfactor.flow.functions import (
    ItemFailed,
    apply_async,
    apply_sync,
    collect,
    give_up_or_retry,
    is_async,
    reduce_sync,
    resolve,
)
from cfactor.flow.messages import (
    Batch,
    EndOfStream,
    Failed,
    NodePlan,
    Progress,
    ReplicaCount,
    Start,
    Where,
)
from cfactor.flow.sending import SOURCE_LINGER_S, Emitter, make_edges, take
from cfactor.flow.threads import flow_threads

if TYPE_CHECKING:
    from cfactor._core.ref import ActorRef

log = logging.getLogger("cfactor.flow")

#: How often a replica reports its counts to the run's monitor.
REPORT_EVERY_S = 0.25


class NodeWorker(Actor):
    """One replica of a Node: a source, a map or a reduce (see the module docstring).

    Its constructor takes one plan, as ``NodePlan.to_args()`` (plain values, so it can
    be placed on any member).

    Raises:
        TypeError: The plan is not one (``NodePlan.from_args``).
    """

    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = NodePlan.from_args(plan)
        self.kind = self.plan.kind
        self.path = self.plan.node
        self.index = self.plan.index
        self.expected = self.plan.expected
        self.retries = self.plan.retries
        self.auto = self.plan.auto_replica
        self.ends: set[tuple[str, int]] = set()
        self.items: list[Any] = []
        self.n_in = 0
        self.n_out = 0
        self.failed = False
        self.finished = False
        self.dropped = 0
        self.reported_at = float("-inf")

    async def on_start(self) -> None:
        system = self.system
        plan = self.plan
        self.threads = flow_threads(system)
        if self.auto:
            self.index = self.ref.uid
        self.fn = resolve(plan.fn)
        self.sync = not is_async(self.fn)
        self.monitor = endpoint_ref(system, plan.monitor)
        store = Store(endpoint_ref(system, plan.store), system.loop)
        self.ctx = Context(
            system, self.path, self.index, store, dict(plan.services), replicas=plan.replicas
        )
        edges = make_edges(system, plan.edges)
        self.emitter = Emitter((self.path, self.index), edges, plan.batch)

    async def on_stop(self) -> None:
        self.emitter.cancel()
        self.items = []
        self.threads.release_memory_soon()

    async def receive(self, message: Any) -> Any:
        match message:
            case Batch(items=items):
                await self._batch(list(items))
                return None
            case EndOfStream(sender=sender):
                await self._end_from(sender)
                return None
            case Start() if self.kind == "source":
                await self._run_source()
                return None
        raise ValueError(f"a {self.kind} replica got an unknown message {message!r:.100}")

    # -- the work ---------------------------------------------------------------------

    async def _batch(self, items: list[Any]) -> None:
        self.n_in += len(items)
        if self.failed:
            if not self.dropped:
                log.warning("%s[%d]: failed; dropping what still arrives", self.path, self.index)
            self.dropped += len(items)  # counted, and in the final figures
            return
        if self.kind == "reduce":
            self.items.extend(items)
            self._report()
            return
        try:
            if self.sync:
                out = await self.system.loop.run_in_executor(
                    self.threads.pool("nodes"), apply_sync, self.fn, self.ctx, items, self.retries
                )
            else:
                out = await apply_async(self.fn, self.ctx, items, self.retries)
            await self._emit(out)
            if self.auto:  # answer only once the outputs were taken downstream
                await self.emitter.drain()
            elif self.ref.statistics().depth == 0:
                self.emitter.flush()  # nothing more queued: do not sit on a partial batch
        except ItemFailed as exc:
            await self._fail_on(exc)
        except CfactorError as exc:
            await self._fail_sending("(sending downstream)", exc)
        self._report()

    async def _emit(self, out: list[Any]) -> None:
        self.n_out += len(out)
        emitter = self.emitter
        for item in out:
            emitter.put(item)
            if len(emitter.pending) >= emitter.window:
                await emitter.pace()
        emitter._raise()

    async def _end_from(self, sender: tuple[str, int]) -> None:
        if sender in self.ends:
            log.warning(
                "%s[%d]: a second end of stream from %r ignored", self.path, self.index, sender
            )
            return
        self.ends.add(sender)
        if len(self.ends) < self.expected:
            return
        await self._finish()

    async def _finish(self) -> None:
        if not self.failed and self.kind == "reduce":
            items, self.items = self.items, []
            try:
                out = await self._reduce(items)
                await self._emit(out)
            except ItemFailed as exc:
                await self._fail_on(exc)
            except CfactorError as exc:
                await self._fail_sending("(sending downstream)", exc)
        try:
            if not self.failed:
                await self.emitter.drain()
        except CfactorError as exc:
            await self._fail_sending("(sending downstream)", exc)
        # The final figures go before the end of stream, so the run's totals are whole.
        self.finished = True
        await self._final_report()
        try:
            if not self.failed:
                await self.emitter.end()
        except CfactorError as exc:
            await self._fail_sending("(end of stream)", exc)

    async def _reduce(self, items: list[Any]) -> list[Any]:
        what = f"<{len(items)} items of partition {self.index}>"
        fn, ctx = self.fn, self.ctx
        attempt = 0
        while True:
            out: list[Any] = []
            try:
                if inspect.isasyncgenfunction(fn):
                    out.extend([x async for x in fn(ctx, items)])
                elif self.sync:
                    out = await self.system.loop.run_in_executor(
                        self.threads.pool("nodes"),
                        reduce_sync,
                        fn,
                        ctx,
                        items,
                        self.threads.reducing,
                    )
                else:
                    collect(await fn(ctx, items), out)
            except Exception as exc:
                give_up_or_retry(ctx, None, exc, attempt, self.retries, label=what)
                attempt += 1
                continue
            return out

    async def _run_source(self) -> None:
        fn, ctx = self.fn, self.ctx
        loop = self.system.loop
        clock = self.system.clock
        batch = self.emitter.batch_items
        nodes = self.threads.pool("nodes")
        try:
            last_flush = clock.now()
            if inspect.isasyncgenfunction(fn):
                async for item in fn(ctx, self.plan.arg):
                    await self._emit([item])
                    if clock.now() - last_flush >= SOURCE_LINGER_S:
                        self.emitter.flush()
                        last_flush = clock.now()
                        self._report()
            else:
                produced = (
                    await fn(ctx, self.plan.arg)
                    if inspect.iscoroutinefunction(fn)
                    else await loop.run_in_executor(nodes, fn, ctx, self.plan.arg)
                )
                iterator = iter(() if produced is None else produced)
                until = clock.now
                reading = loop.run_in_executor(nodes, take, iterator, batch, until)
                while True:
                    chunk, error, more = await reading
                    if more and error is None:  # read the next chunk while this one goes
                        reading = loop.run_in_executor(nodes, take, iterator, batch, until)
                    await self._emit(chunk)
                    if error is not None:
                        await self._source_failed(error)
                        break
                    if not more:
                        break
                    self.emitter.flush()  # a chunk is a batch's worth, or all there was
                    self._report()
        except ItemFailed as exc:  # a partition function, on the way out
            await self._fail_on(exc)
        except CfactorError as exc:
            await self._fail_sending("(sending downstream)", exc)
        except Exception as exc:  # the user's function or async generator raised
            await self._source_failed(exc)
        await self._finish()

    async def _source_failed(self, exc: Exception) -> None:
        await self._fail_on(ItemFailed(None, exc, label=f"<source after {self.n_out} items>"))

    # -- reporting --------------------------------------------------------------------

    async def _fail_on(self, exc: ItemFailed) -> None:
        """The Node's function failed (for good) on ``exc.item``."""
        failed = Failed(
            self.path,
            self.index,
            exc.item,
            exc.type_name,
            exc.message,
            exc.traceback,
            delivery=False,
        )
        await self._fail(failed)

    async def _fail_sending(self, doing: str, exc: CfactorError) -> None:
        """Sending downstream (or ending the stream, ``doing`` says) failed."""
        failed = Failed(
            self.path, self.index, doing, type(exc).__name__, str(exc), "", delivery=True
        )
        await self._fail(failed)

    async def _fail(self, failed: Failed) -> None:
        self.failed = True
        buffered, in_flight = self.emitter.cancel()
        if buffered or in_flight:
            log.warning(
                "%s[%d]: the run is failing: %d buffered outputs dropped, %d batches in flight "
                "cancelled",
                self.path,
                self.index,
                buffered,
                in_flight,
            )
        # A Node function's failure is the news; a send failing after it (the run is
        # being stopped) is only its echo.
        level = logging.WARNING if failed.delivery else logging.ERROR
        log.log(
            level,
            "%s[%d] failed on %s: %s: %s",
            self.path,
            self.index,
            failed.item,
            failed.type_name,
            failed.message,
        )
        try:
            await self.monitor.tell(failed)
        except CfactorError:
            log.exception("%s[%d]: could not report the failure", self.path, self.index)

    async def _final_report(self) -> None:
        try:
            await self.monitor.tell(self._figures())
        except CfactorError:
            log.exception("%s[%d]: could not report its figures", self.path, self.index)

    def _figures(self) -> Progress:
        return Progress(self.path, self.index, self.n_in, self.n_out, self.finished, self.dropped)

    def _report(self) -> None:
        now = self.system.clock.now()
        # A cf.Auto replica may be drained away at any time: it reports every batch.
        if now - self.reported_at < REPORT_EVERY_S and not self.auto:
            return
        self.reported_at = now
        try:
            self.monitor.tell_nowait(self._figures())
        except CfactorError:  # a display update only: the next report carries the totals
            log.debug("%s[%d]: progress report skipped (monitor busy)", self.path, self.index)


class AutoHost(Actor):
    """Hosts a ``cf.Auto`` map: a replicated group here, plus its ends of stream.

    Upstream replicas send batches to the group's ref and their end of stream here;
    once every upstream sender ended, every batch was processed and forwarded (the
    group's replicas answer a batch only after that), so the host ends the stream
    downstream on the group's behalf.
    """

    def __init__(self, plan: dict[str, Any], auto: dict[str, Any]) -> None:
        """Args: ``plan``, as ``NodePlan.to_args()``; ``auto``, ``cf.Auto``'s fields.

        Raises:
            TypeError: The plan is not one (``NodePlan.from_args``).
        """
        self.plan = NodePlan.from_args(plan)
        self.auto = auto
        self.ends: set[tuple[str, int]] = set()
        self.group: ActorRef | None = None
        self.reporting: Any = None

    @property
    def group_name(self) -> str:
        return f"{self.ref.name}-replicas"

    async def on_start(self) -> None:
        from cfactor.flow.model import Auto  # noqa: PLC0415

        replica_plan = replace(self.plan, auto_replica=True)
        self.group = await self.system.spawn(
            NodeWorker,
            replica_plan.to_args(),
            name=self.group_name,
            placement="local",
            replicas=Auto(**self.auto).replicas(),
            mailbox_capacity=1000,
        )
        self.monitor = endpoint_ref(self.system, self.plan.monitor)
        self.edges = make_edges(self.system, self.plan.edges)
        self._schedule_report()

    def _schedule_report(self) -> None:
        self.reporting = self.system.clock.call_later(REPORT_EVERY_S, self._report)

    def _report(self) -> None:
        group = self.system.group(self.group_name)
        if group is None:
            return
        try:
            self.monitor.tell_nowait(ReplicaCount(self.plan.node, group.count))
        except CfactorError:
            log.debug("%s: replica count report skipped", self.plan.node)
        self._schedule_report()

    async def on_stop(self) -> None:
        if self.reporting is not None:
            self.reporting.cancel()
        if self.group is not None:
            await self.group.stop()

    async def receive(self, message: Any) -> Any:
        match message:
            case Where():
                return (self.system.address, self.group_name)
            case EndOfStream(sender=sender):
                node = self.plan.node
                if sender in self.ends:
                    log.warning("%s: a second end of stream from %r ignored", node, sender)
                    return None
                self.ends.add(sender)
                if len(self.ends) == self.plan.expected:
                    me = (node, -1)
                    # Done: shown as finished (it has no items of its own to count).
                    await self.monitor.tell(Progress(node, -1, 0, 0, finished=True, dropped=0))
                    await asyncio.gather(
                        *(
                            ref.ask(EndOfStream(me), timeout=math.inf)
                            for e in self.edges
                            for ref in e.ends()
                        )
                    )
                return None
        raise ValueError(f"an auto host got an unknown message {message!r:.100}")


__all__ = ["AutoHost", "NodeWorker"]
