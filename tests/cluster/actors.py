"""Module-level actors for cluster tests (members import them by path), and helpers."""

from __future__ import annotations

import asyncio
from typing import Any

import cfactor as cf


class Counter(cf.Actor):
    def __init__(self, start: int = 0) -> None:
        self.n = start

    async def receive(self, message: Any) -> Any:
        match message:
            case ("add", int(k)):
                self.n += k
                return self.n
            case "get":
                return self.n
            case "where":
                return self.system.address
            case ("sleep", float(seconds)):
                await asyncio.sleep(seconds)
                return seconds
        raise ValueError(f"unknown message {message!r}")


async def eventually(check: Any, timeout: float = 5.0) -> Any:
    """Await ``check()`` until it returns something true (errors count as not yet).

    Raises:
        AssertionError: Not true within ``timeout`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            result = await check()
        except cf.CfactorError:
            result = None
        if result:
            return result
        if loop.time() >= deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)
