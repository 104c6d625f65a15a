"""Small actors shared by the core tests."""

from __future__ import annotations

import asyncio
from typing import Any

import cfactor as cf


class Counter(cf.Actor):
    def __init__(self, start: int = 0) -> None:
        self.n = start

    async def receive(self, message: Any) -> Any:
        match message:
            case ("add", k):
                self.n += k
                return None
            case "get":
                return self.n
            case ("fail", text):
                raise ValueError(text)
        raise AssertionError(f"unexpected {message!r}")


class Recorder(cf.Actor):
    """Keeps every message it gets; ``"log"`` returns them."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    async def receive(self, message: Any) -> Any:
        if message == "log":
            return list(self.seen)
        self.seen.append(message)
        return None


class Gate(cf.Actor):
    """Blocks in ``receive`` on ("wait", event) until the event is set."""

    def __init__(self, handled: list[Any] | None = None) -> None:
        self.handled = handled if handled is not None else []

    async def receive(self, message: Any) -> Any:
        match message:
            case ("wait", asyncio.Event() as event):
                await event.wait()
        self.handled.append(message)
        return message


class KeyGate(cf.Actor):
    """Like Gate, but the message names the event, so it can cross the wire."""

    def __init__(self, events: dict[str, asyncio.Event], handled: list[Any] | None = None) -> None:
        self.events = events
        self.handled = handled if handled is not None else []

    async def receive(self, message: Any) -> Any:
        match message:
            case ("wait", str(key)):
                await self.events.setdefault(key, asyncio.Event()).wait()
        self.handled.append(message)
        return message
