"""Services under crash storms: input never stops a service for good (issue 10, item 9).

A request that makes a service raise is answered 500 with the error, and the service is
restarted with a fresh instance (``Restart.RESILIENT``, docs/flow.md), embedded and on a
real cluster (etcd + a member process), for actor services, replicated ones and
``app.reg`` functions.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import cfactor as cf
from tests.cluster.actors import eventually
from tests.cluster.harness import WORKERS, real_cluster
from tests.faults.actors_services import Fragile, shout

pytestmark = [pytest.mark.anyio]

FAIL = b'["fail", "storm"]'


async def post(address: str, path: str, body: bytes) -> tuple[int, Any]:
    host, port = address.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
        writer.write(head.encode() + body)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 20)
    finally:
        writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


def storm_app(name: str) -> cf.App:
    app = cf.App(name)
    app.service(Fragile, "one")
    app.service(Fragile, "three", replicas=3)
    app.reg(shout)
    return app


@pytest.mark.timeout(60)
async def test_a_crash_storm_never_stops_a_service() -> None:
    async with (
        cf.ActorSystem(ask_timeout_s=10) as system,
        storm_app("storm").start(system, http="127.0.0.1:0") as running,
    ):
        address = running.http_address
        gate = asyncio.Semaphore(20)  # 20 connections at a time, 300 requests in all

        async def call(path: str, body: bytes) -> tuple[str, int, Any]:
            async with gate:
                status, answer = await post(address, path, body)
            return path, status, answer

        raising: list[Any] = []
        valid: list[Any] = []
        for i in range(200):
            path = ("/services/one", "/services/three")[i % 2]
            raising.append(call(path, FAIL) if i % 3 else call("/services/shout", b'"boom"'))
            if i % 2 == 0:
                valid.append(call(path, b'"count"') if i % 4 else call("/services/shout", b'"a"'))
        answers = await asyncio.wait_for(
            asyncio.gather(asyncio.gather(*raising), asyncio.gather(*valid)), 45
        )
        failed, served = answers
        for path, status, answer in failed:
            expected = "ValueError: boom" if path.endswith("shout") else "RuntimeError: storm"
            assert (status, answer["message"]) == (500, expected), path
        # Valid calls in the middle of the storm were served, by whichever instance.
        assert all(status == 200 for _, status, _ in served), served
        # Afterwards: every service answers; one more failure, and a fresh instance.
        assert (await post(address, "/services/one", FAIL))[0] == 500
        assert await post(address, "/services/one", b'"count"') == (200, {"result": 1})
        assert (await post(address, "/services/three", b'"count"'))[0] == 200
        assert await post(address, "/services/shout", b'"ok"') == (200, {"result": "OK"})
        statistics = system.statistics()
        assert statistics.escalations == 0
        assert statistics.restarts >= 200


@pytest.mark.timeout(60)
async def test_a_service_whose_dependency_is_down_backs_off_and_comes_back() -> None:
    app = cf.App("flaky")
    app.service(Fragile, "one")
    app.reg(shout)
    loop = asyncio.get_running_loop()
    try:
        async with (
            cf.ActorSystem(ask_timeout_s=0.5) as system,
            app.start(system, http="127.0.0.1:0") as running,
        ):
            address = running.http_address
            Fragile.down = True
            assert (await post(address, "/services/one", FAIL))[0] == 500
            # It cannot start now: calls wait in its mailbox and time out, promptly.
            for _ in range(3):
                started = loop.time()
                status, answer = await post(address, "/services/one", b'"count"')
                assert (status, answer["error"]) == (504, "Gateway Timeout")
                assert loop.time() - started < 5
            # Its neighbours are not affected.
            assert await post(address, "/services/shout", b'"x"') == (200, {"result": "X"})
            await asyncio.sleep(1.0)  # a few failed starts: the backoff has grown
            Fragile.down = False

            async def served() -> bool:
                return (await post(address, "/services/one", b'"count"'))[0] == 200

            # Back within the longest backoff (5 s), plus a generous margin.
            await eventually(served, timeout=20)
            assert system.statistics().escalations == 0
    finally:
        Fragile.down = False


@pytest.mark.timeout(90)
async def test_services_on_a_real_cluster_survive_a_crash_storm() -> None:
    async with real_cluster(1, ttl_s=5.0) as c:
        assert c.me is not None
        worker = c.workers[0]
        # On a member process: the restart type travels with the spawn.
        ref = await c.me.spawn(Fragile, name="remote-svc", placement=WORKERS, restart="resilient")
        assert await ref.ask("where") == worker.address
        for _ in range(30):
            with pytest.raises(cf.RemoteActorError, match="storm"):
                await ref.ask(("fail", "storm"))
        assert await ref.ask("count") == 1  # a fresh instance
        assert await ref.ask("where") == worker.address  # restarted in place

        async with storm_app("cl").start(c.me, http="127.0.0.1:0") as running:
            address = running.http_address
            for i in range(60):
                path = ("/services/one", "/services/three")[i % 2]
                status, answer = await post(address, path, FAIL)
                assert (status, answer["message"]) == (500, "RuntimeError: storm")
                status, answer = await post(address, "/services/shout", b'"boom"')
                assert (status, answer["message"]) == (500, "ValueError: boom")
            assert await post(address, "/services/one", b'"count"') == (200, {"result": 1})
            assert (await post(address, "/services/three", b'"count"'))[0] == 200
            assert await post(address, "/services/shout", b'"ok"') == (200, {"result": "OK"})
            # The cluster placed it (least loaded): on either member, it came back.
            status, where = await post(address, "/services/one", b'"where"')
            assert (status, where["result"] in {c.me.address, worker.address}) == (200, True)
        assert "Traceback" in worker.stderr_text()  # its log went to the file, not a pipe
