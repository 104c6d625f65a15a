"""Actors for the spawn-outcome and graceful-leave fault tests (member processes import
them by path)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import IO, Any

import cfactor as cf


class Recorder(cf.Actor):
    """Appends a line per event to a file shared by every member process of the machine:
    ``start ADDRESS T``, ``seq N ADDRESS``, ``stop ADDRESS T`` (T on CLOCK_MONOTONIC, one
    clock for all processes), so a test counts every tell handled and orders
    activations across members."""

    def __init__(self, log_path: str) -> None:
        self.log_path = Path(log_path)
        self.file: IO[str] | None = None

    def _write(self, line: str) -> None:
        if self.file is None:
            self.file = self.log_path.open("a", encoding="utf-8")
        self.file.write(line + "\n")
        self.file.flush()

    async def on_start(self) -> None:
        self._write(f"start {self.system.address} {time.monotonic():.6f}")

    async def on_stop(self) -> None:
        self._write(f"stop {self.system.address} {time.monotonic():.6f}")
        if self.file is not None:
            self.file.close()

    async def receive(self, message: Any) -> Any:
        match message:
            case ("seq", int(n)):
                self._write(f"seq {n} {self.system.address}")
                return None
            case "where":
                return self.system.address
        raise ValueError(f"unknown message {message!r}")


class Hang(cf.Actor):
    """Blocks its member's whole event loop when told ``("hang", seconds)``: a hung
    actor at its worst (nothing else on that member runs meanwhile)."""

    async def receive(self, message: Any) -> Any:
        match message:
            case ("hang", float(seconds)):
                time.sleep(seconds)  # noqa: ASYNC251 - hanging the loop is the point
                return None
            case "ping":
                await asyncio.sleep(0)
                return "pong"
        raise ValueError(f"unknown message {message!r}")


def read_events(path: Path) -> list[list[str]]:
    """The lines a ``Recorder`` wrote, split (a partly written last line is skipped)."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    return [line.split() for line in text.split("\n")[:-1] if line]
