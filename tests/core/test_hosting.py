"""The hosting seam (``system.hosting``, cfactor/_core/hosting.py) on its own, with no
cluster: what the layers above may rely on."""

from __future__ import annotations

from typing import Any

import pytest

import cfactor as cf
from cfactor.abc import Admission
from cfactor.testing import MemoryNetwork, MemoryTransport, settle

pytestmark = pytest.mark.anyio


class Echo(cf.Actor):
    async def receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("crash")
        return message


class Parent(cf.Actor):
    """Spawns on request: as its child (``spawn``) or under the root (``spawn_at_root``)."""

    async def receive(self, message: Any) -> Any:
        match message:
            case ("child", str(name)):
                return await self.system.spawn(Echo, name=name)
            case ("root", str(name)):
                return await self.system.hosting.spawn_at_root(
                    Echo, (), {}, name=name, restart="permanent"
                )
        return None


async def test_spawn_at_root_is_not_supervised_by_the_calling_actor() -> None:
    async with cf.ActorSystem() as system:
        parent = await system.spawn(Parent, name="parent")
        child = await parent.ask(("child", "c"))
        hosted = await parent.ask(("root", "r"))
        await parent.stop()  # stops its children, not what it started at the root
        assert not child.is_alive
        assert hosted.is_alive
        assert await system.ref("r").ask("hi") == "hi"


async def test_spawn_at_root_checks_what_spawn_checks() -> None:
    async with cf.ActorSystem() as system:
        with pytest.raises(cf.ConfigError):
            await system.hosting.spawn_at_root(int, (), {}, name=None, restart="permanent")  # type: ignore[arg-type]
        with pytest.raises(cf.ConfigError):
            await system.hosting.spawn_at_root(Echo, (), {}, name="a@1", restart="permanent")
        with pytest.raises(cf.ConfigError):
            await system.hosting.spawn_at_root(Echo, (), {}, name=None, restart="sometimes")
        await system.hosting.spawn_at_root(Echo, (), {}, name="e", restart="permanent")
        with pytest.raises(cf.NameTaken):
            await system.hosting.spawn_at_root(Echo, (), {}, name="e", restart="permanent")


async def test_the_directory_views_are_live_and_read_only() -> None:
    async with cf.ActorSystem() as system:
        hosting = system.hosting
        ref = await system.spawn(Echo, name="e")
        cell = hosting.cell("e")
        assert cell is not None
        assert hosting.cell_of(ref) is cell
        assert hosting.cells["e"] is cell
        with pytest.raises(TypeError):
            hosting.cells["x"] = cell  # type: ignore[index]
        hosting.stop_local("e")
        await settle(system)
        assert hosting.cell("e") is None
        assert "e" not in hosting.cells


async def test_on_stopped_runs_once_when_the_actor_stops_for_good_not_on_a_restart() -> None:
    async with cf.ActorSystem() as system:
        ref = await system.spawn(Echo, name="e")
        stopped: list[str] = []
        assert system.hosting.on_stopped(ref, lambda: stopped.append("e"))
        with pytest.raises(cf.RemoteActorError):
            await ref.ask("crash")
        await settle(system)
        assert await ref.ask("again") == "again"  # restarted, same ref
        assert stopped == []
        await ref.stop()
        assert stopped == ["e"]


async def test_remote_refs_have_no_local_cell_and_no_stop_hook() -> None:
    network = MemoryNetwork()
    async with (
        cf.ActorSystem(listen="mem://", transport=MemoryTransport(network)) as a,
        cf.ActorSystem(listen="mem://", transport=MemoryTransport(network)) as b,
    ):
        await b.spawn(Echo, name="e")
        remote = a.ref("e", at=b.address)
        assert a.hosting.cell_of(remote) is None
        assert not a.hosting.on_stopped(remote, lambda: None)
        assert await a.hosting.target(b.address, "e").ask("hi", 5.0) == "hi"


async def test_a_target_needs_a_listening_system() -> None:
    async with cf.ActorSystem() as system:
        with pytest.raises(cf.ConfigError):
            system.hosting.target("mem://member-9", "e")


class Versions:
    """A resolver addressing ``name@vN``: only the current version is accepted, a
    tell to ``held@...`` is taken, everything else is unknown."""

    def __init__(self) -> None:
        self.current: dict[str, int] = {}
        self.taken: list[Any] = []

    def admit(self, target: str, payload: Any, *, tell: bool) -> str | Admission:
        name, at, version = target.partition("@v")
        if not at or not version.isdigit():
            return Admission.UNKNOWN
        if name == "held" and tell:
            self.taken.append(payload)
            return Admission.TAKEN
        if self.current.get(name) == int(version):
            return name
        return Admission.STALE

    def hosts(self, name: str) -> bool:
        return name in self.current


async def test_a_name_resolver_decides_what_inbound_addresses_mean() -> None:
    network = MemoryNetwork()
    async with (
        cf.ActorSystem(listen="mem://", transport=MemoryTransport(network)) as a,
        cf.ActorSystem(listen="mem://", transport=MemoryTransport(network)) as b,
    ):
        resolver = Versions()
        b.hosting.resolver = resolver
        await b.spawn(Echo, name="e")
        resolver.current["e"] = 2
        assert await a.ref("e@v2", at=b.address).ask("hi", timeout=5.0) == "hi"
        assert await a.ref("e", at=b.address).ask("plain", timeout=5.0) == "plain"
        with pytest.raises(cf.ActorNotFound):  # stale: rejected and counted
            await a.ref("e@v1", at=b.address).ask("old", timeout=5.0)
        assert b.statistics().stale_rejected == 1
        with pytest.raises(cf.ActorNotFound):  # unknown to the resolver: no such actor
            await a.ref("e#v2", at=b.address).ask("odd", timeout=5.0)
        await a.ref("held@v1", at=b.address).tell("kept")
        assert await a.ref("e@v2", at=b.address).ask("after", timeout=5.0) == "after"
        assert resolver.taken == ["kept"]
        assert b.statistics().dead_letters == 0
