"""Routing by key: one key reaches one replica, in order, across scale-out and scale-in."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import pytest

import cfactor as cf
from cfactor._core.cell import STOPPING
from cfactor._core.keyed import KEY_PARTITIONS, KeyedReplicaSet, key_partition
from cfactor.testing import MemoryNetwork, MemoryTransport

pytestmark = pytest.mark.anyio


def user_of(message: Any) -> Any:
    return message[0]


@dataclass(frozen=True)
class Keyed:
    """A replica count with no autoscaler, routing on the message's first element."""

    min: int = 1
    in_flight: int = 2
    key: Any = user_of

    async def start(self, group: Any, system: Any) -> None:  # no autoscaler
        return None


class Recorder(cf.Actor):
    """Answers with the identity of the replica instance that handled the message."""

    def __init__(self, log: list[tuple[Any, int, int]], delay: float = 0.001) -> None:
        self.log = log
        self.delay = delay

    async def receive(self, message: Any) -> Any:
        key, seq = message
        await asyncio.sleep(self.delay)
        self.log.append((key, seq, id(self)))
        return id(self)


def group_of(ref: cf.ActorRef) -> KeyedReplicaSet:
    group = ref._cell
    assert isinstance(group, KeyedReplicaSet)
    return group


def per_key(log: list[tuple[Any, int, int]]) -> dict[Any, list[int]]:
    order: dict[Any, list[int]] = defaultdict(list)
    for key, seq, _who in log:
        order[key].append(seq)
    return order


def test_the_hash_is_stable_and_typed() -> None:
    # crc32, not hash(): the same in every process (these are fixed values).
    assert key_partition(b"abc", "g") == 0x352441C2 % KEY_PARTITIONS  # crc32(b"abc")
    assert key_partition("abc", "g") == key_partition(b"abc", "g")
    assert key_partition(7, "g") == key_partition("7", "g")
    for bad in (1.5, None, True, ("a",)):
        with pytest.raises(cf.ConfigError, match="must return a str, bytes or int"):
            key_partition(bad, "g")


async def test_the_same_key_always_reaches_the_same_replica() -> None:
    log: list[tuple[Any, int, int]] = []
    async with cf.ActorSystem() as system:
        ref = await system.spawn(Recorder, log, name="work", replicas=Keyed(min=4))
        keys = [f"user-{i}" for i in range(40)]
        answers = await asyncio.gather(*(ref.ask((key, seq)) for seq in range(10) for key in keys))
        where: dict[str, set[int]] = defaultdict(set)
        for (key, _seq), who in zip(
            ((key, seq) for seq in range(10) for key in keys), answers, strict=True
        ):
            where[key].add(who)
        assert all(len(replicas) == 1 for replicas in where.values()), where
        # ... and the keys are spread: more than one replica did work.
        assert len({next(iter(w)) for w in where.values()}) > 1
        # Per key, handled in the order sent.
        assert all(seqs == list(range(10)) for seqs in per_key(log).values())


async def test_per_key_order_and_nothing_lost_across_scale_out_and_in() -> None:
    log: list[tuple[Any, int, int]] = []
    async with cf.ActorSystem() as system:
        ref = await system.spawn(
            Recorder, log, 0.002, name="work", replicas=Keyed(min=2, in_flight=3)
        )
        group = group_of(ref)
        keys = [f"k{i}" for i in range(25)]
        sent = 0

        async def send(rounds: int) -> None:
            nonlocal sent
            for _ in range(rounds):
                for key in keys:
                    await ref.tell((key, sent))
                sent += 1

        await send(8)
        await group.scale_to(6)  # partitions move while their messages are held
        await send(8)
        await group.scale_to(1)  # drained replicas hand their partitions over
        await send(8)
        await group.scale_to(3)
        await send(8)
        assert await ref.ask(("end", 0)) is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while len(log) < len(keys) * sent + 1 and loop.time() < deadline:
            await asyncio.sleep(0.01)
        order = per_key(log)
        for key in keys:
            assert order[key] == list(range(sent)), key  # each once, in order
        assert group.count == 3
        assert group.load() == (0, 3)
        # Between changes the replica set is stable: every key stayed on one replica
        # within each phase. In the last phase (3 replicas) check it directly.
        last = [(k, who) for k, seq, who in log if k != "end" and seq >= 24]
        homes: dict[Any, set[int]] = defaultdict(set)
        for key, who in last:
            homes[key].add(who)
        assert all(len(h) == 1 for h in homes.values())


async def test_keyed_messages_count_in_load_and_the_bound_holds() -> None:
    release = asyncio.Event()

    class Blocked(cf.Actor):
        async def receive(self, message: Any) -> Any:
            await release.wait()
            return message

    async with cf.ActorSystem() as system:
        ref = await system.spawn(
            Blocked, name="work", mailbox_capacity=5, replicas=Keyed(min=1, in_flight=1)
        )
        for i in range(6):  # one held by the replica, five in the backlog
            ref.tell_nowait(("same", i))
        with pytest.raises(cf.MailboxFull):
            ref.tell_nowait(("same", "one too many"))
        waiting = asyncio.create_task(ref.tell(("other", 0)))
        await asyncio.sleep(0)
        assert group_of(ref).load() == (7, 1)
        assert ref.statistics().depth == 6
        release.set()
        await waiting
        assert await ref.ask(("same", "last"), timeout=5) == ("same", "last")


async def test_a_bad_key_is_a_config_error_and_the_group_keeps_serving() -> None:
    log: list[tuple[Any, int, int]] = []
    async with cf.ActorSystem() as system:
        ref = await system.spawn(Recorder, log, name="work", replicas=Keyed(min=2))
        with pytest.raises(cf.ConfigError, match="must return a str, bytes or int"):
            await ref.ask((1.5, 0))
        with pytest.raises(cf.ConfigError, match="must return a str, bytes or int"):
            await ref.tell((None, 0))
        with pytest.raises(cf.ConfigError, match="must return a str, bytes or int"):
            ref.tell_nowait(([], 0))
        with pytest.raises(cf.ConfigError, match="raised"):
            await ref.ask(5)  # the key function itself raises (5[0])
        assert await ref.ask(("fine", 1)) == log[-1][2]
        assert [(k, s) for k, s, _w in log] == [("fine", 1)]
        assert group_of(ref).count == 2
        assert group_of(ref).load() == (0, 2)


async def test_a_bad_key_from_another_member_is_refused_not_dropped_silently() -> None:
    network = MemoryNetwork()
    log: list[tuple[Any, int, int]] = []
    async with (
        cf.ActorSystem(listen="mem://", transport=MemoryTransport(network)) as a,
        cf.ActorSystem(listen="mem://", transport=MemoryTransport(network)) as b,
    ):
        await b.spawn(Recorder, log, name="work", replicas=Keyed(min=2))
        remote = a.ref("work", at=b.address)
        with pytest.raises(cf.ConfigError, match="must return a str, bytes or int"):
            await remote.ask((1.5, 0))
        await remote.tell((2.5, 0))  # a tell cannot answer: a counted dead letter
        who = await remote.ask(("k", 1))
        assert [(k, s) for k, s, _w in log] == [("k", 1)]
        assert log[0][2] == who
        assert b.statistics().dead_letters == 1


async def test_a_replica_given_up_on_hands_its_keys_to_the_others() -> None:
    log: list[tuple[Any, int, int]] = []

    class Fragile(Recorder):
        async def receive(self, message: Any) -> Any:
            if message[1] == "die":
                raise RuntimeError("die")
            return await super().receive(message)

    async with cf.ActorSystem() as system:
        ref = await system.spawn(
            Fragile, log, name="work", restart="temporary", replicas=Keyed(min=2)
        )
        group = group_of(ref)
        victim = await ref.ask(("x", 0))
        with pytest.raises(cf.RemoteActorError):
            await ref.ask(("x", "die"))  # temporary: not restarted, gone for good
        await asyncio.sleep(0.05)
        assert group.count == 1
        # Its keys are served by the survivor, not stuck behind a dead replica.
        answer = await ref.ask(("x", 1), timeout=2)
        assert answer != victim
        assert await asyncio.gather(*(ref.ask((f"k{i}", 0), timeout=2) for i in range(20)))


def check_invariants(group: KeyedReplicaSet) -> None:
    """The bookkeeping a keyed group relies on (see KeyedReplicaSet)."""
    active = [r for r in group.replicas if not r.draining and r.cell.state < STOPPING]
    queued = sum(len(p.queue) for p in group.partitions if p.queue)
    assert queued == group.waiting
    assert sum(p.held for p in group.partitions) == sum(r.held for r in group.replicas)
    owned: dict[int, int] = defaultdict(int)
    for p in group.partitions:
        if active:
            assert p.target in active
            owned[id(p.target)] += 1
        ready = p.target.ready if p.target is not None else None
        in_deque = ready is not None and p in ready
        assert p.in_ready == in_deque
        if p.in_ready:
            assert p.queue
            assert p.held == 0 or p.owner is p.target
    if active:
        base = KEY_PARTITIONS // len(active)
        assert set(owned.values()) <= {base, base + 1}


@pytest.mark.parametrize("seed", range(6))
async def test_random_sends_and_scale_changes_keep_order_and_lose_nothing(seed: int) -> None:
    rng = random.Random(seed)
    log: list[tuple[Any, int, int]] = []
    async with cf.ActorSystem() as system:
        ref = await system.spawn(
            Recorder,
            log,
            0.0005,
            name="work",
            mailbox_capacity=rng.choice([5, 50, 1000]),
            replicas=Keyed(min=rng.randint(1, 4), in_flight=rng.randint(1, 4)),
        )
        group = group_of(ref)
        keys = [f"k{i}" for i in range(rng.randint(1, 40))]
        next_seq: dict[str, int] = defaultdict(int)
        pending: list[asyncio.Task[Any]] = []
        for _step in range(60):
            action = rng.random()
            if action < 0.15:
                await group.scale_to(rng.randint(1, 6))
                check_invariants(group)
            elif action < 0.25:
                await asyncio.sleep(rng.choice([0, 0.001, 0.005]))
                check_invariants(group)
            else:
                for _ in range(rng.randint(1, 20)):
                    key = rng.choice(keys)
                    seq = next_seq[key]
                    next_seq[key] = seq + 1
                    if rng.random() < 0.5:
                        await ref.tell((key, seq))
                    else:  # an ask enters the backlog before the next send
                        pending.append(asyncio.create_task(ref.ask((key, seq), timeout=30)))
                        await asyncio.sleep(0)
        await asyncio.gather(*pending)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        total = sum(next_seq.values())
        while len(log) < total and loop.time() < deadline:
            await asyncio.sleep(0.01)
        check_invariants(group)
        order = per_key(log)
        for key, count in next_seq.items():
            assert order[key] == list(range(count)), key
        assert group.load() == (0, group.count)
