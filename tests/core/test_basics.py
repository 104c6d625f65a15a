from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

import cfactor as cf
from cfactor._core.cell import ActorCell
from tests.core.actors import Counter, Recorder

pytestmark = pytest.mark.anyio


async def test_the_design_example_counts_to_seven() -> None:
    async with cf.ActorSystem() as system:
        ref = await system.spawn(Counter, 5, name="counter")
        await ref.tell(("add", 1))
        ref.tell_nowait(("add", 1))
        assert await ref.ask("get", timeout=1.0) == 7
        assert system.ref("counter") is ref
        await ref.stop()
        assert not ref.is_alive


async def test_messages_from_one_sender_arrive_in_order() -> None:
    async with cf.ActorSystem(mailbox_capacity=64) as system:
        ref = await system.spawn(Recorder)
        for i in range(5000):  # well past the capacity: the sender waits for room
            await ref.tell(i)
        assert await ref.ask("log") == list(range(5000))


async def test_order_holds_per_sender_with_interleaved_senders() -> None:
    async with cf.ActorSystem(mailbox_capacity=8) as system:
        ref = await system.spawn(Recorder)

        async def sender(tag: str) -> None:
            for i in range(300):
                await ref.tell((tag, i))
                if i % 7 == 0:
                    await asyncio.sleep(0)

        await asyncio.gather(*(sender(tag) for tag in "abc"))
        log = await ref.ask("log")
        for tag in "abc":
            assert [i for t, i in log if t == tag] == list(range(300))


async def test_lookup_by_name_and_its_errors() -> None:
    async with cf.ActorSystem() as system:
        ref = await system.spawn(Counter, name="c")
        assert system.ref("c") == ref
        with pytest.raises(cf.ActorNotFound, match="'nope'"):
            system.ref("nope")
        with pytest.raises(cf.NameTaken):
            await system.spawn(Counter, name="c")
        with pytest.raises(cf.ConfigError):
            await system.spawn(Counter, name="$reserved")
        await ref.stop()
        with pytest.raises(cf.ActorNotFound):
            system.ref("c")
        # The name is free again; the new actor is a different actor.
        again = await system.spawn(Counter, name="c")
        assert again != ref
        assert again.uid != ref.uid


async def test_spawn_rejects_what_is_not_an_actor() -> None:
    class NoReceive(cf.Actor):
        pass

    async with cf.ActorSystem() as system:
        with pytest.raises(cf.ConfigError, match="receive"):
            await system.spawn(NoReceive)
        with pytest.raises(cf.ConfigError):
            await system.spawn(dict)  # type: ignore[arg-type]
        with pytest.raises(cf.ConfigError):
            await system.spawn(Counter, mailbox_capacity=0)
        with pytest.raises(cf.ConfigError):
            await system.spawn(Counter, restart="sometimes")


async def test_a_constructor_or_on_start_that_raises_fails_the_spawn() -> None:
    class BadInit(cf.Actor):
        def __init__(self) -> None:
            raise RuntimeError("no config")

        async def receive(self, message: Any) -> Any:
            return message

    class BadStart(Counter):
        async def on_start(self) -> None:
            raise OSError("port in use")

    async with cf.ActorSystem() as system:
        with pytest.raises(cf.ActorStartFailed) as info:
            await system.spawn(BadInit, name="a")
        assert isinstance(info.value.__cause__, RuntimeError)
        with pytest.raises(cf.ActorStartFailed, match="port in use"):
            await system.spawn(BadStart, name="b")
        assert system.statistics().actors == 0
        with pytest.raises(cf.ActorNotFound):
            system.ref("b")


async def test_hooks_see_ref_and_system_and_run_in_order() -> None:
    events: list[str] = []

    class Hooked(cf.Actor):
        async def on_start(self) -> None:
            events.append(f"start {self.ref.name} {self.system.ref(self.ref.name) is self.ref}")

        async def on_stop(self) -> None:
            events.append("stop")

        async def receive(self, message: Any) -> Any:
            events.append(f"got {message}")

    async with cf.ActorSystem() as system:
        ref = await system.spawn(Hooked, name="h")
        await ref.ask(1)
        await ref.stop()
        await ref.stop()  # idempotent
    assert events == ["start h True", "got 1", "stop"]


async def test_refs_compare_by_actor_and_show_their_state() -> None:
    async with cf.ActorSystem() as system:
        a = await system.spawn(Counter, name="a")
        b = await system.spawn(Counter, name="b")
        assert a == system.ref("a")
        assert a != b
        assert len({a, system.ref("a"), b}) == 2
        assert a != "a"
        a.tell_nowait(("add", 1))
        assert repr(a) == f"<ActorRef a#{a.uid} alive depth=1/1000>"
        await a.stop()
        assert repr(a) == f"<ActorRef a#{a.uid} stopped depth=0/1000>"


async def test_two_systems_in_one_process_are_independent() -> None:
    async with cf.ActorSystem() as one, cf.ActorSystem() as two:
        a = await one.spawn(Counter, 1, name="same")
        b = await two.spawn(Counter, 2, name="same")
        assert a != b
        await a.tell(("add", 10))
        assert await one.ref("same").ask("get") == 11
        assert await two.ref("same").ask("get") == 2
        await one.aclose()
        assert await b.ask("get") == 2


async def test_a_closed_system_refuses_work() -> None:
    system = cf.ActorSystem()
    with pytest.raises(cf.SystemClosed):
        await system.spawn(Counter)
    async with system:
        ref = await system.spawn(Counter)
    assert not ref.is_alive
    with pytest.raises(cf.SystemClosed):
        await system.spawn(Counter)
    with pytest.raises(cf.SystemClosed):
        await system.start()


async def test_closing_stops_children_before_parents_newest_first() -> None:
    stops: list[str] = []

    class Node(cf.Actor):
        def __init__(self, label: str, kids: tuple[str, ...] = ()) -> None:
            self.label = label
            self.kids = kids

        async def on_start(self) -> None:
            for kid in self.kids:
                await self.system.spawn(Node, kid, name=kid)

        async def on_stop(self) -> None:
            stops.append(self.label)

        async def receive(self, message: Any) -> Any:
            return self.label

    async with cf.ActorSystem() as system:
        await system.spawn(Node, "p1", ("c1", "c2"), name="p1")
        await system.spawn(Node, "p2", ("c3",), name="p2")
    assert stops == ["c3", "p2", "c2", "c1", "p1"]


@pytest.mark.parametrize("use_uvloop", [True, False])
def test_cf_run_returns_the_result_with_and_without_uvloop(use_uvloop: bool) -> None:
    async def main() -> tuple[int, str]:
        async with cf.ActorSystem() as system:
            ref = await system.spawn(Counter, 41)
            await ref.tell(("add", 1))
            return await ref.ask("get"), type(asyncio.get_running_loop()).__module__

    answer, loop_module = cf.run(main, use_uvloop=use_uvloop)
    assert answer == 42
    assert loop_module.startswith("uvloop") == use_uvloop


def test_runs_under_anyio_on_the_asyncio_backend() -> None:
    async def main() -> int:
        async with cf.ActorSystem() as system:
            ref = await system.spawn(Counter, 1)
            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(ref.tell, ("add", 1))
            with anyio.fail_after(1):
                result: int = await ref.ask("get")
                return result

    assert anyio.run(main, backend="asyncio") == 11


async def test_an_idle_actor_owns_no_task_and_no_queue() -> None:
    async with cf.ActorSystem() as system:
        ref = await system.spawn(Counter)
        cell = ref._cell
        assert isinstance(cell, ActorCell)

        def owns() -> tuple[bool, bool]:
            return cell.task is not None, cell.queue is not None

        assert owns() == (False, False)
        await ref.tell(("add", 1))
        assert owns() == (True, True)  # scheduled because it has mail
        assert await ref.ask("get") == 1
        await asyncio.sleep(0)
        assert owns() == (False, False)


async def test_names_with_an_at_sign_are_refused() -> None:
    async with cf.ActorSystem() as system:
        with pytest.raises(cf.ConfigError, match="'@'"):
            await system.spawn(Counter, name="job@1")
