"""A member process for the ask-deadline fault tests:
``python -m tests.faults.actors_ask_deadlines``.

It listens on loopback, spawns ``hung`` (never answers: its first message waits
forever), ``busy`` (sleeps when told to, counts what it handles), ``healthy`` and
``idle`` (echo), prints ``ADDRESS <url>`` and serves until its stdin closes.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import cfactor as cf


class Hung(cf.Actor):
    async def receive(self, message: Any) -> Any:
        await asyncio.Event().wait()  # never set
        return message


class Busy(cf.Actor):
    def __init__(self) -> None:
        self.handled = 0

    async def receive(self, message: Any) -> Any:
        match message:
            case ("sleep", float(seconds)):
                await asyncio.sleep(seconds)
                return seconds
            case "handled":
                return self.handled
            case "stats":
                stats = self.system.statistics()
                hung = self.system.ref("hung").statistics()
                mine = self.ref.statistics()
                return {
                    "refused_full": stats.refused_full,
                    "hung_depth": hung.depth,
                    "hung_waiting": hung.waiting_senders,
                    "busy_expired": mine.asks_expired,
                }
        self.handled += 1
        return message


class Echo(cf.Actor):
    async def receive(self, message: Any) -> Any:
        return message


async def main() -> None:
    # The hung actor's message is cancelled at close: do not wait 5 s for it.
    async with cf.ActorSystem(listen="tcp://127.0.0.1:0", stop_timeout_s=0.2) as system:
        await system.spawn(Hung, name="hung")
        await system.spawn(Busy, name="busy")
        await system.spawn(Echo, name="healthy")
        await system.spawn(Echo, name="idle")
        print("ADDRESS", system.address, flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until the test closes stdin


if __name__ == "__main__":
    cf.run(main())
