"""A/B of the local ask path: pipelined and sequential asks to an echo actor.

``.venv/bin/python benchmarks/ask_paths.py LABEL``. To compare with another commit, run
it alternately against a checkout of that commit::

    git worktree add /tmp/old 828dfce
    PYTHONPATH=/tmp/old:/tmp/old/transports .venv/bin/python benchmarks/ask_paths.py old
    .venv/bin/python benchmarks/ask_paths.py new

Prints the best of 5 rounds of 20,000 asks with 1,000 in flight, and the mean of 20,000
sequential asks (timeout 30 s, so the deadline path is measured too).
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import cfactor as cf

ASKS = 20_000
IN_FLIGHT = 1_000


class Echo(cf.Actor):
    async def receive(self, message: Any) -> Any:
        return message


async def main(label: str) -> None:
    async with cf.ActorSystem() as system:
        ref = await system.spawn(Echo)

        async def worker(count: int) -> None:
            for _ in range(count):
                await ref.ask(1, timeout=30)

        best = 0.0
        for _ in range(5):
            started = time.perf_counter()
            await asyncio.gather(*(worker(ASKS // IN_FLIGHT) for _ in range(IN_FLIGHT)))
            best = max(best, ASKS / (time.perf_counter() - started))
        started = time.perf_counter()
        for _ in range(ASKS):
            await ref.ask(1, timeout=30)
        sequential = (time.perf_counter() - started) / ASKS * 1e6
        print(f"{label}: pipelined best {best / 1000:.0f} k/s, sequential {sequential:.2f} µs")


if __name__ == "__main__":
    cf.run(main(sys.argv[1] if len(sys.argv) > 1 else "this checkout"))
