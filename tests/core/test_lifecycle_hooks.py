"""Two things the simulation needed from the core.

An actor stopped while its ``on_start`` still runs gets its ``on_stop`` too (found by
the simulation, seed 1077: a placement actor stopped while its ``on_start`` waited on
the store left the task its ``on_start`` then started running forever). Dead letters
can be watched (the simulation's ledger accounts for every one).
"""

from __future__ import annotations

import asyncio

import pytest

import cfactor as cf

pytestmark = pytest.mark.anyio


class SlowStart(cf.Actor):
    def __init__(self, gate: asyncio.Event, log: list[str]) -> None:
        self.gate = gate
        self.log = log
        self.worker: asyncio.Task[bool] | None = None

    async def on_start(self) -> None:
        self.log.append("start begins")
        await self.gate.wait()
        self.worker = asyncio.get_running_loop().create_task(asyncio.Event().wait())
        self.log.append("start ends")

    async def on_stop(self) -> None:
        self.log.append("stop")
        if self.worker is not None:
            self.worker.cancel()

    async def receive(self, message: object) -> object:
        return message


async def test_an_actor_stopped_during_on_start_still_gets_on_stop() -> None:
    gate = asyncio.Event()
    log: list[str] = []
    async with cf.ActorSystem() as system:
        spawning = asyncio.ensure_future(system.spawn(SlowStart, gate, log, name="slow"))
        while log != ["start begins"]:
            await asyncio.sleep(0)
        stopping = asyncio.ensure_future(system.ref("slow").stop())
        for _ in range(5):
            await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(spawning, stopping, return_exceptions=True)
        for _ in range(5):
            await asyncio.sleep(0)
        assert log == ["start begins", "start ends", "stop"]
        leftover = [t for t in asyncio.all_tasks() if "Event.wait" in repr(t.get_coro())]
        assert not leftover


class Echo(cf.Actor):
    async def receive(self, message: object) -> object:
        return message


async def test_dead_letters_can_be_watched_until_the_watch_is_stopped() -> None:
    seen: list[tuple[str, object, str]] = []
    async with cf.ActorSystem() as system:
        ref = await system.spawn(Echo, name="echo")
        await ref.stop()
        stop_watching = system.watch_dead_letters(lambda *letter: seen.append(letter))
        await ref.tell("first")
        stop_watching()
        await ref.tell("second")
        assert system.statistics().dead_letters == 2
    assert seen == [("echo", "first", "the actor is stopped")]
