"""``cf.run``: run a coroutine on a fresh event loop, uvloop when it is installed."""

from __future__ import annotations

import asyncio
import importlib.util
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

T = TypeVar("T")


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def run(
    main: Callable[[], Coroutine[Any, Any, T]] | Coroutine[Any, Any, T],
    *,
    use_uvloop: bool | None = None,
    debug: bool | None = None,
) -> T:
    """Run ``main`` (a coroutine function or a coroutine) to completion and return its result.

    Args:
        main: What to run.
        use_uvloop: ``None`` uses uvloop when installed; ``True`` requires it.
        debug: asyncio's debug mode.

    Raises:
        ModuleNotFoundError: ``use_uvloop=True`` but uvloop is not installed.
    """
    coro = main() if callable(main) else main
    if use_uvloop is None:
        use_uvloop = uvloop_available()
    loop_factory = None
    if use_uvloop:
        import uvloop  # noqa: PLC0415 - optional dependency

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory, debug=debug) as runner:
        return runner.run(coro)
