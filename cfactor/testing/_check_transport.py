"""The transport conformance suite: what every ``cfactor.abc.Transport`` must do.

Shipped for third-party transports, as trio ships ``check_two_way_stream``: give
:func:`check_transport` a :class:`TransportKit` that makes your transport, and it runs
every check (see docs/testing.md). The checks talk to transports directly through a
recording handler, so they pin the contract the core relies on: order, bounded queues
with backpressure through credits, answers exempt from the queue bound, loss detection,
closed versus broken, idempotent close. The project runs them against the memory
transport and ZeroMQ over tcp and ipc (tests/transports/test_conformance.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

from cfactor.abc import Envelope, Kind, RefAddress, Transport
from cfactor.errors import (
    FrameTooLarge,
    MailboxFull,
    MemberUnreachable,
    MessageNotSerializable,
    SystemClosed,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator


class TransportKit(Protocol):
    """Makes transports of one kind, and the addresses they listen on."""

    def make(self, **options: Any) -> Transport:
        """A new, unstarted transport. The checks pass ``send_queue_limit`` and
        ``credit_window`` (ints) to bound the send queue and the credit window; the
        transport keeps the default frame limit (4 MiB: a 5 MiB message must be
        refused with ``FrameTooLarge``)."""
        ...

    def listen(self) -> str:
        """An address a new transport can listen on (each call a fresh one)."""
        ...

    def unused_address(self) -> str:
        """A well-formed address where nothing listens."""
        ...

    @property
    def loss_bound_s(self) -> float:
        """How long a peer's loss may take to notice, in seconds."""
        ...


@contextlib.contextmanager
def expect_raises(*errors: type[BaseException]) -> Iterator[None]:
    """pytest.raises without pytest: the checks run under any test runner."""
    try:
        yield
    except errors:
        return
    raise AssertionError(f"expected {' or '.join(e.__name__ for e in errors)}")


class Recorder:
    """A TransportHandler that records what arrives and credits at will."""

    def __init__(self, *, credit: bool = True) -> None:
        self.auto_credit = credit
        self.transport: Transport | None = None
        self.received: list[tuple[str, Envelope]] = []
        self.uncredited: list[str] = []
        self.lost: list[str] = []
        self.arrived = asyncio.Event()

    def envelope_received(self, peer: str, envelope: Envelope) -> None:
        self.received.append((peer, envelope))
        self.arrived.set()
        assert self.transport is not None
        if self.auto_credit:
            self.transport.credit(peer)
        else:
            self.uncredited.append(peer)

    def grant_all(self) -> None:
        assert self.transport is not None
        for peer in self.uncredited:
            self.transport.credit(peer)
        self.uncredited.clear()

    def peer_lost(self, peer: str) -> None:
        self.lost.append(peer)

    def make_ref(self, address: RefAddress) -> Any:
        return ("ref", address)

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        async def enough() -> None:
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(enough(), timeout)


async def started(kit: TransportKit, handler: Recorder, **options: Any) -> Transport:
    transport = kit.make(**options)
    handler.transport = transport
    await transport.start(kit.listen(), handler)
    return transport


class Pair:
    def __init__(self, a: Transport, b: Transport, ha: Recorder, hb: Recorder) -> None:
        self.a, self.b, self.ha, self.hb = a, b, ha, hb


async def make_pair(kit: TransportKit, *, credit_b: bool = True, **options: Any) -> Pair:
    ha, hb = Recorder(), Recorder(credit=credit_b)
    a = await started(kit, ha, **options)
    b = await started(kit, hb, **options)
    return Pair(a, b, ha, hb)


@asynccontextmanager
async def _pair(kit: TransportKit) -> AsyncIterator[Pair]:
    p = await make_pair(kit)
    try:
        yield p
    finally:
        await p.a.aclose()
        await p.b.aclose()


def tell(n: Any, target: str = "sink") -> Envelope:
    return Envelope(Kind.TELL, target, None, 0, None, n)


async def check_envelopes_arrive_in_order_with_their_sender(kit: TransportKit) -> None:
    async with _pair(kit) as pair:
        for i in range(5000):
            await pair.a.send(pair.b.address, tell(i))
        await pair.hb.wait_for(5000)
        assert [env.payload for _, env in pair.hb.received] == list(range(5000))
        assert {peer for peer, _ in pair.hb.received} == {pair.a.address}
        assert pair.a.statistics().frames_sent == 5000
        assert pair.b.statistics().frames_received == 5000


async def check_every_field_and_refs_cross(kit: TransportKit) -> None:
    async with _pair(kit) as pair:
        sender = RefAddress(pair.a.address, "asker", 7)
        payload = ("hello", RefAddress(pair.a.address, "other", 3), [1, 2.5, b"x"], {"k": None})
        await pair.a.send(pair.b.address, Envelope(Kind.ASK, "sink", sender, 42, 1.5, payload))
        await pair.hb.wait_for(1)
        env = pair.hb.received[0][1]
        assert (env.kind, env.target, env.sender, env.correlation_id, env.deadline) == (
            Kind.ASK,
            "sink",
            sender,
            42,
            1.5,
        )
        assert env.payload == (
            "hello",
            ("ref", RefAddress(pair.a.address, "other", 3)),
            [1, 2.5, b"x"],
            {"k": None},
        )


async def check_answers_travel_back_to_the_asker(kit: TransportKit) -> None:
    async with _pair(kit) as pair:
        await pair.a.send(pair.b.address, Envelope(Kind.ASK, "sink", None, 1, None, "q"))
        await pair.hb.wait_for(1)
        peer = pair.hb.received[0][0]
        pair.b.send_nowait(peer, Envelope(Kind.REPLY, peer, None, 1, None, "a"))
        await pair.ha.wait_for(1)
        assert pair.ha.received[0] == (
            pair.b.address,
            Envelope(Kind.REPLY, peer, None, 1, None, "a"),
        )


async def check_what_cannot_cross_is_refused_at_the_sender(kit: TransportKit) -> None:
    async with _pair(kit) as pair:
        with expect_raises(MessageNotSerializable):
            pair.a.send_nowait(pair.b.address, tell({1, 2}))
        with expect_raises(FrameTooLarge):
            pair.a.send_nowait(pair.b.address, tell(b"x" * (5 * 1024 * 1024)))
        pair.a.send_nowait(pair.b.address, tell("still fine"))
        await pair.hb.wait_for(1)
        assert pair.hb.received[0][1].payload == "still fine"


async def check_a_peer_that_grants_no_credit_pushes_back_with_bounded_queues(
    kit: TransportKit,
) -> None:
    p = await make_pair(kit, credit_b=False, send_queue_limit=50, credit_window=20)
    try:
        accepted = 0
        with expect_raises(MailboxFull):
            for i in range(10_000):
                p.a.send_nowait(p.b.address, tell(i))
                accepted += 1
                if i % 10 == 0:
                    await asyncio.sleep(0.001)
        assert accepted <= 50 + 20 + 10  # the queue, the window, one batch of slack
        await asyncio.sleep(0.05)
        assert len(p.hb.received) <= 20  # the receiver never got more than the window
        assert p.a.statistics().queued <= 50
        # send waits rather than failing; credit lets it through.
        waiting = asyncio.create_task(p.a.send(p.b.address, tell("patient")))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        for _ in range(50):
            p.hb.grant_all()
            await asyncio.sleep(0.01)
            if waiting.done():
                break
        await asyncio.wait_for(waiting, 5)
        # Keep granting: everything queued arrives, in order, nothing lost.
        for _ in range(200):
            p.hb.grant_all()
            if p.hb.received and p.hb.received[-1][1].payload == "patient":
                break
            await asyncio.sleep(0.01)
        payloads = [env.payload for _, env in p.hb.received]
        assert payloads == [*range(accepted), "patient"]
    finally:
        await p.a.aclose()
        await p.b.aclose()


async def check_answers_are_not_refused_for_queue_space(kit: TransportKit) -> None:
    # An answer's number is bounded by the asks the peer sent, so refusing it would
    # only turn a slow peer into a lost answer.
    p = await make_pair(kit, credit_b=False, send_queue_limit=5, credit_window=5)
    try:
        for i in range(10):
            p.a.send_nowait(p.b.address, Envelope(Kind.REPLY, "x", None, i, None, i))
        with expect_raises(MailboxFull):
            for i in range(20):
                p.a.send_nowait(p.b.address, tell(i))
    finally:
        await p.a.aclose()
        await p.b.aclose()


async def check_losing_a_peer_is_noticed_and_sends_fail_fast(kit: TransportKit) -> None:
    p = await make_pair(kit)
    try:
        await p.a.send(p.b.address, tell("hello"))
        await p.hb.wait_for(1)
        await p.b.aclose()
        deadline = asyncio.get_running_loop().time() + kit.loss_bound_s
        while p.b.address not in p.ha.lost:
            assert asyncio.get_running_loop().time() < deadline, "loss not noticed in time"
            await asyncio.sleep(0.01)
        assert p.ha.lost.count(p.b.address) == 1
        assert not p.a.is_reachable(p.b.address)
        with expect_raises(MemberUnreachable):
            p.a.send_nowait(p.b.address, tell("anyone?"))
    finally:
        await p.a.aclose()


async def check_a_peer_that_never_answers_is_lost_within_the_bound(kit: TransportKit) -> None:
    handler = Recorder()
    a = await started(kit, handler)
    nobody = kit.unused_address()
    try:
        started_at = asyncio.get_running_loop().time()
        try:
            a.send_nowait(nobody, tell("hello?"))
        except MemberUnreachable:
            return  # noticed at once: within any bound
        while nobody not in handler.lost:
            elapsed = asyncio.get_running_loop().time() - started_at
            assert elapsed < kit.loss_bound_s, "silence not noticed in time"
            await asyncio.sleep(0.01)
        with expect_raises(MemberUnreachable):
            await a.send(nobody, tell("hello again?"))
    finally:
        await a.aclose()


async def check_closed_is_not_broken_and_close_is_idempotent(kit: TransportKit) -> None:
    handler = Recorder()
    a = await started(kit, handler)
    await a.aclose()
    await a.aclose()
    with expect_raises(SystemClosed):
        a.send_nowait("tcp://127.0.0.1:9", tell("after close"))
    with expect_raises(SystemClosed):
        await a.send("tcp://127.0.0.1:9", tell("after close"))


TRANSPORT_CHECKS: dict[str, Callable[[TransportKit], Awaitable[None]]] = {
    name.removeprefix("check_"): check
    for name, check in sorted(globals().items())
    if name.startswith("check_") and name != "check_transport"
}
"""Every check by name, to run one at a time (the project's tests parametrize over it)."""


async def check_transport(kit: TransportKit) -> None:
    """Run every transport check against the transports ``kit`` makes.

    Raises:
        AssertionError: A check failed; its message and traceback say which.
    """
    for check in TRANSPORT_CHECKS.values():
        await check(kit)
