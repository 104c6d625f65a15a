"""The flow layer's threads belong to one actor system and stop with it."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import cfactor as cf
from cfactor.flow.threads import flow_threads

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


def numbers(ctx: cf.Context, n: int) -> Any:
    yield from range(n)


def double(ctx: cf.Context, x: int) -> int:
    return 2 * x


def total(ctx: cf.Context, items: list[int]) -> int:
    return sum(items)


def flow_threads_alive(before: set[threading.Thread]) -> list[threading.Thread]:
    return [
        t
        for t in threading.enumerate()
        if t not in before and t.name.startswith(("cfactor-nodes", "cfactor-services"))
    ]


async def test_after_aclose_no_thread_of_the_pools_is_alive() -> None:
    before = set(threading.enumerate())
    async with cf.ActorSystem() as system:
        app = cf.App("threads")
        app.session("s").flow("f").add(numbers, "read", 2000).map(double, "double", 3).reduce(
            total, "total", 1
        )
        result = await app.run(system)
        assert result.output == [2 * sum(range(2000))]
        assert flow_threads_alive(before), "the sync functions ran on no flow thread"
    assert flow_threads_alive(before) == []


async def test_two_systems_share_no_pool_lock_or_timer() -> None:
    async with cf.ActorSystem() as a, cf.ActorSystem() as b:
        threads_a, threads_b = flow_threads(a), flow_threads(b)
        assert flow_threads(a) is threads_a
        assert threads_a is not threads_b
        assert threads_a.reducing is not threads_b.reducing
        assert threads_a.pool("nodes") is not threads_b.pool("nodes")
        with threads_a.reducing:  # a reduce running in one system blocks none in the other
            assert threads_b.reducing.acquire(blocking=False)
            threads_b.reducing.release()
        threads_a.release_memory_soon()
        threads_b.release_memory_soon()
        await b.aclose()
        # a's trim is still pending: closing b called off only b's
        assert threads_a._trim is not None
        assert threads_b._trim is None


async def test_a_closed_system_has_no_flow_threads() -> None:
    async with cf.ActorSystem() as system:
        pass
    with pytest.raises(cf.SystemClosed):
        flow_threads(system)


async def test_a_trim_due_when_the_system_closes_is_done_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trims: list[str] = []
    monkeypatch.setattr(
        "cfactor.flow.threads._malloc_trim", lambda: trims.append(threading.current_thread().name)
    )
    async with cf.ActorSystem() as system:
        threads = flow_threads(system)
        pool = threads.pool("nodes")
        assert pool is not None  # None only on a loop that runs functions inline
        pool.submit(int).result()
        threads.release_memory_soon()  # due in a second; the system closes first
    assert trims == ["cfactor-flow-join"]


async def test_closing_does_not_hang_on_a_function_that_does_not_return(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = threading.Event()
    system = cf.ActorSystem(stop_timeout_s=0.2)
    async with system:
        pool = flow_threads(system).pool("services")
        assert pool is not None
        running = pool.submit(release.wait, 30)
    assert not running.done()
    assert "flow threads still busy" in caplog.text
    release.set()
    assert running.result(timeout=5) is True
