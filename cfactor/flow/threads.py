"""The threads one actor system's flows run sync functions on, and their upkeep.

Everything here belongs to one ``ActorSystem`` (``flow_threads(system)``): made when
a flow first needs a thread there, shut down by the system's ``aclose`` (threads
joined). Two systems in one process share no pool, no lock and no timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from cfactor._core.system import ActorSystem
    from cfactor.abc import Cancellable

log = logging.getLogger("cfactor.flow")

Kind = Literal["nodes", "services"]
_POOL_SIZES: dict[Kind, int] = {"nodes": 64, "services": 32}


class FlowThreads:
    """One system's flow threads: a pool for Node functions, one for services and steps.

    A sync Node function that calls a service (``ctx.call``) waits in its thread for
    the service's thread: from one pool, enough such replicas took every thread and
    the service never ran.

    Attributes:
        reducing: Held by a sync reduce while it runs: sync reduces in one system run
            one at a time: they hold the GIL anyway, and one at a time a member holds
            one partition's working copies, not all of them.
    """

    def __init__(self, system: ActorSystem) -> None:
        self._system = system
        self._pools: dict[Kind, ThreadPoolExecutor] = {}
        self.reducing = threading.Lock()
        self._trim: Cancellable | None = None
        self._closed = False

    def pool(self, kind: Kind) -> ThreadPoolExecutor | None:
        """The pool for ``kind``, started on first use.

        ``None`` on a loop that runs sync functions inline (``runs_functions_inline``:
        the simulation's, cfactor/testing/sim/loop.py), where threads would make the
        order of events depend on the OS.
        """
        if getattr(self._system.loop, "runs_functions_inline", False):
            return None
        executor = self._pools.get(kind)
        if executor is None:
            executor = self._pools[kind] = ThreadPoolExecutor(
                max_workers=_POOL_SIZES[kind], thread_name_prefix=f"cfactor-{kind}"
            )
        return executor

    def release_memory_soon(self) -> None:
        """A second after the last replica here stopped, hand freed heap back to the OS.

        glibc keeps freed memory in its arenas: a process that ran a 100 MB gigasort three
        times stayed at 164 MiB after ``gc.collect()``, and went to 35 MiB on
        ``malloc_trim(0)``; a member stayed at the peak of its biggest run until then.
        """
        if self._closed:
            return
        if self._trim is not None:
            self._trim.cancel()
        loop = self._system.loop

        def trim() -> None:
            self._trim = None
            loop.run_in_executor(self.pool("services"), _malloc_trim)

        self._trim = self._system.clock.call_later(1.0, trim)

    async def aclose(self) -> None:
        """Shut the pools down and join their threads; a pending trim is done then.

        Work not started is cancelled. A function still running after the system's
        ``stop_timeout_s`` is left to finish on its own (logged): closing the system
        must not hang on a user's function.
        """
        self._closed = True
        trim_now = self._trim is not None  # due within a second: done on the way out
        if self._trim is not None:
            self._trim.cancel()
            self._trim = None
        pools, self._pools = list(self._pools.values()), {}
        if not pools:
            return
        loop = asyncio.get_running_loop()
        joined: asyncio.Future[bool] = loop.create_future()

        def settle(value: bool) -> None:
            if not joined.done():
                joined.set_result(value)

        def join() -> None:
            for executor in pools:
                executor.shutdown(wait=True, cancel_futures=True)
            if trim_now:
                _malloc_trim()
            with contextlib.suppress(RuntimeError):  # the loop closed after a timeout
                loop.call_soon_threadsafe(settle, True)  # noqa: FBT003

        # Not one of the pools' own threads, nor the loop's default executor (which
        # the system does not own): a thread that only waits.
        threading.Thread(target=join, name="cfactor-flow-join", daemon=True).start()
        timer = self._system.clock.call_later(self._system.stop_timeout_s, settle, False)  # noqa: FBT003
        try:
            if not await joined:
                log.warning(
                    "flow threads still busy %g s after the system closed; left to finish",
                    self._system.stop_timeout_s,
                )
        finally:
            timer.cancel()


def flow_threads(system: ActorSystem) -> FlowThreads:
    """``system``'s flow threads (made on first use, closed with the system).

    Raises:
        SystemClosed: The system finished closing.
    """
    return system.extension("cfactor.flow.threads", FlowThreads)


def _malloc_trim() -> None:
    import ctypes  # noqa: PLC0415 - only when trimming: ``import cfactor`` stays light

    try:
        libc = ctypes.CDLL("libc.so.6")  # glibc only; elsewhere there is nothing to do
    except OSError:
        return
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)
