"""Module-level actors for cluster tests: members import them by path."""

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
