"""An app whose map reports which process ran each item (for the cluster tests)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import cfactor as cf


def numbers(ctx: cf.Context, n: int) -> range:
    return range(n)


def where(ctx: cf.Context, x: int) -> tuple[int, int, int]:
    time.sleep(0.0005)  # busy enough that work goes past the local replicas too
    return (x, os.getpid(), ctx.index)


def fails_on_13(ctx: cf.Context, x: int) -> int:
    if x == 13:
        raise ArithmeticError("unlucky 13")
    return x


app = cf.App("spread")
app.session("s").flow("f").add(numbers, "numbers", 4000).map(where, "where", 4)

failing = cf.App("failing")
failing.session("s").flow("f").add(numbers, "numbers", 100).map(fails_on_13, "strict", 2)


async def slow_where(ctx: cf.Context, x: int) -> tuple[int, int, int]:
    await asyncio.sleep(0.002)
    return (x, os.getpid(), ctx.index)


def total(ctx: cf.Context, items: list[tuple[int, int, int]]) -> tuple[int, int, list[int]]:
    return (len(items), sum(x for x, _, _ in items), sorted({pid for _, pid, _ in items}))


auto = cf.App("auto")
auto.session("s").flow("f").add(numbers, "numbers", 2000).map(
    slow_where, "work", cf.Auto(min=2, max=4)
).reduce(total, "total", 1)


def slowly(ctx: cf.Context, x: int) -> int:
    time.sleep(0.05)
    return x


long_running = cf.App("long")
long_running.session("s").flow("f").add(numbers, "numbers", 100_000).map(slowly, "slow", 4)


def fat(ctx: cf.Context, x: int) -> list[Any]:
    """16 small entries, then a big one: the batch size guess (a sample) comes out low."""
    return [0] * 16 + [bytes(400_000)]


def huge(ctx: cf.Context, x: int) -> bytes:
    return bytes(5_000_000)  # over the 4 MB frame limit on its own


def sizes(ctx: cf.Context, items: list[list[Any]]) -> tuple[int, int]:
    return (len(items), sum(len(item[-1]) for item in items))


fat_items = cf.App("fat")
fat_items.session("s").flow("f").add(numbers, "numbers", 40).map(fat, "fat", 1).reduce(
    sizes, "sizes", 1
)
too_big = cf.App("huge")
too_big.session("s").flow("f").add(numbers, "numbers", 2).map(huge, "huge", 1).map(
    fails_on_13, "after", 1
)
