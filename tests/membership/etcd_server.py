"""A real etcd for tests (``cfactor.tools.etcd_server``), and a TCP proxy to cut one
client off it: ``cut()`` drops its connections and refuses new ones (a partition of
that client alone), ``heal()`` lets them through again.
"""

from __future__ import annotations

import asyncio

from cfactor.tools.etcd_server import EtcdServer, find_etcd, free_port

__all__ = ["EtcdServer", "TcpProxy", "find_etcd", "free_port"]


class TcpProxy:
    """Forwards TCP connections from a local port to ``target``; can be cut and healed.

    Use inside one event loop: ``await proxy.start()``, point a client at
    ``proxy.endpoint``, then ``await proxy.cut()`` / ``await proxy.heal()``.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_cut(self) -> bool:
        return self._server is None

    async def start(self) -> None:
        """Listen (on the same port as before, after a cut)."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def heal(self) -> None:
        await self.start()

    async def cut(self) -> None:
        """Drop every connection at once and refuse new ones (connection refused)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in tuple(self._writers):
            writer.transport.abort()
        for task in tuple(self._links):
            task.cancel()
        if self._links:
            await asyncio.wait(tuple(self._links), timeout=2.0)
        if server is not None:
            await server.wait_closed()

    async def aclose(self) -> None:
        await self.cut()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Our own task, not asyncio's handler task: cancelling that one logs an error.
        task = asyncio.get_running_loop().create_task(self._link(reader, writer))
        self._links.add(task)
        task.add_done_callback(self._links.discard)

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            up_reader, upstream = await asyncio.open_connection(*self.target)
            self._writers.add(upstream)
            async with asyncio.TaskGroup() as group:
                group.create_task(_pump(reader, upstream))
                group.create_task(_pump(up_reader, writer))
        except OSError:
            pass
        finally:
            for side in (writer, upstream):
                if side is not None:
                    self._writers.discard(side)
                    side.transport.abort()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass  # a reset is how a cut connection ends
    finally:
        # One side ended: end the other, as a real connection would.
        writer.transport.abort()
