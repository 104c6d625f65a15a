"""An app whose map reports which process ran each item (for the cluster tests)."""

from __future__ import annotations

import asyncio
import os
import time

import cfactor as cf


def numbers(ctx: cf.Context, n: int) -> range:
    return range(n)


def where(ctx: cf.Context, x: int) -> tuple[int, int, int]:
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
