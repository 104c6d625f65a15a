from __future__ import annotations

import asyncio
from collections import Counter as Tally
from typing import Any

import pytest

import cfactor as cf
from cfactor.testing import ManualClock, settle

pytestmark = pytest.mark.anyio


class Worker(cf.Actor):
    """Counts its incarnations in a shared tally; fails or exits on request."""

    def __init__(self, label: str, starts: Tally[str], value: int = 0) -> None:
        self.label = label
        self.value = value
        starts[label] += 1

    async def receive(self, message: Any) -> Any:
        match message:
            case "crash":
                raise RuntimeError(f"{self.label} crashed")
            case "exit":
                self.stop()
                return None
            case "bump":
                self.value += 1
                return self.value
            case "get":
                return self.value
        return None


class Boss(cf.Actor):
    """Spawns three workers a, b, c (in that order) in on_start."""

    def __init__(self, starts: Tally[str], restarts: tuple[str, ...] = ()) -> None:
        self.starts = starts
        self.restart_types = dict(zip("abc", restarts or ("permanent",) * 3, strict=True))
        starts["boss"] += 1

    async def on_start(self) -> None:
        for label in "abc":
            await self.system.spawn(
                Worker, label, self.starts, name=label, restart=self.restart_types[label]
            )

    async def receive(self, message: Any) -> Any:
        return message


async def crash(system: cf.ActorSystem, name: str) -> None:
    with pytest.raises(cf.RemoteActorError, match="crashed"):
        await system.ref(name).ask("crash")
    await settle(system)


async def boss_system(
    strategy: str, *, max_restarts: int = 3, restarts: tuple[str, ...] = ()
) -> tuple[cf.ActorSystem, Tally[str], ManualClock]:
    clock = ManualClock()
    system = cf.ActorSystem(clock=clock)
    await system.start()
    starts: Tally[str] = Tally()
    await system.spawn(
        Boss,
        starts,
        restarts,
        name="boss",
        supervision=cf.Supervision(strategy, max_restarts=max_restarts, within_s=10.0),
    )
    return system, starts, clock


async def test_one_for_one_restarts_only_the_failed_child_with_fresh_state() -> None:
    system, starts, _ = await boss_system("one_for_one")
    a = system.ref("a")
    await a.ask("bump")
    before = a
    await crash(system, "a")
    assert starts == Tally(boss=1, a=2, b=1, c=1)
    assert system.ref("a") == before  # the ref survives the restart
    assert await a.ask("get") == 0  # a fresh instance, same constructor arguments
    await system.aclose()


async def test_one_for_all_restarts_every_sibling() -> None:
    system, starts, _ = await boss_system("one_for_all")
    await crash(system, "b")
    assert starts == Tally(boss=1, a=2, b=2, c=2)
    await system.aclose()


async def test_rest_for_one_restarts_the_failed_child_and_those_started_after_it() -> None:
    system, starts, _ = await boss_system("rest_for_one")
    await crash(system, "b")
    assert starts == Tally(boss=1, a=1, b=2, c=2)
    await system.aclose()


async def test_queued_messages_survive_a_restart() -> None:
    system, _, _ = await boss_system("one_for_one")
    a = system.ref("a")
    failing = asyncio.create_task(a.ask("crash"))
    queued = [asyncio.create_task(a.ask("bump")) for _ in range(3)]
    with pytest.raises(cf.RemoteActorError):
        await failing
    assert await asyncio.gather(*queued) == [1, 2, 3]
    await system.aclose()


async def test_restart_types_decide_what_comes_back() -> None:
    system, starts, _ = await boss_system(
        "one_for_one", restarts=("permanent", "transient", "temporary")
    )
    a, b, c = (system.ref(n) for n in "abc")
    for ref in (a, b, c):  # a normal exit
        await ref.ask("exit")
    await settle(system)
    assert starts == Tally(boss=1, a=2, b=1, c=1)  # only permanent comes back
    assert (a.is_alive, b.is_alive, c.is_alive) == (True, False, False)
    await system.aclose()

    system, starts, _ = await boss_system(
        "one_for_one", restarts=("permanent", "transient", "temporary")
    )
    for name in "abc":  # a failure
        await crash(system, name)
    assert starts == Tally(boss=1, a=2, b=2, c=1)  # temporary is removed
    assert system.ref("a").is_alive
    with pytest.raises(cf.ActorNotFound):
        system.ref("c")
    await system.aclose()


async def test_a_temporary_sibling_is_not_restarted_by_one_for_all() -> None:
    system, starts, _ = await boss_system(
        "one_for_all", restarts=("permanent", "permanent", "temporary")
    )
    await crash(system, "a")
    assert starts == Tally(boss=1, a=2, b=2, c=1)
    with pytest.raises(cf.ActorNotFound):
        system.ref("c")
    await system.aclose()


async def test_exceeding_the_intensity_escalates_to_the_parent() -> None:
    system, starts, _ = await boss_system("one_for_one", max_restarts=2)
    await crash(system, "a")
    await crash(system, "b")
    assert starts == Tally(boss=1, a=2, b=2, c=1)
    # The third restart within the window is one too many: the boss gives up, fails,
    # and the root restarts it, which starts a fresh set of workers.
    await crash(system, "a")
    assert starts == Tally(boss=2, a=3, b=3, c=2)
    stats = system.statistics()
    assert stats.escalations == 1
    assert stats.restarts == 3  # a, b, then the boss
    assert await system.ref("a").ask("get") == 0
    await system.aclose()


async def test_restarts_outside_the_window_do_not_add_up() -> None:
    system, starts, clock = await boss_system("one_for_one", max_restarts=1)
    for _ in range(4):
        await crash(system, "a")
        clock.advance(10.0)  # the window is 10 s
    assert starts["boss"] == 1
    assert starts["a"] == 5
    assert system.statistics().escalations == 0
    await system.aclose()


async def test_the_root_gives_up_on_a_top_level_actor_without_harming_others() -> None:
    clock = ManualClock()
    starts: Tally[str] = Tally()
    async with cf.ActorSystem(
        clock=clock, supervision=cf.Supervision(max_restarts=1, within_s=5)
    ) as system:
        flaky = await system.spawn(Worker, "flaky", starts, name="flaky")
        steady = await system.spawn(Worker, "steady", starts, name="steady")
        await crash(system, "flaky")
        assert [ref.is_alive for ref in (flaky, steady)] == [True, True]
        await crash(system, "flaky")
        assert [ref.is_alive for ref in (flaky, steady)] == [False, True]
        assert await steady.ask("bump") == 1
        assert system.statistics().escalations == 1
        with pytest.raises(cf.ActorStopped):
            await flaky.ask("get")


async def test_a_restart_that_fails_in_on_start_counts_against_the_intensity() -> None:
    attempts: list[int] = []

    class Fragile(cf.Actor):
        async def on_start(self) -> None:
            attempts.append(1)
            if len(attempts) > 1:
                raise OSError("resource gone")

        async def receive(self, message: Any) -> Any:
            raise RuntimeError("crashed")

    async with cf.ActorSystem(
        clock=ManualClock(), supervision=cf.Supervision(max_restarts=3, within_s=5)
    ) as system:
        ref = await system.spawn(Fragile, name="fragile")
        with pytest.raises(cf.RemoteActorError):
            await ref.ask("go")
        await settle(system)
        assert len(attempts) == 1 + 3  # the first start, then three failed restarts
        assert not ref.is_alive
        assert system.statistics().escalations == 1


async def test_stopping_from_inside_the_actor_does_not_deadlock() -> None:
    class Quitter(cf.Actor):
        async def receive(self, message: Any) -> Any:
            await self.ref.stop()
            return "bye"

    async with cf.ActorSystem() as system:
        ref = await system.spawn(Quitter)
        assert await asyncio.wait_for(ref.ask("quit"), 1.0) == "bye"
        await settle(system)
        assert not ref.is_alive


def test_supervision_rejects_bad_settings() -> None:
    with pytest.raises(cf.ConfigError, match="strategy"):
        cf.Supervision("all_for_none")
    with pytest.raises(cf.ConfigError):
        cf.Supervision(max_restarts=-1)
    with pytest.raises(cf.ConfigError):
        cf.Supervision(within_s=0)
    assert cf.Supervision("rest_for_one").strategy is cf.Strategy.REST_FOR_ONE
