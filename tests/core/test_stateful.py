"""Hypothesis state machines for the supervisor and the mailbox.

Each machine drives a real ActorSystem on its own event loop (on a ManualClock) and
compares it, step by step, with a small model of the rules it must follow.
"""

from __future__ import annotations

import asyncio
from collections import Counter as Tally
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import cfactor as cf
from cfactor.testing import ManualClock, settle
from tests.core.test_supervision import Boss

LABELS = "abc"


class SupervisorMachine(RuleBasedStateMachine):
    """A boss with three workers; the root above it never gives up."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = ManualClock()
        self.system = cf.ActorSystem(
            clock=self.clock, supervision=cf.Supervision(max_restarts=10_000, within_s=1.0)
        )
        self.starts: Tally[str] = Tally()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    @initialize(
        strategy=st.sampled_from(["one_for_one", "one_for_all", "rest_for_one"]),
        restarts=st.tuples(*[st.sampled_from(["permanent", "transient", "temporary"])] * 3),
        max_restarts=st.integers(0, 3),
        within_s=st.sampled_from([1.0, 5.0]),
    )
    def start(
        self, strategy: str, restarts: tuple[str, str, str], max_restarts: int, within_s: float
    ) -> None:
        self.strategy = strategy
        self.types = dict(zip(LABELS, restarts, strict=True))
        self.max_restarts = max_restarts
        self.within_s = within_s
        # The model.
        self.expected: Tally[str] = Tally(boss=1, a=1, b=1, c=1)
        self.alive = list(LABELS)  # in start order
        self.history: list[float] = []
        self.escalations = 0

        async def go() -> None:
            await self.system.start()
            await self.system.spawn(
                Boss,
                self.starts,
                restarts,
                name="boss",
                supervision=cf.Supervision(strategy, max_restarts=max_restarts, within_s=within_s),
            )

        self.run(go())

    def teardown(self) -> None:
        try:
            self.run(self.system.aclose())
        finally:
            self.loop.close()

    # -- the model ------------------------------------------------------------------------

    def model_child_ended(self, label: str, failed: bool) -> None:
        kind = self.types[label]
        if kind == "temporary" or (kind == "transient" and not failed):
            self.alive.remove(label)
            return
        now = self.clock.now()
        self.history = [t for t in self.history if t > now - self.within_s] + [now]
        if len(self.history) > self.max_restarts:
            # The boss gives up; the root restarts it with a fresh set of workers.
            self.escalations += 1
            self.history = []
            self.expected["boss"] += 1
            for name in LABELS:
                self.expected[name] += 1
            self.alive = list(LABELS)
            return
        index = self.alive.index(label)
        group = {
            "one_for_one": [label],
            "one_for_all": list(self.alive),
            "rest_for_one": self.alive[index:],
        }[self.strategy]
        for name in group:
            if self.types[name] == "temporary" and name != label:
                self.alive.remove(name)
            else:
                self.expected[name] += 1

    # -- the rules ------------------------------------------------------------------------

    @precondition(lambda self: bool(self.alive))
    @rule(data=st.data(), failed=st.booleans())
    def end_a_child(self, data: st.DataObject, failed: bool) -> None:
        label = data.draw(st.sampled_from(self.alive))

        async def go() -> None:
            ref = self.system.ref(label)
            if failed:
                try:
                    await ref.ask("crash")
                except cf.RemoteActorError:
                    pass
                else:
                    raise AssertionError("the crash was not reported")
            else:
                await ref.ask("exit")
            await settle(self.system)

        self.run(go())
        self.model_child_ended(label, failed)

    @rule(seconds=st.sampled_from([0.1, 0.5, 1.0, 3.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @invariant()
    def matches_the_model(self) -> None:
        if not hasattr(self, "expected"):
            return
        assert self.starts == self.expected
        live = [name for name in LABELS if self._is_alive(name)]
        assert live == sorted(self.alive)
        assert self.system.statistics().escalations == self.escalations

    def _is_alive(self, name: str) -> bool:
        try:
            return self.system.ref(name).is_alive
        except cf.ActorNotFound:
            return False


class Gated(cf.Actor):
    """Handles one message per permit the test releases."""

    def __init__(self, permits: asyncio.Semaphore, handled: list[int]) -> None:
        self.permits = permits
        self.handled = handled

    async def receive(self, message: Any) -> Any:
        await self.permits.acquire()
        self.handled.append(message)


class MailboxMachine(RuleBasedStateMachine):
    """Random sends and releases: depth never passes capacity; nothing is lost."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.system = cf.ActorSystem()
        self.handled: list[int] = []
        self.accepted: list[int] = []  # told with tell_nowait, or tell that returned
        self.rejected: list[int] = []
        self.waiting: list[tuple[int, asyncio.Task[None]]] = []
        self.next = 0

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    @initialize(capacity=st.integers(1, 5))
    def start(self, capacity: int) -> None:
        self.capacity = capacity

        async def go() -> cf.ActorRef:
            await self.system.start()
            self.permits = asyncio.Semaphore(0)
            return await self.system.spawn(
                Gated, self.permits, self.handled, mailbox_capacity=capacity
            )

        self.ref = self.run(go())

    def teardown(self) -> None:
        async def drain() -> None:
            for _ in range(len(self.accepted) + len(self.waiting) + 1):
                self.permits.release()
            for n, task in self.waiting:
                await task
                self.accepted.append(n)
            self.waiting.clear()
            await settle(self.system)

        try:
            if hasattr(self, "ref"):
                self.run(drain())
                # Every message was handled once, in the order told (blocked senders keep
                # their turn), or refused with MailboxFull.
                assert self.handled == sorted(self.accepted)
                assert not set(self.handled) & set(self.rejected)
            self.run(self.system.aclose())
        finally:
            self.loop.close()

    async def _turn(self) -> None:
        for _ in range(3):
            await asyncio.sleep(0)
        done = [(n, t) for n, t in self.waiting if t.done()]
        for item in done:
            self.waiting.remove(item)
            self.accepted.append(item[0])

    @rule()
    def tell_nowait(self) -> None:
        n, self.next = self.next, self.next + 1
        try:
            self.ref.tell_nowait(n)
        except cf.MailboxFull:
            self.rejected.append(n)
        else:
            self.accepted.append(n)
        self.run(self._turn())

    @precondition(lambda self: len(self.waiting) < 3)
    @rule()
    def tell_and_maybe_wait(self) -> None:
        n, self.next = self.next, self.next + 1
        self.waiting.append((n, self.loop.create_task(self.ref.tell(n))))
        self.run(self._turn())

    @rule(k=st.integers(1, 4))
    def release(self, k: int) -> None:
        for _ in range(k):
            self.permits.release()
        self.run(self._turn())

    @invariant()
    def bounded_and_accounted(self) -> None:
        if not hasattr(self, "ref"):
            return
        stats = self.ref.statistics()
        assert stats.depth <= self.capacity
        assert stats.peak <= self.capacity
        in_flight = len(self.accepted) - len(self.handled)
        # A blocked sender's message may be admitted before its task has resumed.
        assert 0 <= stats.depth + stats.in_progress - in_flight <= len(self.waiting)
        assert stats.waiting_senders <= len(self.waiting)
        if self.rejected:
            assert stats.peak == self.capacity


TestSupervisor = SupervisorMachine.TestCase
TestSupervisor.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
TestMailbox = MailboxMachine.TestCase
TestMailbox.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
