"""An HTTP endpoint for an app's services: JSON in, JSON out (no extra dependencies).

``async with app.start(system, http="127.0.0.1:8080") as running:`` serves, until the
block ends:

- ``GET /services`` -> ``[{"name", "kind", "description"}, ...]``
- ``POST /services/NAME`` with a JSON body -> ``{"result": ...}``. For a function
  registered with ``app.reg`` the body is its arguments (a JSON array, or one value);
  for an actor service the body is the message (JSON arrays match tuple patterns).

The body comes with a ``Content-Length`` or ``Transfer-Encoding: chunked`` (read and
checked chunk by chunk, under the same 1 MiB limit). Errors are JSON too: 400 (body is
not JSON, a malformed or truncated body, both framings at once), 404 (no such service or
path), 405, 413 (body over 1 MiB), 500 (the service raised: its type and message), 501
(a transfer coding other than chunked), 503 (the service's mailbox is full, or it is
stopped or unreachable), 504 (no answer in the ask timeout). One request
per connection; the server only listens where told (loopback in the examples and tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from typing import TYPE_CHECKING, Any

from cfactor.errors import (
    ActorNotFound,
    ActorStopped,
    AskTimeout,
    CfactorError,
    ConfigError,
    MailboxFull,
    MemberUnreachable,
    RemoteActorError,
)
from cfactor.flow.messages import Call

if TYPE_CHECKING:
    from cfactor.flow.run import Running

log = logging.getLogger("cfactor.flow.http")

MAX_BODY = 1 << 20
MAX_HEADER = 16 * 1024
#: A chunk-size line (size and extensions) longer than this is refused (400).
MAX_CHUNK_LINE = 1024
READ_TIMEOUT_S = 10.0

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_FRAMING = ("content-length", "transfer-encoding")


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_bind(http: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"`` -> (host, port).

    Raises:
        ConfigError: Not HOST:PORT.
    """
    host, _, port = http.removeprefix("http://").rpartition(":")
    if not host or not re.fullmatch(r"[0-9]{1,5}", port) or int(port) > 65535:
        raise ConfigError(f"http must be HOST:PORT (port 0 for any), got {http!r}")
    return host.strip("[]"), int(port)


class ServiceEndpoint:
    """The HTTP server of one ``Running`` app."""

    def __init__(self, running: Running) -> None:
        self.running = running
        self.server: asyncio.Server | None = None
        self.address = ""
        #: Connections closed before a whole request arrived (logged at debug).
        self.abandoned = 0

    async def start(self, http: str) -> None:
        host, port = parse_bind(http)
        self.server = await asyncio.start_server(self._serve, host, port)
        sock = self.server.sockets[0].getsockname()
        shown = f"[{sock[0]}]" if ":" in sock[0] else sock[0]
        self.address = f"http://{shown}:{sock[1]}"
        log.info("services of %s at %s", self.running.app.name, self.address)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, body = await self._handle(reader)
        except HttpError as exc:
            status, body = exc.status, {"error": _REASONS[exc.status], "message": str(exc)}
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError) as exc:
            self.abandoned += 1
            log.debug("a request was cut off (%r); %d so far", exc, self.abandoned)
            writer.close()
            return
        except Exception as exc:  # a bug of ours: answer, log, keep serving
            log.exception("the services endpoint failed on a request")
            status, body = 500, {"error": _REASONS[500], "message": f"{type(exc).__name__}"}
        try:
            payload = json.dumps(body, allow_nan=False).encode()
        except ValueError as exc:  # NaN or infinity in an answer: not JSON
            status = 500
            payload = json.dumps({"error": _REASONS[500], "message": str(exc)}).encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(ConnectionError):
            writer.write(head.encode() + payload)
            await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader) -> tuple[int, Any]:
        clock = self.running.system.clock
        try:
            head = await clock.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
        except asyncio.LimitOverrunError as exc:
            raise HttpError(413, "headers too large") from exc
        if len(head) > MAX_HEADER:
            raise HttpError(413, "headers too large")
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, path, _version = lines[0].split(" ", 2)
        except ValueError as exc:
            raise HttpError(400, f"bad request line {lines[0]!r:.80}") from exc
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            key, _, text = line.partition(":")
            key = key.strip().lower()
            if key in _FRAMING and key in headers:
                # Two framings of one body are how requests are smuggled: refuse.
                raise HttpError(400, f"more than one {key} header")
            headers[key] = text.strip()
        if path == "/services":
            if method != "GET":
                raise HttpError(405, "use GET /services")
            return 200, self._listing()
        if not path.startswith("/services/"):
            raise HttpError(404, f"no such path {path!r:.80}; try GET /services")
        if method != "POST":
            raise HttpError(405, "call a service with POST and a JSON body")
        name = path.removeprefix("/services/")
        try:
            async with clock.timeout(READ_TIMEOUT_S):
                raw = await _read_body(reader, headers)
        except asyncio.IncompleteReadError as exc:
            # The client may only have half-closed: tell it, rather than just hanging up.
            raise HttpError(400, "the body ended before its announced end") from exc
        try:
            value = json.loads(raw, parse_constant=_no_constant) if raw else None
        except (ValueError, RecursionError) as exc:  # nesting too deep is RecursionError
            raise HttpError(400, f"the body is not JSON: {type(exc).__name__}") from exc
        return 200, {"result": await self._call(name, value)}

    def _listing(self) -> list[dict[str, Any]]:
        return [
            {
                "name": name,
                "kind": "function" if spec.is_function else "actor",
                "description": spec.description,
            }
            for name, spec in self.running.app.services.items()
        ]

    async def _call(self, name: str, value: Any) -> Any:
        spec = self.running.app.services.get(name)
        if spec is None:
            raise HttpError(404, f"no service {name!r}")
        ref = self.running.service(name)
        message = Call(tuple(value) if isinstance(value, list) else (value,))
        try:
            result = await ref.ask(message if spec.is_function else value)
        except RemoteActorError as exc:
            raise HttpError(500, f"{exc.type_name}: {exc.message}") from exc
        except AskTimeout as exc:
            raise HttpError(504, str(exc)) from exc
        except (MailboxFull, ActorStopped, ActorNotFound, MemberUnreachable) as exc:
            # Not the request's fault, and worth retrying later: overloaded, or the
            # service is not (or no longer) where it should be.
            raise HttpError(503, f"{type(exc).__name__}: {exc}") from exc
        except CfactorError as exc:
            raise HttpError(500, f"{type(exc).__name__}: {exc}") from exc
        try:
            json.dumps(result, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            raise HttpError(500, f"the answer is not JSON-serialisable: {exc}") from exc
        return result


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    """The request body, framed by Content-Length or chunked, at most ``MAX_BODY`` bytes.

    Raises:
        HttpError: 400 (bad framing), 413 (over ``MAX_BODY``), 501 (unknown coding).
        asyncio.IncompleteReadError: The connection ended inside the body.
    """
    coding = headers.get("transfer-encoding")
    if coding is None:
        length = headers.get("content-length", "0")
        if not re.fullmatch(r"[0-9]{1,9}", length):
            raise HttpError(400, "a POST needs a Content-Length of 0-999999999 bytes")
        if int(length) > MAX_BODY:
            raise HttpError(413, f"the body is over {MAX_BODY} bytes")
        return await reader.readexactly(int(length))
    if "content-length" in headers:
        raise HttpError(400, "a request has a Content-Length or a Transfer-Encoding, not both")
    if coding.lower() != "chunked":
        raise HttpError(501, f"transfer coding {coding!r:.40} is not supported; use chunked")
    return await _read_chunked(reader)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """Read a chunked body (RFC 9112 section 7.1); extensions and trailers are skipped."""
    parts: list[bytes] = []
    total = 0
    while True:
        line = await _read_line(reader, "chunk size")
        size_text = line.partition(b";")[0].strip()
        if not re.fullmatch(rb"[0-9A-Fa-f]{1,8}", size_text):
            raise HttpError(400, f"bad chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            break
        total += size
        if total > MAX_BODY:
            raise HttpError(413, f"the body is over {MAX_BODY} bytes")
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise HttpError(400, "a chunk is longer than its size says")
    trailers = 0
    while line := await _read_line(reader, "trailer"):
        trailers += len(line)
        if trailers > MAX_HEADER:
            raise HttpError(413, "trailers too large")
    return b"".join(parts)


async def _read_line(reader: asyncio.StreamReader, what: str) -> bytes:
    """One CRLF-ended line without its CRLF, at most ``MAX_CHUNK_LINE`` bytes."""
    try:
        line = await reader.readuntil(b"\r\n")
    except asyncio.LimitOverrunError as exc:
        raise HttpError(400, f"{what} line too long") from exc
    if len(line) > MAX_CHUNK_LINE + 2:
        raise HttpError(400, f"{what} line too long")
    return line[:-2]
