"""The actors and flow functions of the simulation's mixed workload.

Module-level, so members find them by import path as they would across processes.
Every one writes what it does into the run's ledger (``LEDGER``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import cfactor as cf
from cfactor.testing.sim.ledger import LEDGER
from cfactor.testing.sim.loop import MEMBER

if TYPE_CHECKING:
    from collections.abc import Iterator

    from cfactor.testing.sim.ledger import Activation


class Keeper(cf.Actor):
    """A named actor: counts what it is told, answers asks; one activation at a time."""

    def __init__(self) -> None:
        self.count = 0
        self.activation: Activation | None = None

    async def on_start(self) -> None:
        self.activation = LEDGER.get().started(self.ref.name, MEMBER.get() or "?")
        # Work of its own, as with a timer: an activation that should have stopped and
        # did not shows itself here even when nobody sends to it any more.
        self.ticking = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            with contextlib.suppress(cf.CfactorError):
                self.ref.tell_nowait(("tick",))

    async def on_stop(self) -> None:
        self.ticking.cancel()
        if self.activation is not None:
            LEDGER.get().stopped(self.activation)

    async def receive(self, message: Any) -> Any:
        assert self.activation is not None
        LEDGER.get().handle(self.activation, message)
        match message:
            case ("tell", str(), int(), str()):
                self.count += 1
                return None
            case ("ask", int(x)):
                return x + 1
            case ("tick",):
                return None
        raise ValueError(f"unknown message {message!r}")


class Doubler(cf.Actor):
    """A replica of the replicated actor: a pure function, so any replica may answer."""

    async def receive(self, message: Any) -> Any:
        match message:
            case ("double", int(x)):
                return 2 * x
        raise ValueError(f"unknown message {message!r}")


# -- the small flow: numbers -> squares -> a sum per partition --------------------------


def numbers(ctx: Any, count: int) -> Iterator[int]:
    del ctx
    yield from range(count)


def square(ctx: Any, x: int) -> int:
    del ctx
    return x * x


def total(ctx: Any, items: Any) -> int:
    del ctx
    return sum(items)


FLOW_COUNT = 40
FLOW_EXPECTED = sum(x * x for x in range(FLOW_COUNT))


def flow_app(run: int) -> Any:
    app = cf.App(f"sim{run}")
    flow = app.session("s").flow("f")
    flow.add(numbers, "numbers", FLOW_COUNT).map(square, "square", 2).reduce(total, "total", 1)
    return app
