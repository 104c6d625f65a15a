"""Actors for the etcd outage fault tests (member processes import them by path)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cfactor as cf


class Witness(cf.Actor):
    """Appends ``start``/``stop`` lines with CLOCK_MONOTONIC (one clock for every process
    of a machine) and its member's address to a file, so a test can order activations
    across member processes."""

    def __init__(self, log_path: str) -> None:
        self.log_path = Path(log_path)

    def _note(self, event: str) -> None:
        with self.log_path.open("a") as log:
            log.write(f"{event} {self.system.address} {time.monotonic():.6f}\n")

    async def on_start(self) -> None:
        self._note("start")

    async def on_stop(self) -> None:
        self._note("stop")

    async def receive(self, message: Any) -> Any:
        if message == "where":
            return self.system.address
        raise ValueError(f"unknown message {message!r}")
