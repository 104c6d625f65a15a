"""Services over HTTP: JSON in, JSON out, typed errors as JSON, the server stays up."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest

import cfactor as cf

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


class Greeter(cf.Actor):
    async def receive(self, message: Any) -> Any:
        match message:
            case ["hello", str(name)]:
                return f"hello {name}"
            case ["fail"]:
                raise RuntimeError("asked to fail")
            case ["opaque"]:
                return object()
        raise ValueError(f"unknown {message!r}")


def add(a: int, b: int) -> int:
    """Adds two numbers."""
    return a + b


def build() -> cf.App:
    app = cf.App("web")
    app.service(Greeter, "greeter", replicas=2)
    app.reg(add)
    return app


async def request(
    address: str, method: str, path: str, body: bytes = b"", length: int | None = None
) -> tuple[int, Any]:
    host, port = address.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    length = len(body) if length is None else length
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n"
    writer.write(head.encode() + body)
    await writer.drain()
    response = await reader.read()
    writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), json.loads(payload)


async def test_calls_listing_and_errors_over_http() -> None:
    async with cf.ActorSystem() as system, build().start(system, http="127.0.0.1:0") as running:
        address = running.http_address
        assert address.startswith("http://127.0.0.1:")

        status, listing = await request(address, "GET", "/services")
        assert status == 200
        assert listing == [
            {"name": "greeter", "kind": "actor", "description": ""},
            {"name": "add", "kind": "function", "description": "Adds two numbers."},
        ]
        assert await request(address, "POST", "/services/add", b"[2, 40]") == (
            200,
            {"result": 42},
        )
        assert await request(address, "POST", "/services/greeter", b'["hello", "ann"]') == (
            200,
            {"result": "hello ann"},
        )
        status, error = await request(address, "POST", "/services/greeter", b'["fail"]')
        assert (status, error["message"]) == (500, "RuntimeError: asked to fail")
        status, error = await request(address, "POST", "/services/greeter", b'["opaque"]')
        assert status == 500
        assert "not JSON-serialisable" in error["message"]
        status, error = await request(address, "POST", "/services/add", b"{not json")
        assert (status, error["error"]) == (400, "Bad Request")
        status, error = await request(address, "POST", "/services/nope", b"1")
        assert (status, error["message"]) == (404, "no service 'nope'")
        status, _ = await request(address, "GET", "/services/add")
        assert status == 405
        status, _ = await request(address, "GET", "/elsewhere")
        assert status == 404
        # A body over the limit is refused from its Content-Length, before it is read.
        status, _ = await request(address, "POST", "/services/add", length=2 << 20)
        assert status == 413
        # After all that, the endpoint still answers.
        assert await request(address, "POST", "/services/add", b"[1, 1]") == (200, {"result": 2})


def test_a_bad_bind_address_is_a_config_error() -> None:
    from cfactor.flow.http import parse_bind

    assert parse_bind("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_bind("[::1]:8080") == ("::1", 8080)
    for bad in ("nohost", "127.0.0.1:port", ":80", "127.0.0.1:70000"):
        with pytest.raises(cf.ConfigError, match="HOST:PORT"):
            parse_bind(bad)


async def raw(address: str, data: bytes) -> bytes:
    host, port = address.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    writer.write_eof()
    try:
        return await asyncio.wait_for(reader.read(), 15)
    finally:
        writer.close()


async def test_hostile_requests_get_an_error_answer_and_the_endpoint_lives_on() -> None:
    def post(length: bytes, body: bytes = b"") -> bytes:
        return b"POST /services/add HTTP/1.1\r\nContent-Length: " + length + b"\r\n\r\n" + body

    async with cf.ActorSystem() as system, build().start(system, http="127.0.0.1:0") as running:
        address = running.http_address
        for hostile, status in [
            (post("²".encode()), b"400"),  # a digit to str.isdigit, not to int()
            (post(b"9" * 5000), b"400"),  # past int()'s digit limit
            (post(b"200000", b"[" * 200_000), b"400"),  # nests past the recursion limit
            (post(b"3", b"NaN"), b"400"),  # not JSON
            (b"GARBAGE\r\n\r\n", b"400"),
            (b"GET /services HTTP/1.1\r\n" + b"X: y\r\n" * 10_000 + b"\r\n", b"413"),
        ]:
            answer = await raw(address, hostile)
            assert answer.split(b" ")[1] == status, (hostile[:60], answer[:100])
            assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]

        rng = random.Random(5)
        good = post(b"6", b"[1, 2]")
        for _ in range(200):  # mutated requests: an answer or a closed connection, no crash
            data = bytearray(good)
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            answer = await raw(address, bytes(data[: rng.randint(1, len(data))]))
            assert answer == b"" or answer.startswith(b"HTTP/1.1 ")
        assert await request(address, "POST", "/services/add", b"[20, 22]") == (
            200,
            {"result": 42},
        )


class Tally(cf.Actor):
    """Counts the messages this instance handled; ``["fail"]`` raises."""

    def __init__(self) -> None:
        self.handled = 0

    async def receive(self, message: Any) -> Any:
        self.handled += 1
        if message == ["fail"]:
            raise RuntimeError("asked to fail")
        return self.handled


def explode(text: str) -> str:
    """Raises on "boom"."""
    if text == "boom":
        raise ValueError("boom")
    return text.upper()


def resilient_app() -> cf.App:
    app = cf.App("tough")
    app.service(Tally, "one")
    app.service(Tally, "three", replicas=3)
    app.reg(explode)
    return app


async def test_raising_requests_restart_a_service_that_keeps_serving_fresh() -> None:
    async with (
        cf.ActorSystem() as system,
        resilient_app().start(system, http="127.0.0.1:0") as running,
    ):
        address = running.http_address
        for name in ("one", "three"):
            assert await request(address, "POST", f"/services/{name}", b'["count"]') == (
                200,
                {"result": 1},
            )
            for _ in range(12):  # far past the default intensity (3 restarts in 5 s)
                status, error = await request(address, "POST", f"/services/{name}", b'["fail"]')
                assert (status, error["message"]) == (500, "RuntimeError: asked to fail")
            # A fresh instance answers: state from before the failures is gone.
            assert await request(address, "POST", f"/services/{name}", b'["count"]') == (
                200,
                {"result": 1},
            ), name
        for _ in range(12):
            status, error = await request(address, "POST", "/services/explode", b'"boom"')
            assert (status, error["message"]) == (500, "ValueError: boom")
        assert await request(address, "POST", "/services/explode", b'"ok"') == (
            200,
            {"result": "OK"},
        )
        assert system.statistics().escalations == 0
        assert system.statistics().restarts >= 36


async def test_a_stopped_service_is_answered_503() -> None:
    async with (
        cf.ActorSystem() as system,
        resilient_app().start(system, http="127.0.0.1:0") as running,
    ):
        await running.service("one").stop()
        status, error = await request(running.http_address, "POST", "/services/one", b"1")
        assert (status, error["error"]) == (503, "Service Unavailable")
        assert error["message"].startswith("ActorStopped")


def chunked(body: bytes, path: str = "/services/explode", extra: bytes = b"") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n".encode()
        + extra
        + b"\r\n"
        + body
    )


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:80]
    return int(answer.split(b" ")[1])


def body_of(answer: bytes) -> Any:
    return json.loads(answer.partition(b"\r\n\r\n")[2])


async def test_chunked_bodies_are_read_or_refused_and_the_endpoint_keeps_serving() -> None:
    async with (
        cf.ActorSystem() as system,
        resilient_app().start(system, http="127.0.0.1:0") as running,
    ):
        address = running.http_address
        # Split across chunks, with a chunk extension, upper-case hex and a trailer.
        valid = chunked(b'3;note=x\r\n"he\r\nA\r\nllo world.\r\n1\r\n"\r\n0\r\nX-T: 1\r\n\r\n')
        answer = await raw(address, valid)
        assert (status_of(answer), body_of(answer)) == (200, {"result": "HELLO WORLD."})
        # A chunked message to an actor service reaches it (it used to arrive as null).
        answer = await raw(
            address, chunked(b'8\r\n["count"\r\n1\r\n]\r\n0\r\n\r\n', "/services/one")
        )
        assert (status_of(answer), body_of(answer)) == (200, {"result": 1})
        # Sent in pieces with pauses: the reader waits for each piece.
        host, port = address.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        for piece in (chunked(b"4\r\n"), b'"abc\r\n', b'1\r\n"\r\n', b"0\r\n", b"\r\n"):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.05)
        answer = await asyncio.wait_for(reader.read(), 15)
        writer.close()
        assert (status_of(answer), body_of(answer)) == (200, {"result": "ABC"})

        megabyte = b"100000\r\n" + b" " * (1 << 20) + b"\r\n"
        for hostile, status, why in [
            (chunked(b"zz\r\n1\r\n0\r\n\r\n"), 400, "bad chunk size"),
            (chunked(b"-1\r\nx\r\n0\r\n\r\n"), 400, "bad chunk size"),
            (chunked(b"123456789\r\n"), 400, "bad chunk size"),  # more than 8 hex digits
            (chunked(b'2\r\n"abc"\r\n0\r\n\r\n'), 400, "longer than its size"),
            (chunked(b'A\r\n"abc'), 400, "ended before"),  # truncated inside a chunk
            (chunked(b'5\r\n"abc"\r\n'), 400, "ended before"),  # no last chunk
            (chunked(b"5" * 2000), 400, "ended before"),  # a size line with no end
            (chunked(b"1" + b";x" * 1000 + b"\r\n"), 400, "too long"),
            (chunked(megabyte + b"1\r\n \r\n0\r\n\r\n"), 413, "over"),
            (chunked(b"0\r\n\r\n", extra=b"Content-Length: 5\r\n"), 400, "not both"),
            (chunked(b"0\r\n\r\n", extra=b"Transfer-Encoding: chunked\r\n"), 400, "more than"),
            (
                b"POST /services/explode HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nxx",
                501,
                "not supported",
            ),
        ]:
            answer = await raw(address, hostile)
            assert status_of(answer) == status, (hostile[:80], answer[:200])
            assert why in body_of(answer)["message"], body_of(answer)

        rng = random.Random(7)
        for _ in range(200):  # mutated chunked requests: an answer or a closed connection
            data = bytearray(valid)
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.choice(b"0123456789abcdefxz;\r\n ")
            answer = await raw(address, bytes(data[: rng.randint(1, len(data))]))
            assert answer == b"" or answer.startswith(b"HTTP/1.1 "), answer[:80]

        # An empty chunked body is null, as an empty Content-Length body.
        answer = await raw(address, chunked(b"0\r\n\r\n", "/services/one"))
        assert (status_of(answer), body_of(answer)) == (200, {"result": 2})
        assert await request(address, "POST", "/services/explode", b'"still"') == (
            200,
            {"result": "STILL"},
        )
