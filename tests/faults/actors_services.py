"""Services for tests/faults/test_services.py, at module level so members import them."""

from __future__ import annotations

from typing import Any

import cfactor as cf


class Fragile(cf.Actor):
    """Counts what this instance handled; ``["fail", why]`` raises ``RuntimeError(why)``."""

    #: While true, ``on_start`` raises: a dependency the service needs is down.
    down = False

    def __init__(self) -> None:
        self.handled = 0

    async def on_start(self) -> None:
        if Fragile.down:
            raise OSError("dependency down")

    async def receive(self, message: Any) -> Any:
        self.handled += 1
        match message:
            case ["fail", str(why)]:  # a JSON array, or a tuple after the wire
                raise RuntimeError(why)
            case "where":
                return self.system.address
        return self.handled


def shout(text: str) -> str:
    """Upper-cases ``text``; raises on "boom"."""
    if text == "boom":
        raise ValueError("boom")
    return text.upper()
