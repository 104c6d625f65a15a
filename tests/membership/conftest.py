"""Membership backends under test, and a real etcd.

Other test directories reuse the etcd fixture with::

    from tests.membership.conftest import etcd, etcd_server  # noqa: F401

``etcd_server`` is one etcd per test session; ``etcd`` is the same server, started
again if a previous test stopped it.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from cfactor.abc import MemberInfo
from cfactor.errors import MembershipUnavailable
from cfactor.membership import MemoryMembership, MemoryStore
from cfactor.testing import ManualClock
from tests.membership.etcd_server import EtcdServer, TcpProxy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

#: Lease TTL for members that are expected to die in a test: short, so tests are quick;
#: etcd grants whole seconds and checks expiry every 0.5 s.
SHORT_TTL_S = 2.0
#: Lease TTL for members that must survive an outage of the store.
LONG_TTL_S = 6.0

T = TypeVar("T")

_clusters = itertools.count(1)


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdServer]:
    """One real etcd for the whole session, on free loopback ports."""
    with EtcdServer() as server:
        yield server


@pytest.fixture
def etcd(etcd_server: EtcdServer) -> EtcdServer:
    """The session's etcd, running (a test that stopped it may have failed midway)."""
    if not etcd_server.running:
        etcd_server.start()
    return etcd_server


def fake_wall_clock() -> Callable[[], float]:
    """A wall clock for ``joined_at`` that tests can predict: 1000.0, 1001.0, ..."""
    ticks = itertools.count(1000)
    return lambda: float(next(ticks))


class Kit:
    """Makes members of one backend and simulates what goes wrong with their store.

    Every wait is bounded: ``wait_until`` fails the test after ``within`` seconds (of
    virtual time for the memory backend, which runs on a ``ManualClock``).
    """

    def __init__(self, kind: str, etcd: EtcdServer | None) -> None:
        self.kind = kind
        self.etcd = etcd
        self.clock = ManualClock()
        self.store = MemoryStore(clock=self.clock)
        self.cluster = f"test-{next(_clusters)}"
        self.members: list[Any] = []
        self.proxies: dict[int, TcpProxy] = {}
        self._cut: dict[int, str] = {}
        self._ports = itertools.count(7001)

    @property
    def is_etcd(self) -> bool:
        return self.kind == "etcd"

    async def make(self) -> Any:
        """A new, not yet joined member (behind its own proxy, for etcd)."""
        member: Any
        if self.etcd is None:
            member = MemoryMembership(self.store, wall_clock=fake_wall_clock())
        else:
            from cfactor.membership.etcd import EtcdMembership

            proxy = TcpProxy("127.0.0.1", self.etcd.client_port)
            await proxy.start()
            member = EtcdMembership(
                proxy.endpoint,
                cluster=self.cluster,
                request_timeout_s=1.0,
                wall_clock=fake_wall_clock(),
            )
            self.proxies[id(member)] = proxy
        self.members.append(member)
        return member

    def info(self, member_id: str) -> MemberInfo:
        return MemberInfo(
            member_id=member_id,
            address=f"tcp://127.0.0.1:{next(self._ports)}",
            capacity=10,
            labels=(("zone", "z1"),),
            public_key="",
        )

    async def joined(self, member_id: str, ttl_s: float = SHORT_TTL_S) -> Any:
        member = await self.make()
        await member.join(self.info(member_id), ttl_s=ttl_s)
        return member

    async def wait_until(
        self, predicate: Callable[[], bool], *, within: float, what: str = "condition"
    ) -> None:
        """Return once ``predicate()`` holds; fail after ``within`` seconds."""
        if self.etcd is None:
            deadline = self.clock.now() + within
            while True:
                for _ in range(5):
                    await asyncio.sleep(0)
                if predicate():
                    return
                if self.clock.now() >= deadline:
                    pytest.fail(f"{what}: not within {within} s (virtual)")
                self.clock.advance(0.05)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not predicate():
            if loop.time() >= deadline:
                pytest.fail(f"{what}: not within {within} s")
            await asyncio.sleep(0.02)

    async def all_see(
        self,
        members: list[Any],
        predicate: Callable[[Any], bool],
        *,
        within: float,
        what: str = "condition",
    ) -> None:
        """Wait until ``predicate(member)`` holds for each of ``members``."""
        await self.wait_until(lambda: all(predicate(m) for m in members), within=within, what=what)

    async def retry(self, call: Callable[[], Awaitable[T]], *, within: float = 5.0) -> T:
        """``call()`` until it stops raising ``MembershipUnavailable`` (a client that
        reconnects after its store came back: gRPC retries the connection on a backoff)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            try:
                return await call()
            except MembershipUnavailable:
                if loop.time() >= deadline:
                    raise
            await self.pause(0.05)

    async def pause(self, seconds: float) -> None:
        """Let ``seconds`` pass (virtual for memory)."""
        if self.etcd is None:
            steps = math.ceil(seconds / 0.05)
            for _ in range(steps):
                self.clock.advance(0.05)
                await asyncio.sleep(0)
        else:
            await asyncio.sleep(seconds)

    @property
    def expiry_bound_s(self) -> float:
        """How long a dead member may take to be seen as gone."""
        return SHORT_TTL_S + 3.0

    async def kill(self, member: Any) -> None:
        """Make ``member`` stop keeping its lease alive, as a hung process would.

        Memory: the store's ``expire`` hook (the member learns at its next keepalive);
        etcd: its keepalive stops, the lease runs out on the server and in the member.
        """
        if self.etcd is None:
            assert member.info is not None
            assert self.store.expire(member.info.member_id)
        else:
            member._stop_keepalive()

    async def outage(self) -> None:
        """The store becomes unreachable for everyone."""
        if self.etcd is None:
            self.store.set_available(False)
        else:
            await self.etcd.astop(kill=True)

    async def restore(self) -> None:
        if self.etcd is None:
            self.store.set_available(True)
        else:
            await self.etcd.astart()

    async def partition(self, member: Any) -> None:
        """Cut ``member`` alone off the store."""
        if self.etcd is None:
            self._cut[id(member)] = member.info.member_id
            self.store.disconnect(member.info.member_id)
        else:
            await self.proxies[id(member)].cut()

    async def heal(self, member: Any) -> None:
        if self.etcd is None:
            self.store.reconnect(self._cut.pop(id(member)))
        else:
            await self.proxies[id(member)].heal()

    async def compact(self) -> None:
        """Forget the store's history up to now."""
        if self.etcd is None:
            self.store.compact()
            return
        import aetcd

        client = aetcd.Client(host="127.0.0.1", port=self.etcd.client_port)
        try:
            # Any range read answers with the store's current revision.
            revision = (await client.get_prefix(b"/cfactor/")).header.revision
            await client.compact(revision, physical=True)
        finally:
            await client.close()

    async def aclose(self) -> None:
        if self.etcd is not None and not self.etcd.running:
            await self.etcd.astart()
        for proxy in self.proxies.values():
            await proxy.heal()
        for member in self.members:
            await member.aclose()
        for proxy in self.proxies.values():
            await proxy.aclose()


@pytest.fixture(params=["memory", "etcd"])
async def kit(request: pytest.FixtureRequest, anyio_backend: Any) -> AsyncIterator[Kit]:
    """A backend: memory on virtual time, or etcd against the real server."""
    server: EtcdServer | None = None
    if request.param == "etcd":
        # Asked for here, not as an argument, so memory-only runs start no etcd.
        server = request.getfixturevalue("etcd_server")
        assert server is not None
        if not server.running:
            await server.astart()
    kit = Kit(request.param, server)
    try:
        yield kit
    finally:
        await kit.aclose()
