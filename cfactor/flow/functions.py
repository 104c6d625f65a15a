"""Node functions: how they travel to a member, and how they run on a batch.

On a cluster a function travels as its import path (``portable``) and is loaded on
the member (``resolve``). A sync function runs on one of the system's flow threads
(``cfactor.flow.threads``), an async one on the loop; either is retried per item,
and a failure after the retries is an ``ItemFailed``.
"""

from __future__ import annotations

import inspect
import traceback as tb_module
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from cfactor.loading import import_path, load_object

if TYPE_CHECKING:
    from collections.abc import Callable
    from threading import Lock

    from cfactor.flow.context import Context


def portable(fn: Any, *, remote: bool) -> Any:
    """``fn`` itself in one process; on a cluster, where a member can import it.

    Raises:
        ConfigError: On a cluster, ``fn`` is a lambda or a nested function.
    """
    if fn is None or not remote:
        return fn
    return ("fn", *import_path(fn, "Node functions on a cluster must be module-level functions"))


def resolve(fn: Any) -> Any:
    """The function ``portable`` described (loaded on this member if need be)."""
    if isinstance(fn, tuple) and len(fn) == 4 and fn[0] == "fn":
        return load_object(fn[1], fn[2], fn[3])
    return fn


def collect(result: Any, out: list[Any]) -> None:
    """A function's result as outputs: None is none, a generator is several."""
    if result is None:
        return
    if isinstance(result, Iterator) and not isinstance(result, str | bytes):
        out.extend(result)
    else:
        out.append(result)


class ItemFailed(Exception):
    """A Node function raised on an item (after its retries)."""

    def __init__(self, item: Any, exc: BaseException, *, label: str | None = None) -> None:
        super().__init__(str(exc))
        self.item = label if label is not None else repr(item)[:200]
        self.type_name = type(exc).__name__
        self.message = str(exc)
        self.traceback = "".join(tb_module.format_exception(exc))


def give_up_or_retry(
    ctx: Context, item: Any, exc: Exception, attempt: int, retries: int, *, label: str | None = None
) -> None:
    """After ``attempt`` (from 0) failed: log and return to try again, or, with no
    retries left, raise ``ItemFailed``."""
    if attempt == retries:
        raise ItemFailed(item, exc, label=label) from exc
    ctx.log.warning("retrying %s (%s): %r", label or repr(item)[:100], attempt + 1, exc)


def apply_sync(fn: Callable[..., Any], ctx: Context, items: list[Any], retries: int) -> list[Any]:
    """Run a sync map over a batch (in a worker thread, off the event loop)."""
    out: list[Any] = []
    for item in items:
        for attempt in range(retries + 1):
            produced: list[Any] = []
            try:
                collect(fn(ctx, item), produced)
            except Exception as exc:
                give_up_or_retry(ctx, item, exc, attempt, retries)
                continue
            out.extend(produced)
            break
    return out


async def apply_async(
    fn: Callable[..., Any], ctx: Context, items: list[Any], retries: int
) -> list[Any]:
    out: list[Any] = []
    agen = inspect.isasyncgenfunction(fn)
    for item in items:
        for attempt in range(retries + 1):
            produced: list[Any] = []
            try:
                if agen:
                    produced.extend([x async for x in fn(ctx, item)])
                else:
                    collect(await fn(ctx, item), produced)
            except Exception as exc:
                give_up_or_retry(ctx, item, exc, attempt, retries)
                continue
            out.extend(produced)
            break
    return out


def is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)


def reduce_sync(
    fn: Callable[..., Any], ctx: Context, items: list[Any], reducing: Lock
) -> list[Any]:
    """Run a sync reduce over all its items (in a worker thread), holding ``reducing``."""
    out: list[Any] = []
    with reducing:
        collect(fn(ctx, items), out)
    return out
