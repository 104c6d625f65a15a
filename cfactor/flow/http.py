"""An HTTP endpoint for an app's services: JSON in, JSON out (no extra dependencies).

``async with app.start(system, http="127.0.0.1:8080") as running:`` serves, until the
block ends:

- ``GET /services`` -> ``[{"name", "kind", "description"}, ...]``
- ``POST /services/NAME`` with a JSON body -> ``{"result": ...}``. For a function
  registered with ``app.reg`` the body is its arguments (a JSON array, or one value);
  for an actor service the body is the message (JSON arrays match tuple patterns).

Errors are JSON too: 400 (body is not JSON), 404 (no such service or path), 405, 413
(body over 1 MiB), 500 (the service raised: its type and message), 504 (no answer in
the ask timeout). One request per connection; the server only listens where told
(loopback in the examples and tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from typing import TYPE_CHECKING, Any

from cfactor.errors import AskTimeout, CfactorError, ConfigError, RemoteActorError

if TYPE_CHECKING:
    from cfactor.flow.run import Running

log = logging.getLogger("cfactor.flow.http")

MAX_BODY = 1 << 20
MAX_HEADER = 16 * 1024
READ_TIMEOUT_S = 10.0

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    500: "Internal Server Error",
    504: "Gateway Timeout",
}


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


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
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
        except asyncio.LimitOverrunError as exc:
            raise HttpError(413, "headers too large") from exc
        if len(head) > MAX_HEADER:
            raise HttpError(413, "headers too large")
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, path, _version = lines[0].split(" ", 2)
        except ValueError as exc:
            raise HttpError(400, f"bad request line {lines[0]!r:.80}") from exc
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (line.partition(":") for line in lines[1:] if line)
        }
        if path == "/services":
            if method != "GET":
                raise HttpError(405, "use GET /services")
            return 200, self._listing()
        if not path.startswith("/services/"):
            raise HttpError(404, f"no such path {path!r:.80}; try GET /services")
        if method != "POST":
            raise HttpError(405, "call a service with POST and a JSON body")
        name = path.removeprefix("/services/")
        length = headers.get("content-length", "0")
        if not re.fullmatch(r"[0-9]{1,9}", length):
            raise HttpError(400, "a POST needs a Content-Length of 0-999999999 bytes")
        if int(length) > MAX_BODY:
            raise HttpError(413, f"the body is over {MAX_BODY} bytes")
        raw = await asyncio.wait_for(reader.readexactly(int(length)), READ_TIMEOUT_S)
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
        message = ("call", tuple(value) if isinstance(value, list) else (value,))
        try:
            result = await ref.ask(message if spec.is_function else value)
        except RemoteActorError as exc:
            raise HttpError(500, f"{exc.type_name}: {exc.message}") from exc
        except AskTimeout as exc:
            raise HttpError(504, str(exc)) from exc
        except CfactorError as exc:
            raise HttpError(500, f"{type(exc).__name__}: {exc}") from exc
        try:
            json.dumps(result, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            raise HttpError(500, f"the answer is not JSON-serialisable: {exc}") from exc
        return result
