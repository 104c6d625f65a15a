"""Actors for the fault suite's "what holds" tests and benchmarks/faults.py (member
processes import them by path)."""

from __future__ import annotations

import asyncio
from typing import Any

import cfactor as cf


class Tally(cf.Actor):
    """A sink on the test's member: remembers every ``("done", seq, address)`` that
    ``tests.cluster.actors.Reporting`` tells it, so a test sees what was handled where."""

    def __init__(self) -> None:
        self.seqs: set[int] = set()
        self.where: dict[str, int] = {}

    async def receive(self, message: Any) -> Any:
        match message:
            case ("done", int(seq), str(address)):
                self.seqs.add(seq)
                self.where[address] = self.where.get(address, 0) + 1
                return None
            case "seqs":
                return sorted(self.seqs)
            case "where":
                return dict(self.where)
        raise ValueError(f"unknown message {message!r}")


class Slow(cf.Actor):
    """Counts what it handles, taking ``delay`` seconds per message (an overloaded
    consumer). ``"count"`` answers the count so far (not counting itself)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.handled = 0

    async def receive(self, message: Any) -> Any:
        if message == "count":
            return self.handled
        if message == "where":
            return self.system.address
        self.handled += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return None


class Hung(cf.Actor):
    """Never answers: every message waits forever (a hung handler). Its mailbox fills
    up behind the first message."""

    async def receive(self, message: Any) -> Any:
        await asyncio.Event().wait()
        return message
