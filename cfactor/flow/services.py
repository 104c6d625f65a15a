"""A session's services: its key-value store and the functions registered with ``app.reg``."""

from __future__ import annotations

from typing import Any

from cfactor._core.actor import Actor
from cfactor.flow.functions import is_async, resolve
from cfactor.flow.messages import Call, StoreAdd, StoreGet, StoreItems, StorePut
from cfactor.flow.threads import flow_threads


class SessionStore(Actor):
    """A session's key-value store."""

    def __init__(self) -> None:
        self.data: dict[Any, Any] = {}

    async def receive(self, message: Any) -> Any:
        match message:
            case StoreGet(key, default):
                return self.data.get(key, default)
            case StorePut(key, value):
                self.data[key] = value
                return None
            case StoreAdd(key, delta):
                self.data[key] = self.data.get(key, 0) + delta
                return self.data[key]
            case StoreItems():
                return dict(self.data)
        raise ValueError(f"the session store got an unknown message {message!r:.100}")


class FunctionService(Actor):
    """A function registered with ``app.reg``: ``Call(args)`` runs it."""

    def __init__(self, fn: Any) -> None:
        self.fn = resolve(fn)

    async def receive(self, message: Any) -> Any:
        match message:
            case Call(args):
                if is_async(self.fn):
                    return await self.fn(*args)
                return await self.system.loop.run_in_executor(
                    flow_threads(self.system).pool("services"), self.fn, *args
                )
        raise ValueError(f"expected Call(args), got {message!r:.100}")
