"""What a Node function sees: its ``Context`` and the session's ``Store``.

Also where the driver's endpoints (member address, actor name) become refs.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from cfactor.errors import ConfigError
from cfactor.flow.messages import Call, Endpoint, StoreAdd, StoreGet, StoreItems, StorePut

if TYPE_CHECKING:
    from cfactor._core.ref import ActorRef
    from cfactor._core.system import ActorSystem
    from cfactor.flow.messages import StoreRequest


def endpoint_ref(system: ActorSystem, endpoint: Endpoint) -> ActorRef:
    """The ref for an endpoint the driver chose (``name@epoch`` for a cluster actor)."""
    address, name = endpoint
    if address is None or address == system.address:
        return system.ref(name.partition("@")[0])
    return system.ref(name, at=address)


class Store:
    """The session's key-value store (one per session, shared by all its nodes).

    From an async function: ``await ctx.store.get("k")``. From a sync function (which
    runs in a worker thread): ``ctx.store.get("k")`` returns the value directly.
    """

    def __init__(self, ref: ActorRef, loop: asyncio.AbstractEventLoop) -> None:
        self._ref = ref
        self._loop = loop

    def _call(self, message: StoreRequest) -> Any:
        coro = self._ref.ask(message)
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a sync Node function, in a worker thread
            return asyncio.run_coroutine_threadsafe(coro, self._loop).result()
        return coro

    def get(self, key: str, default: Any = None) -> Any:
        return self._call(StoreGet(key, default))

    def put(self, key: str, value: Any) -> Any:
        return self._call(StorePut(key, value))

    def add(self, key: str, delta: float = 1) -> Any:
        """Add ``delta`` to the number at ``key`` (0 if unset); the new value."""
        return self._call(StoreAdd(key, delta))

    def items(self) -> Any:
        return self._call(StoreItems())


class Context:
    """The first argument of every Node function (the seed's ``self *cf.Node``).

    Attributes:
        name: The node's name; ``path`` is ``app.session.flow.node``.
        index: This replica's index among the node's replicas (for a ``cf.Auto`` node,
            a number unique among its replicas).
        replicas: How many replicas the node has (0 for a ``cf.Auto`` node, whose
            count changes).
        log: A logger named after the node.
        store: The session's key-value store.
    """

    def __init__(  # noqa: PLR0917 - what a Node function may want to know
        self,
        system: ActorSystem,
        path: str,
        index: int,
        store: Store,
        services: dict[str, Endpoint],
        replicas: int = 1,
    ) -> None:
        self.system = system
        self.path = path
        self.name = path.rpartition(".")[2]
        self.index = index
        self.replicas = replicas
        self.log = logging.getLogger(f"cfactor.flow.node.{path}")
        self.store = store
        self._services = services

    def service(self, name: str) -> ActorRef:
        """The ref of the app's service ``name``.

        Raises:
            ConfigError: The app has no such service.
        """
        endpoint = self._services.get(name)
        if endpoint is None:
            raise ConfigError(f"the app has no service {name!r} (it has {sorted(self._services)})")
        return endpoint_ref(self.system, endpoint)

    def call(self, name: str, *args: Any, timeout: float | None = None) -> Any:
        """Call a function the app registered with ``app.reg`` (awaitable in async
        functions; the value itself in sync ones)."""
        coro = self.service(name).ask(Call(args), timeout=timeout)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run_coroutine_threadsafe(coro, self.system.loop).result()
        return coro

    def __repr__(self) -> str:
        return f"<Context {self.path}[{self.index}]>"
