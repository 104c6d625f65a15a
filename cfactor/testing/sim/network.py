"""The simulated network: the memory network with seeded faults and a trace of every frame.

Frames between two members travel on a *link* (one per direction) that keeps them in
order, as a TCP connection does: a delayed frame holds up the ones behind it. Faults:

- **drop** a frame (counted; its credit goes back to the sender, as a session layer
  that noticed the gap would, so the window does not shrink for good);
- **duplicate** a frame (delivered twice, counted);
- **delay** a frame (and those behind it on its link); links delay independently, so
  frames on different links *reorder* against each other;
- **partition**: a link (one way) or both links between two members carry nothing;
  frames sent meanwhile are dropped and counted;
- **crash**: the member vanishes; the others hear at once (its sockets closed);
- **pause**: its frames wait in the link until it resumes (its socket buffers).

Every frame delivered, dropped or duplicated goes into the trace hash, with the virtual
time: two runs of one seed produce the same hash or something is not deterministic.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

from cfactor.abc import Kind
from cfactor.errors import ProtocolError
from cfactor.testing.memory import MemoryNetwork

if TYPE_CHECKING:
    import contextvars
    import random
    from collections.abc import Callable

    from cfactor.abc import Envelope
    from cfactor.testing.memory import MemoryTransport


class Trace:
    """A running hash of what happened, and the last events in words, for the report."""

    def __init__(self, keep: int = 40) -> None:
        self._hash = hashlib.sha256()
        self.events = 0
        self.recent: deque[str] = deque(maxlen=keep)

    def add(self, now: float, what: str, data: bytes = b"") -> None:
        self.events += 1
        self._hash.update(struct.pack("<d", now))
        self._hash.update(what.encode())
        self._hash.update(data)
        self.recent.append(f"{now:10.4f} {what}")

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class FaultRates:
    """Per-frame fault probabilities of one run (drawn from its seed)."""

    __slots__ = ("delay", "delay_max_s", "drop", "duplicate")

    def __init__(
        self,
        *,
        drop: float = 0.0,
        duplicate: float = 0.0,
        delay: float = 0.0,
        delay_max_s: float = 0.05,
    ) -> None:
        self.drop = drop
        self.duplicate = duplicate
        self.delay = delay
        self.delay_max_s = delay_max_s


class _Link:
    __slots__ = ("due", "frames", "timer")

    def __init__(self) -> None:
        self.frames: deque[tuple[float, bytes]] = deque()
        self.due = 0.0
        self.timer: asyncio.TimerHandle | None = None


class SimNetwork(MemoryNetwork):
    """A ``MemoryNetwork`` whose links lose, repeat, delay and cut frames, by seed.

    Args:
        rng: The run's one random source.
        trace: Where deliveries and faults are recorded.
        context_of: The ``contextvars`` context of the member at an address: what a
            member receives runs as that member's code.
        on_envelope: Called with ``(event, source, dest, envelope)`` for every frame
            dropped, duplicated or delivered (``event`` says which); the simulation's
            bookkeeping of workload messages.
    """

    def __init__(
        self,
        rng: random.Random,
        trace: Trace,
        context_of: Callable[[str], contextvars.Context | None],
        on_envelope: Callable[[str, str, str, Envelope], None] | None = None,
    ) -> None:
        super().__init__()
        self.rng = rng
        self.trace = trace
        self.rates = FaultRates()
        self.context_of = context_of
        self.on_envelope = on_envelope
        self.cut: set[tuple[str, str]] = set()
        self.paused: set[str] = set()
        self.faults: Counter[str] = Counter()
        self._links: dict[tuple[str, str], _Link] = {}

    # -- faults the simulation turns on and off -----------------------------------------

    def partition(self, a: str, b: str, *, both_ways: bool = True) -> set[tuple[str, str]]:
        """Cut the link from ``a`` to ``b`` (and back); the links cut, for ``heal``."""
        cut = {(a, b), (b, a)} if both_ways else {(a, b)}
        self.cut |= cut
        self.faults["partition"] += 1
        arrow = "<->" if both_ways else "->"
        self.trace.add(asyncio.get_running_loop().time(), f"partition {a} {arrow} {b}")
        return cut

    def heal(self, links: set[tuple[str, str]] | None = None) -> None:
        """Join ``links`` again (default: every link)."""
        if links is None:
            self.cut.clear()
        else:
            self.cut -= links

    def pause(self, address: str) -> None:
        self.paused.add(address)

    def resume(self, address: str) -> None:
        self.paused.discard(address)
        for key, link in self._links.items():
            if key[1] == address and link.frames:
                self._arm(link, key)

    def kill(self, address: str) -> None:
        """A crash: the member is gone; each other member hears it on its own time."""
        member = self.members.pop(address, None)
        if member is not None:
            member._killed = True
        loop = asyncio.get_running_loop()
        for key, link in self._links.items():
            if address in key:
                self._drop_all(key, link, "lost with the crash")
        for other in list(self.members.values()):
            context = self.context_of(other.address)
            loop.call_soon(other._lose, address, context=context.copy() if context else None)

    # -- the hooks MemoryTransport calls --------------------------------------------------

    def deliver(self, source: str, dest: MemoryTransport, frames: list[bytes]) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        key = (source, dest.address)
        link = self._links.get(key)
        if link is None:
            link = self._links[key] = _Link()
        rates, rng = self.rates, self.rng
        for frame in frames:
            if key in self.cut:
                self._lost(key, frame, "cut")
                continue
            if rates.drop and rng.random() < rates.drop:
                self._lost(key, frame, "drop")
                continue
            due = now
            if rates.delay and rng.random() < rates.delay:
                due += rng.uniform(0.0, rates.delay_max_s)
                self.faults["delay"] += 1
            link.due = max(link.due, due)
            link.frames.append((link.due, frame))
            if rates.duplicate and rng.random() < rates.duplicate:
                self.faults["duplicate"] += 1
                self._observe("duplicate", key, frame)
                link.frames.append((link.due, frame))
        self._arm(link, key)

    def deliver_credit(self, source: str, dest: MemoryTransport, count: int) -> None:
        # Credits ride the same links but are never lost: a lost grant is a protocol
        # matter the real transport settles on reconnect, which is not simulated here.
        context = self.context_of(dest.address)
        asyncio.get_running_loop().call_soon(
            dest._credited, source, count, context=context.copy() if context else None
        )

    # -- inside ---------------------------------------------------------------------------

    def _arm(self, link: _Link, key: tuple[str, str]) -> None:
        if link.timer is not None or not link.frames:
            return
        loop = asyncio.get_running_loop()
        link.timer = loop.call_at(max(link.frames[0][0], loop.time()), self._flush_link, key)

    def _flush_link(self, key: tuple[str, str]) -> None:
        link = self._links[key]
        link.timer = None
        source, address = key
        if address in self.paused:
            return  # held in the link until the member resumes
        dest = self.members.get(address)
        if dest is None:
            self._drop_all(key, link, "no such member")
            return
        now = asyncio.get_running_loop().time()
        batch: list[bytes] = []
        while link.frames and link.frames[0][0] <= now:
            frame = link.frames.popleft()[1]
            self.trace.add(now, f"{source}>{address}", frame)
            self._observe("deliver", key, frame)
            batch.append(frame)
        if batch:
            context = self.context_of(address)
            asyncio.get_running_loop().call_soon(
                dest._receive, source, batch, context=context.copy() if context else None
            )
        self._arm(link, key)

    def _lost(self, key: tuple[str, str], frame: bytes, why: str) -> None:
        self.faults[why] += 1
        now = asyncio.get_running_loop().time()
        self.trace.add(now, f"{why} {key[0]}>{key[1]}", frame)
        self._observe(why, key, frame)
        source = self.members.get(key[0])
        if source is not None:  # the sender gets its credit back
            context = self.context_of(key[0])
            asyncio.get_running_loop().call_soon(
                source._credited, key[1], 1, context=context.copy() if context else None
            )

    def _drop_all(self, key: tuple[str, str], link: _Link, why: str) -> None:
        if link.timer is not None:
            link.timer.cancel()
            link.timer = None
        while link.frames:
            self._lost(key, link.frames.popleft()[1], why)

    def _observe(self, event: str, key: tuple[str, str], frame: bytes) -> None:
        if self.on_envelope is None:
            return
        dest = self.members.get(key[1])
        codec = dest._codec if dest is not None else None
        if codec is None:
            return
        try:
            envelope: Any = codec.decode(frame)
        except ProtocolError:
            return
        if envelope.kind in (Kind.TELL, Kind.ASK):
            self.on_envelope(event, key[0], key[1], envelope)
