"""Sending a replica's outputs: batches per edge, a window of unanswered batches.

A replica's outputs are buffered per downstream edge and sent in batches, each batch
an ``ask`` whose answer means "taken and processed". A replica keeps a few batches in
flight (its window) and waits when the window is full, so a slow Node holds its
upstream back: bounded mailboxes, bounded memory, nothing dropped. How a replica ends
its stream, and how a ``cf.Auto`` group speaks for its replicas, is in
``cfactor.flow.workers``; docs/flow.md has the picture.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import zlib
from collections.abc import Iterator, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from cfactor.errors import FrameTooLarge
from cfactor.flow.context import endpoint_ref
from cfactor.flow.functions import ItemFailed, resolve
from cfactor.flow.messages import Batch, EndOfStream

if TYPE_CHECKING:
    from collections.abc import Callable

    from cfactor._core.ref import ActorRef
    from cfactor._core.system import ActorSystem
    from cfactor.flow.messages import EdgePlan

#: Items per batch, and the bytes (roughly) after which a batch goes early.
BATCH_ITEMS = 256
BATCH_BYTES = 1 << 20
#: Batches one replica keeps unanswered per downstream replica (at least MIN_WINDOW).
WINDOW_PER_TARGET = 2
MIN_WINDOW = 4
#: How many unanswered batches a replica in another process counts as, when choosing
#: where a batch for a map goes: work stays local until the local replicas are busy.
REMOTE_PENALTY = 2
#: How many entries of a big dict or list ``item_size`` looks at.
SIZE_SAMPLE = 16
#: How many keys an edge remembers the partition of.
PARTITION_CACHE = 1 << 17
#: A source sends what it has after this long, even if the batch is not full.
SOURCE_LINGER_S = 0.2


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
        ask = edge.refs[target].ask(Batch(self.sender, items), timeout=math.inf)
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
            ref.ask(EndOfStream(self.sender), timeout=math.inf)
            for e in self.edges
            for ref in e.ends()
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


def make_edges(system: ActorSystem, plans: tuple[EdgePlan, ...]) -> list[Edge]:
    """The edges a plan describes, as refs on this member."""
    out = []
    for plan in plans:
        refs = [endpoint_ref(system, target) for target in plan.targets]
        local = [address is None or address == system.address for address, _ in plan.targets]
        gate = plan.gate
        gate_ref = endpoint_ref(system, gate) if gate is not None else None
        out.append(Edge(plan.mode, refs, gate_ref, resolve(plan.partition), local))
    return out
