"""The actors a flow runs as: Node replicas, autoscaled groups, steps, the run's monitor.

How items move (docs/flow.md has the picture):

- A replica's outputs are buffered per downstream edge and sent in batches, each
  batch an ``ask`` whose answer means "taken and processed". A replica keeps a few
  batches in flight (its window) and waits when the window is full, so a slow Node
  holds its upstream back: bounded mailboxes, bounded memory, nothing dropped.
- End of stream: when a replica's upstream has all finished, it flushes, waits for
  every batch it sent to be answered, then sends ``("eos", sender)`` to each replica
  downstream. A replica finishes when it has an end of stream from every upstream
  sender; a reduce calls its function then. Because the batches were answered first,
  no ordering between senders is assumed (it holds across members too).
- A ``cf.Auto`` map is a replicated group behind one ref (it autoscales on its
  backlog). Its replicas forward each batch's outputs before answering it, and the
  group's host actor counts the ends of stream and speaks for the group downstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import inspect
import itertools
import logging
import math
import threading
import traceback as tb_module
import zlib
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

from cfactor._core.actor import Actor
from cfactor.errors import CfactorError, ConfigError, FrameTooLarge
from cfactor.loading import import_path, load_object

if TYPE_CHECKING:
    from collections.abc import Callable

    from cfactor._core.ref import ActorRef
    from cfactor._core.system import ActorSystem
    from cfactor.abc import Cancellable, Clock

log = logging.getLogger("cfactor.flow")
step_log = logging.getLogger("cfactor.flow.step")

#: Items per batch, and the bytes (roughly) after which a batch goes early.
BATCH_ITEMS = 256
BATCH_BYTES = 1 << 20
#: Batches one replica keeps unanswered per downstream replica (at least MIN_WINDOW).
WINDOW_PER_TARGET = 2
MIN_WINDOW = 4
#: How often a replica reports its counts to the run's monitor.
REPORT_EVERY_S = 0.25
#: How many unanswered batches a replica in another process counts as, when choosing
#: where a batch for a map goes: work stays local until the local replicas are busy.
REMOTE_PENALTY = 2
#: How many entries of a big dict or list ``item_size`` looks at.
SIZE_SAMPLE = 16
#: How many keys an edge remembers the partition of.
PARTITION_CACHE = 1 << 17
#: A source sends what it has after this long, even if the batch is not full.
SOURCE_LINGER_S = 0.2

Endpoint = tuple[str | None, str]  # (member address or None for this one, actor name)


# -- functions that travel --------------------------------------------------------------


def portable(fn: Any, *, remote: bool) -> Any:
    """``fn`` itself in one process; on a cluster, where a member can import it.

    Raises:
        ConfigError: On a cluster, ``fn`` is a lambda or a nested function.
    """
    if fn is None or not remote:
        return fn
    return ("fn", *import_path(fn, "Node functions on a cluster must be module-level functions"))


def resolve(fn: Any) -> Any:
    """The function ``portable`` described (loaded on this member if need be)."""
    if isinstance(fn, tuple) and len(fn) == 4 and fn[0] == "fn":
        return load_object(fn[1], fn[2], fn[3])
    return fn


def endpoint_ref(system: ActorSystem, endpoint: Endpoint) -> ActorRef:
    """The ref for an endpoint the driver chose (``name@epoch`` for a cluster actor)."""
    address, name = endpoint
    if address is None or address == system.address:
        return system.ref(name.partition("@")[0])
    return system.ref(name, at=address)


def stable_hash(key: Any) -> int:
    """A hash that is the same in every process (``hash()`` of a str is not)."""
    if isinstance(key, bool):
        return int(key)
    if isinstance(key, float) and key.is_integer():
        key = int(key)  # 1.0 == 1 as a dict key: one partition for both
    if isinstance(key, int):
        return key & 0x7FFFFFFFFFFFFFFF
    if isinstance(key, str):
        return zlib.crc32(key.encode("utf-8", "surrogatepass"))
    if isinstance(key, bytes | bytearray | memoryview):
        return zlib.crc32(key)
    if isinstance(key, tuple):
        h = 0
        for part in key:
            h = zlib.crc32(stable_hash(part).to_bytes(8, "little"), h)
        return h
    return zlib.crc32(repr(key).encode("utf-8", "surrogatepass"))


def default_partition(key: Any, n: int) -> int:
    return stable_hash(key) % n


def _flat_size(value: Any) -> int:
    if isinstance(value, str | bytes | bytearray):
        return len(value) + 8
    return 16


def item_size(item: Any) -> int:
    """A guess of an item's encoded size (one level deep), to keep batches under the
    frame limit."""
    if isinstance(item, str | bytes | bytearray):
        return len(item) + 8
    n = len(item) if isinstance(item, Mapping | list | tuple) else 0
    if n > SIZE_SAMPLE:  # estimated from its first entries: a guess is all batching needs
        head = itertools.islice(item.items() if isinstance(item, Mapping) else item, SIZE_SAMPLE)
        return item_size(dict(head) if isinstance(item, Mapping) else list(head)) * n // SIZE_SAMPLE
    if isinstance(item, Mapping):
        return sum(_flat_size(k) + _flat_size(v) for k, v in item.items()) + 16
    if isinstance(item, list | tuple):
        return sum(_flat_size(v) for v in item) + 16
    return 16


def collect(result: Any, out: list[Any]) -> None:
    """A function's result as outputs: None is none, a generator is several."""
    if result is None:
        return
    if isinstance(result, Iterator) and not isinstance(result, str | bytes):
        out.extend(result)
    else:
        out.append(result)


class ItemFailed(Exception):
    """A Node function raised on an item (after its retries)."""

    def __init__(self, item: Any, exc: BaseException, *, label: str | None = None) -> None:
        super().__init__(str(exc))
        self.item = label if label is not None else repr(item)[:200]
        self.type_name = type(exc).__name__
        self.message = str(exc)
        self.traceback = "".join(tb_module.format_exception(exc))


def give_up_or_retry(
    ctx: Context, item: Any, exc: Exception, attempt: int, retries: int, *, label: str | None = None
) -> None:
    """After ``attempt`` (from 0) failed: log and return to try again, or, with no
    retries left, raise ``ItemFailed``."""
    if attempt == retries:
        raise ItemFailed(item, exc, label=label) from exc
    ctx.log.warning("retrying %s (%s): %r", label or repr(item)[:100], attempt + 1, exc)


def apply_sync(fn: Callable[..., Any], ctx: Context, items: list[Any], retries: int) -> list[Any]:
    """Run a sync map over a batch (in a worker thread, off the event loop)."""
    out: list[Any] = []
    for item in items:
        for attempt in range(retries + 1):
            produced: list[Any] = []
            try:
                collect(fn(ctx, item), produced)
            except Exception as exc:
                give_up_or_retry(ctx, item, exc, attempt, retries)
                continue
            out.extend(produced)
            break
    return out


async def apply_async(
    fn: Callable[..., Any], ctx: Context, items: list[Any], retries: int
) -> list[Any]:
    out: list[Any] = []
    agen = inspect.isasyncgenfunction(fn)
    for item in items:
        for attempt in range(retries + 1):
            produced: list[Any] = []
            try:
                if agen:
                    produced.extend([x async for x in fn(ctx, item)])
                else:
                    collect(await fn(ctx, item), produced)
            except Exception as exc:
                give_up_or_retry(ctx, item, exc, attempt, retries)
                continue
            out.extend(produced)
            break
    return out


def is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)


def take(
    iterator: Iterator[Any], n: int, now: Callable[[], float]
) -> tuple[list[Any], Exception | None, bool]:
    """The next chunk of a sync source (in a worker thread): up to ``n`` items, about
    ``BATCH_BYTES``, or what came within ``SOURCE_LINGER_S``; what the source raised
    (the items before it still count); and whether it may have more."""
    out: list[Any] = []
    size = 0
    started = now()
    try:
        for item in iterator:
            out.append(item)
            size += item_size(item)
            if len(out) >= n or size >= BATCH_BYTES or now() - started >= SOURCE_LINGER_S:
                return out, None, True
    except Exception as exc:  # the user's generator: the caller reports it
        return out, exc, False
    return out, None, False


_POOLS: dict[str, ThreadPoolExecutor] = {}
_POOL_SIZES = {"nodes": 64, "services": 32}


def pool(kind: str) -> ThreadPoolExecutor:
    """The threads sync functions run on: one pool for Node functions, one for services
    and steps. A sync Node function that calls a service (``ctx.call``) waits in its
    thread for the service's thread: from one pool, enough such replicas took every
    thread and the service never ran."""
    executor = _POOLS.get(kind)
    if executor is None:
        executor = _POOLS[kind] = ThreadPoolExecutor(
            max_workers=_POOL_SIZES[kind], thread_name_prefix=f"cfactor-{kind}"
        )
    return executor


_trim: Cancellable | None = None


def _release_memory_soon(loop: asyncio.AbstractEventLoop, clock: Clock) -> None:
    """A second after the last replica here stopped, hand freed heap back to the OS.

    glibc keeps freed memory in its arenas: a process that ran a 100 MB gigasort three
    times stayed at 164 MiB after ``gc.collect()``, and went to 35 MiB on
    ``malloc_trim(0)``; a member stayed at the peak of its biggest run until then.
    """
    global _trim  # noqa: PLW0603 - one pending trim per process
    if _trim is not None:
        _trim.cancel()

    def trim() -> None:
        global _trim  # noqa: PLW0603
        _trim = None
        loop.run_in_executor(pool("services"), _malloc_trim)

    _trim = clock.call_later(1.0, trim)


def _malloc_trim() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6")  # glibc only; elsewhere there is nothing to do
    except OSError:
        return
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


# -- what a Node function sees ----------------------------------------------------------


class Store:
    """The session's key-value store (one per session, shared by all its nodes).

    From an async function: ``await ctx.store.get("k")``. From a sync function (which
    runs in a worker thread): ``ctx.store.get("k")`` returns the value directly.
    """

    def __init__(self, ref: ActorRef, loop: asyncio.AbstractEventLoop) -> None:
        self._ref = ref
        self._loop = loop

    def _call(self, message: tuple[Any, ...]) -> Any:
        coro = self._ref.ask(message)
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a sync Node function, in a worker thread
            return asyncio.run_coroutine_threadsafe(coro, self._loop).result()
        return coro

    def get(self, key: str, default: Any = None) -> Any:
        return self._call(("get", key, default))

    def put(self, key: str, value: Any) -> Any:
        return self._call(("put", key, value))

    def add(self, key: str, delta: float = 1) -> Any:
        """Add ``delta`` to the number at ``key`` (0 if unset); the new value."""
        return self._call(("add", key, delta))

    def items(self) -> Any:
        return self._call(("items",))


class Context:
    """The first argument of every Node function (the seed's ``self *cf.Node``).

    Attributes:
        name: The node's name; ``path`` is ``app.session.flow.node``.
        index: This replica's index among the node's replicas (for a ``cf.Auto`` node,
            a number unique among its replicas).
        replicas: How many replicas the node has (0 for a ``cf.Auto`` node, whose
            count changes).
        log: A logger named after the node.
        store: The session's key-value store.
    """

    def __init__(  # noqa: PLR0917 - what a Node function may want to know
        self,
        system: ActorSystem,
        path: str,
        index: int,
        store: Store,
        services: dict[str, Endpoint],
        replicas: int = 1,
    ) -> None:
        self.system = system
        self.path = path
        self.name = path.rpartition(".")[2]
        self.index = index
        self.replicas = replicas
        self.log = logging.getLogger(f"cfactor.flow.node.{path}")
        self.store = store
        self._services = services

    def service(self, name: str) -> ActorRef:
        """The ref of the app's service ``name``.

        Raises:
            ConfigError: The app has no such service.
        """
        endpoint = self._services.get(name)
        if endpoint is None:
            raise ConfigError(f"the app has no service {name!r} (it has {sorted(self._services)})")
        return endpoint_ref(self.system, endpoint)

    def call(self, name: str, *args: Any, timeout: float | None = None) -> Any:
        """Call a function the app registered with ``app.reg`` (awaitable in async
        functions; the value itself in sync ones)."""
        coro = self.service(name).ask(("call", args), timeout=timeout)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run_coroutine_threadsafe(coro, self.system.loop).result()
        return coro

    def __repr__(self) -> str:
        return f"<Context {self.path}[{self.index}]>"


# -- sending: batches per edge, a window of unanswered batches -----------------------------


class Edge:
    """Where one Node's outputs go: the replicas of one downstream Node (or the monitor).

    ``mode`` is ``spread`` (any replica; the one with the fewest unanswered batches),
    ``part`` (one partition per key), or ``auto`` (one group ref; ends of stream go to
    its host, ``gate``).
    """

    def __init__(
        self,
        mode: str,
        refs: list[ActorRef],
        gate: ActorRef | None,
        partition: Callable[[Any, int], int] | None,
        local: list[bool] | None = None,
    ) -> None:
        self.mode = mode
        self.refs = refs
        #: A replica in this process costs no encoding or copying: in ``spread`` mode
        #: it is preferred by REMOTE_PENALTY unanswered batches.
        self.cost = [0 if is_local else REMOTE_PENALTY for is_local in local or [True] * len(refs)]
        self.gate = gate
        self.partition = partition or default_partition
        n = len(refs) if mode == "part" else 1
        self.buffers: list[list[Any]] = [[] for _ in range(n)]
        self.sizes = [0] * n
        self.unanswered = [0] * len(refs)
        self.turn = 0
        #: key -> partition, so a key seen before costs one dict lookup (a partition
        #: function must give a key the same partition every time anyway).
        self.placed: dict[Any, int] = {}

    def _partition_of(self, key: Any, n: int) -> int:
        p = self.placed.get(key)
        if p is None:
            p = self._call_partition(key, n)
            if len(self.placed) >= PARTITION_CACHE:
                self.placed.clear()
            self.placed[key] = p
        return p

    def put(self, item: Any, emitter: Emitter) -> None:
        if self.mode != "part":
            self._append(0, item, item_size(item), emitter)
            return
        n = len(self.refs)
        if isinstance(item, Mapping):  # a dict output is split across partitions by key
            if not item:
                return
            placed = self.placed
            parts: list[dict[Any, Any] | None] = [None] * n
            for key, value in item.items():
                p = placed.get(key)
                if p is None:
                    p = self._partition_of(key, n)
                part = parts[p]
                if part is None:
                    part = parts[p] = {}
                part[key] = value
            size = item_size(item) / len(item)  # sized once, shared out by keys
            for p, sub in enumerate(parts):
                if sub is not None:
                    self._append(p, sub, int(size * len(sub)) + 16, emitter)
            return
        key = item[0] if isinstance(item, tuple) and len(item) == 2 else item
        try:
            p = self._partition_of(key, n)
        except TypeError:  # an unhashable key: not cached
            p = self._call_partition(key, n)
        self._append(p, item, item_size(item), emitter)

    def _call_partition(self, key: Any, n: int) -> int:
        """Raises: ItemFailed: the partition function raised or gave no int."""
        label = f"<partition of key {key!r:.100}>"
        try:
            p = self.partition(key, n)
        except Exception as exc:
            raise ItemFailed(key, exc, label=label) from exc
        if isinstance(p, bool) or not isinstance(p, int):
            wrong = TypeError(f"partition({key!r:.60}, {n}) returned {p!r:.60}, not an int")
            raise ItemFailed(key, wrong, label=label)
        return p % n

    def _append(self, index: int, item: Any, size: int, emitter: Emitter) -> None:
        buffer = self.buffers[index]
        buffer.append(item)
        self.sizes[index] += size
        if len(buffer) >= emitter.batch_items or self.sizes[index] >= BATCH_BYTES:
            self.send(index, emitter)

    def send(self, index: int, emitter: Emitter) -> None:
        buffer = self.buffers[index]
        if not buffer:
            return
        self.buffers[index] = []
        self.sizes[index] = 0
        if self.mode == "part":
            target = index
        else:  # the replica with the fewest unanswered batches (a remote one counts
            # REMOTE_PENALTY more), taking turns on ties
            n = len(self.refs)
            target = self.turn % n
            self.turn += 1
            unanswered, cost = self.unanswered, self.cost
            for k in range(n):
                if unanswered[k] + cost[k] < unanswered[target] + cost[target]:
                    target = k
        emitter.launch(self, target, buffer)

    def flush(self, emitter: Emitter) -> None:
        for index in range(len(self.buffers)):
            self.send(index, emitter)

    def ends(self) -> list[ActorRef]:
        """Who gets this sender's end of stream."""
        if self.mode == "auto":
            assert self.gate is not None
            return [self.gate]
        return self.refs


class Emitter:
    """One replica's outputs: batched per edge, sent as asks, a bounded window of them."""

    def __init__(self, sender: tuple[str, int], edges: list[Edge], batch_items: int) -> None:
        self.sender = sender
        self.edges = edges
        self.batch_items = batch_items
        self.window = max(MIN_WINDOW, WINDOW_PER_TARGET * sum(len(e.refs) for e in edges))
        self.pending: set[asyncio.Future[Any]] = set()
        self.error: BaseException | None = None

    def put(self, item: Any) -> None:
        for edge in self.edges:
            edge.put(item, self)

    def launch(self, edge: Edge, target: int, items: list[Any]) -> None:
        edge.unanswered[target] += 1
        ask = edge.refs[target].ask(("batch", self.sender, items), timeout=math.inf)
        future = asyncio.ensure_future(ask)
        self.pending.add(future)
        future.add_done_callback(partial(self._answered, edge, target, items))

    def _answered(
        self, edge: Edge, target: int, items: list[Any], future: asyncio.Future[Any]
    ) -> None:
        self.pending.discard(future)
        edge.unanswered[target] -= 1
        if future.cancelled():
            return
        error = future.exception()
        if isinstance(error, FrameTooLarge) and len(items) > 1:
            # The batch's size was a guess (item_size): send it again as two halves.
            half = len(items) // 2
            self.launch(edge, target, items[:half])
            self.launch(edge, target, items[half:])
        elif error is not None and self.error is None:
            self.error = error

    async def pace(self) -> None:
        """Wait while the window is full (this is the backpressure)."""
        while len(self.pending) >= self.window:
            await asyncio.wait(self.pending, return_when=asyncio.FIRST_COMPLETED)
        self._raise()

    def flush(self) -> None:
        for edge in self.edges:
            edge.flush(self)

    async def drain(self) -> None:
        """Send what is buffered and wait until every batch was answered."""
        self.flush()
        while self.pending:  # a batch split in two adds to it while we wait
            await asyncio.wait(set(self.pending))
        self._raise()

    async def end(self) -> None:
        """Drain, then tell everyone downstream that this sender is done."""
        await self.drain()
        ends = [
            ref.ask(("eos", self.sender), timeout=math.inf) for e in self.edges for ref in e.ends()
        ]
        await asyncio.gather(*ends)

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def cancel(self) -> tuple[int, int]:
        """Give up: buffered outputs are dropped, batches in flight cancelled; how many
        of each (for the log)."""
        buffered = sum(len(b) for edge in self.edges for b in edge.buffers)
        for edge in self.edges:
            edge.buffers = [[] for _ in edge.buffers]
        in_flight = len(self.pending)
        for future in self.pending:
            future.cancel()
        return buffered, in_flight


def make_edges(system: ActorSystem, plan: Any) -> list[Edge]:
    """The edges a plan describes, as refs on this member."""
    out = []
    for mode, targets, gate, partition in plan:
        refs = [endpoint_ref(system, tuple(t)) for t in targets]
        local = [address is None or address == system.address for address, _ in targets]
        gate_ref = endpoint_ref(system, tuple(gate)) if gate is not None else None
        out.append(Edge(mode, refs, gate_ref, resolve(partition), local))
    return out


# -- the replicas ------------------------------------------------------------------------


class NodeWorker(Actor):
    """One replica of a Node: a source, a map or a reduce (see the module docstring).

    Its constructor takes one plan (plain values, so it can be placed on any member).
    """

    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan
        self.kind: str = plan["kind"]
        self.path: str = plan["node"]
        self.index: int = plan["index"]
        self.expected: int = plan["expected"]
        self.retries: int = plan["retries"]
        self.auto: bool = plan.get("auto_replica", False)
        self.ends: set[tuple[Any, ...]] = set()
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
        if self.auto:
            self.index = self.ref.uid
        self.fn = resolve(plan["fn"])
        self.sync = not is_async(self.fn)
        self.monitor = endpoint_ref(system, plan["monitor"])
        store = Store(endpoint_ref(system, plan["store"]), system.loop)
        self.ctx = Context(
            system,
            self.path,
            self.index,
            store,
            dict(plan["services"]),
            replicas=plan.get("replicas", 1),
        )
        edges = make_edges(system, plan["edges"])
        self.emitter = Emitter((self.path, self.index), edges, plan["batch"])

    async def on_stop(self) -> None:
        self.emitter.cancel()
        self.items = []
        _release_memory_soon(self.system.loop, self.system.clock)

    async def receive(self, message: Any) -> Any:
        match message:
            case ("batch", _sender, items):
                await self._batch(list(items))
                return None
            case ("eos", sender):
                await self._end_from(tuple(sender))
                return None
            case "start" if self.kind == "source":
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
                    pool("nodes"), apply_sync, self.fn, self.ctx, items, self.retries
                )
            else:
                out = await apply_async(self.fn, self.ctx, items, self.retries)
            await self._emit(out)
            if self.auto:  # answer only once the outputs were taken downstream
                await self.emitter.drain()
            elif self.ref.statistics().depth == 0:
                self.emitter.flush()  # nothing more queued: do not sit on a partial batch
        except ItemFailed as exc:
            await self._fail(exc.item, exc.type_name, exc.message, exc.traceback)
        except CfactorError as exc:
            await self._fail("(sending downstream)", type(exc).__name__, str(exc), "")
        self._report()

    async def _emit(self, out: list[Any]) -> None:
        self.n_out += len(out)
        emitter = self.emitter
        for item in out:
            emitter.put(item)
            if len(emitter.pending) >= emitter.window:
                await emitter.pace()
        emitter._raise()

    async def _end_from(self, sender: tuple[Any, ...]) -> None:
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
                await self._fail(exc.item, exc.type_name, exc.message, exc.traceback)
            except CfactorError as exc:
                await self._fail("(sending downstream)", type(exc).__name__, str(exc), "")
        try:
            if not self.failed:
                await self.emitter.drain()
        except CfactorError as exc:
            await self._fail("(sending downstream)", type(exc).__name__, str(exc), "")
        # The final figures go before the end of stream, so the run's totals are whole.
        self.finished = True
        await self._final_report()
        try:
            if not self.failed:
                await self.emitter.end()
        except CfactorError as exc:
            await self._fail("(end of stream)", type(exc).__name__, str(exc), "")

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
                        pool("nodes"), _reduce_sync, fn, ctx, items
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
        try:
            last_flush = clock.now()
            if inspect.isasyncgenfunction(fn):
                async for item in fn(ctx, self.plan["arg"]):
                    await self._emit([item])
                    if clock.now() - last_flush >= SOURCE_LINGER_S:
                        self.emitter.flush()
                        last_flush = clock.now()
                        self._report()
            else:
                produced = (
                    await fn(ctx, self.plan["arg"])
                    if inspect.iscoroutinefunction(fn)
                    else await loop.run_in_executor(pool("nodes"), fn, ctx, self.plan["arg"])
                )
                iterator = iter(() if produced is None else produced)
                until = clock.now
                reading = loop.run_in_executor(pool("nodes"), take, iterator, batch, until)
                while True:
                    chunk, error, more = await reading
                    if more and error is None:  # read the next chunk while this one goes
                        reading = loop.run_in_executor(pool("nodes"), take, iterator, batch, until)
                    await self._emit(chunk)
                    if error is not None:
                        await self._source_failed(error)
                        break
                    if not more:
                        break
                    self.emitter.flush()  # a chunk is a batch's worth, or all there was
                    self._report()
        except ItemFailed as exc:  # a partition function, on the way out
            await self._fail(exc.item, exc.type_name, exc.message, exc.traceback)
        except CfactorError as exc:
            await self._fail("(sending downstream)", type(exc).__name__, str(exc), "")
        except Exception as exc:  # the user's function or async generator raised
            await self._source_failed(exc)
        await self._finish()

    async def _source_failed(self, exc: Exception) -> None:
        failed = ItemFailed(None, exc, label=f"<source after {self.n_out} items>")
        await self._fail(failed.item, failed.type_name, failed.message, failed.traceback)

    # -- reporting --------------------------------------------------------------------

    async def _fail(self, item: str, type_name: str, message: str, traceback: str) -> None:
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
        level = logging.WARNING if item.startswith("(") else logging.ERROR
        log.log(
            level, "%s[%d] failed on %s: %s: %s", self.path, self.index, item, type_name, message
        )
        try:
            await self.monitor.tell(
                ("failed", self.path, self.index, item, type_name, message, traceback)
            )
        except CfactorError:
            log.exception("%s[%d]: could not report the failure", self.path, self.index)

    async def _final_report(self) -> None:
        try:
            await self.monitor.tell(self._figures())
        except CfactorError:
            log.exception("%s[%d]: could not report its figures", self.path, self.index)

    def _figures(self) -> tuple[Any, ...]:
        return (
            "progress",
            self.path,
            self.index,
            self.n_in,
            self.n_out,
            self.finished,
            self.dropped,
        )

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


#: Sync reduces in one process run one at a time: they hold the GIL anyway, and one at
#: a time a member holds one partition's working copies, not all of them.
_REDUCING = threading.Lock()


def _reduce_sync(fn: Callable[..., Any], ctx: Context, items: list[Any]) -> list[Any]:
    out: list[Any] = []
    with _REDUCING:
        collect(fn(ctx, items), out)
    return out


class AutoHost(Actor):
    """Hosts a ``cf.Auto`` map: a replicated group here, plus its ends of stream.

    Upstream replicas send batches to the group's ref and their end of stream here;
    once every upstream sender ended, every batch was processed and forwarded (the
    group's replicas answer a batch only after that), so the host ends the stream
    downstream on the group's behalf.
    """

    def __init__(self, plan: dict[str, Any], auto: dict[str, Any]) -> None:
        self.plan = plan
        self.auto = auto
        self.ends: set[tuple[Any, ...]] = set()
        self.group: ActorRef | None = None
        self.reporting: Any = None

    @property
    def group_name(self) -> str:
        return f"{self.ref.name}-replicas"

    async def on_start(self) -> None:
        from cfactor.flow.model import Auto  # noqa: PLC0415

        replica_plan = {**self.plan, "auto_replica": True}
        self.group = await self.system.spawn(
            NodeWorker,
            replica_plan,
            name=self.group_name,
            placement="local",
            replicas=Auto(**self.auto).replicas(),
            mailbox_capacity=1000,
        )
        self.monitor = endpoint_ref(self.system, self.plan["monitor"])
        self.edges = make_edges(self.system, self.plan["edges"])
        self._schedule_report()

    def _schedule_report(self) -> None:
        self.reporting = self.system.clock.call_later(REPORT_EVERY_S, self._report)

    def _report(self) -> None:
        group = self.system.group(self.group_name)
        if group is None:
            return
        try:
            self.monitor.tell_nowait(("replicas", self.plan["node"], group.count))
        except CfactorError:
            log.debug("%s: replica count report skipped", self.plan["node"])
        self._schedule_report()

    async def on_stop(self) -> None:
        if self.reporting is not None:
            self.reporting.cancel()
        if self.group is not None:
            await self.group.stop()

    async def receive(self, message: Any) -> Any:
        match message:
            case "where":
                return (self.system.address, self.group_name)
            case ("eos", sender):
                sender = tuple(sender)
                if sender in self.ends:
                    log.warning(
                        "%s: a second end of stream from %r ignored", self.plan["node"], sender
                    )
                    return None
                self.ends.add(sender)
                if len(self.ends) == self.plan["expected"]:
                    me = (self.plan["node"], -1)
                    # Done: shown as finished (it has no items of its own to count).
                    await self.monitor.tell(("progress", self.plan["node"], -1, 0, 0, True, 0))
                    await asyncio.gather(
                        *(
                            ref.ask(("eos", me), timeout=math.inf)
                            for e in self.edges
                            for ref in e.ends()
                        )
                    )
                return None
        raise ValueError(f"an auto host got an unknown message {message!r:.100}")


class StepWorker(Actor):
    """Runs one stage-gated step when asked: a shell command or a function."""

    def __init__(
        self, path: str, action: Any, store: Endpoint, services: dict[str, Endpoint]
    ) -> None:
        self.path = path
        self.action = action
        self.store_endpoint = store
        self.services = services

    async def receive(self, message: Any) -> Any:
        if message != "run":
            raise ValueError(f"a step got an unknown message {message!r:.100}")
        started = self.system.clock.now()
        if isinstance(self.action, tuple) and self.action and self.action[0] == "shell":
            outcome = await self._shell(*self.action[1:])
        else:
            outcome = await self._call()
        return (*outcome, self.system.clock.now() - started)

    async def _shell(
        self, command: str, cwd: str | None, env: dict[str, str] | None, timeout_s: float | None
    ) -> tuple[bool, int | None, str, str]:
        import os  # noqa: PLC0415 - only shell steps need the environment

        step_log.info("%s: $ %s", self.path, command)
        try:
            process = await asyncio.create_subprocess_shell(
                command,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=cwd,
                env={**os.environ, **env} if env else None,
                start_new_session=True,  # its own process group: a kill reaches its children
            )
        except OSError as exc:
            return (False, None, "", f"could not start: {exc}")
        try:
            stdout, stderr = await self.system.clock.wait_for(process.communicate(), timeout_s)
        except TimeoutError:
            _kill_group(process.pid)
            stdout, stderr = await process.communicate()
            out, err = stdout.decode(errors="replace"), stderr.decode(errors="replace")
            return (False, None, _tail(out), _tail(err) + f"\n(killed after {timeout_s:g} s)")
        except asyncio.CancelledError:  # the run is being stopped
            _kill_group(process.pid)
            raise
        out, err = stdout.decode(errors="replace"), stderr.decode(errors="replace")
        for line in out.splitlines():
            step_log.info("%s | %s", self.path, line)
        for line in err.splitlines():
            step_log.warning("%s ! %s", self.path, line)
        code = process.returncode
        step_log.info("%s: exit code %s", self.path, code)
        return (code == 0, code, _tail(out), _tail(err))

    async def _call(self) -> tuple[bool, int | None, str, str]:
        fn = resolve(self.action)
        store = Store(endpoint_ref(self.system, self.store_endpoint), self.system.loop)
        ctx = Context(self.system, self.path, 0, store, dict(self.services))
        try:
            if is_async(fn):
                result = await fn(ctx)
            else:
                result = await self.system.loop.run_in_executor(pool("services"), fn, ctx)
        except Exception as exc:
            return (False, None, "", "".join(tb_module.format_exception(exc)))
        return (True, None, "" if result is None else str(result), "")


#: How much of a step's stdout and stderr its result keeps (all of it goes to the log):
#: the result travels in one frame, and a frame has a size limit.
OUTPUT_TAIL = 64 * 1024


def _tail(text: str) -> str:
    if len(text) <= OUTPUT_TAIL:
        return text
    return (
        f"({len(text) - OUTPUT_TAIL} characters before this are in the log)\n" + text[-OUTPUT_TAIL:]
    )


def _kill_group(pid: int) -> None:
    import os  # noqa: PLC0415
    import signal  # noqa: PLC0415

    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


class SessionStore(Actor):
    """A session's key-value store."""

    def __init__(self) -> None:
        self.data: dict[Any, Any] = {}

    async def receive(self, message: Any) -> Any:
        match message:
            case ("get", key, default):
                return self.data.get(key, default)
            case ("put", key, value):
                self.data[key] = value
                return None
            case ("add", key, delta):
                self.data[key] = self.data.get(key, 0) + delta
                return self.data[key]
            case ("items",):
                return dict(self.data)
        raise ValueError(f"the session store got an unknown message {message!r:.100}")


class FunctionService(Actor):
    """A function registered with ``app.reg``: ``("call", args)`` runs it."""

    def __init__(self, fn: Any) -> None:
        self.fn = resolve(fn)

    async def receive(self, message: Any) -> Any:
        match message:
            case ("call", args):
                if is_async(self.fn):
                    return await self.fn(*args)
                return await self.system.loop.run_in_executor(pool("services"), self.fn, *args)
        raise ValueError(f"expected ('call', args), got {message!r:.100}")


__all__ = [
    "AutoHost",
    "Context",
    "FunctionService",
    "NodeWorker",
    "SessionStore",
    "StepWorker",
    "Store",
]
