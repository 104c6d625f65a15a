"""How fast the HTTP gateway answers requests that make a service raise (each one
restarts the service: ``Restart.RESILIENT``), next to valid requests in the same run.

Per service kind (an actor service, a 3-replica one, an ``app.reg`` function): 10
raising requests, then how many of 10 valid calls answer 200 (before issue 10 item 9:
0/10 for the actor service and the function, which were stopped for good), then N
raising requests one after another (requests/s), then N valid ones (the baseline).

    .venv/bin/python benchmarks/service_storm.py             # N = 1000
    .venv/bin/python benchmarks/service_storm.py --quick     # N = 200
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from time import perf_counter
from typing import Any

import cfactor as cf


class Counter(cf.Actor):
    def __init__(self) -> None:
        self.n = 0

    async def receive(self, message: Any) -> Any:
        self.n += 1
        if message == ["fail"]:
            raise RuntimeError("asked to fail")
        return self.n


def echo(value: Any) -> Any:
    if value == "fail":
        raise ValueError("asked to fail")
    return value


async def post(address: str, path: str, body: bytes) -> int:
    host, port = address.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    head = f"POST {path} HTTP/1.1\r\nContent-Length: {len(body)}\r\n\r\n"
    writer.write(head.encode() + body)
    response = await reader.read()
    writer.close()
    return int(response.split(b" ")[1])


async def rate(address: str, path: str, body: bytes, n: int) -> tuple[float, set[int]]:
    started = perf_counter()
    statuses = {await post(address, path, body) for _ in range(n)}
    return n / (perf_counter() - started), statuses


async def main(n: int) -> None:
    app = cf.App("bench")
    app.service(Counter, "one")
    app.service(Counter, "three", replicas=3)
    app.reg(echo)
    async with cf.ActorSystem() as system, app.start(system, http="127.0.0.1:0") as running:
        address = running.http_address
        for name, bad in (("one", b'["fail"]'), ("three", b'["fail"]'), ("echo", b'"fail"')):
            path = f"/services/{name}"
            for _ in range(10):
                await post(address, path, bad)
            ok = sum([await post(address, path, b'"x"') == 200 for _ in range(10)])
            raising, bad_statuses = await rate(address, path, bad, n)
            valid, good_statuses = await rate(address, path, b'"x"', n)
            print(
                f"{name:6} valid 200s after 10 raising: {ok}/10 (target 10/10) | "
                f"{n} raising: {raising:,.0f} req/s {sorted(bad_statuses)} | "
                f"baseline {n} valid: {valid:,.0f} req/s {sorted(good_statuses)} | "
                f"ratio {raising / valid:.2f}"
            )
        print(
            f"restarts {system.statistics().restarts}, escalations (target 0) "
            f"{system.statistics().escalations}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 requests per figure")
    logging.disable(logging.CRITICAL)  # a log line per failure would be timed too
    asyncio.run(main(200 if parser.parse_args().quick else 1000))
