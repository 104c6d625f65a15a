"""An app whose map reports which process ran each item (for the cluster tests)."""

from __future__ import annotations

import os

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
app.session("s").flow("f").add(numbers, "numbers", 400).map(where, "where", 4)

failing = cf.App("failing")
failing.session("s").flow("f").add(numbers, "numbers", 100).map(fails_on_13, "strict", 2)
