"""ZAP (ZeroMQ RFC 27) answered on the event loop: which CURVE keys may connect.

pyzmq's ``ThreadAuthenticator`` would do the same from a thread of its own; this
handler is a REP socket read like every other socket of the transport (a reader on its
file descriptor, drained without blocking), so it needs no thread, no locks, and its
rejections reach the transport's rate-limited log directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, cast

import zmq
from zmq.utils import z85

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Iterable

ZAP_ENDPOINT: Final = "inproc://zeromq.zap.01"
"""Where libzmq sends ZAP requests (per context, so each transport has its own)."""

_VERSION: Final = b"1.0"
_CURVE_KEY_BYTES: Final = 32
_DRAIN_BUDGET: Final = 64


class ZapHandler:
    """Accepts CURVE clients whose public key is allowed; refuses everything else.

    An accepted client's user id is its Z85 public key, so each message it sends
    carries that key in its ``User-Id`` property, which the transport binds to the
    address the client claims.

    Args:
        context: The transport's private context (ZAP is per context).
        loop: The loop to answer on.
        allowed_keys: Z85 public keys that may connect.
        on_reject: Called with the client's IP address and the reason for each refusal.

    Raises:
        zmq.ZMQError: The ZAP endpoint is already bound in this context.
    """

    __slots__ = ("_allowed", "_fd", "_loop", "_on_reject", "_sock")

    def __init__(
        self,
        context: zmq.Context[zmq.Socket[bytes]],
        loop: asyncio.AbstractEventLoop,
        allowed_keys: Iterable[str],
        on_reject: Callable[[str, str], None],
    ) -> None:
        self._allowed = frozenset(key.encode("ascii") for key in allowed_keys)
        self._loop = loop
        self._on_reject = on_reject
        sock: zmq.Socket[bytes] = context.socket(zmq.REP)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            sock.bind(ZAP_ENDPOINT)
        except zmq.ZMQError:
            sock.close(linger=0)
            raise
        self._sock: zmq.Socket[bytes] | None = sock
        self._fd = sock.FD
        loop.add_reader(self._fd, self._drain)

    def close(self) -> None:
        """Stop answering and close the socket. Idempotent."""
        sock = self._sock
        if sock is None:
            return
        self._sock = None
        self._loop.remove_reader(self._fd)
        sock.close(linger=0)

    def _drain(self) -> None:
        # The socket's fd is edge-triggered: drain until Again, then check EVENTS
        # once more, since the reply we sent may have consumed a wake-up.
        sock = self._sock
        if sock is None:
            return
        for _ in range(_DRAIN_BUDGET):
            try:
                request = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                if cast("int", sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                    continue
                return
            except zmq.ZMQError:
                return  # the context is being terminated
            try:
                sock.send_multipart(self._answer(request), zmq.NOBLOCK)
            except zmq.ZMQError:
                return
        self._loop.call_soon(self._drain)  # fairness: let the loop run, then go on

    def _answer(self, request: list[bytes]) -> list[bytes]:
        # [version, request id, domain, address, routing id, mechanism, *credentials]
        request_id = request[1] if len(request) > 1 else b""
        if len(request) < 6 or request[0] != _VERSION:
            return _reply(request_id, b"500", b"malformed ZAP request")
        address = request[3].decode(errors="replace")
        mechanism = request[5]
        credentials = request[6:]
        if (
            mechanism != b"CURVE"
            or len(credentials) != 1
            or len(credentials[0]) != _CURVE_KEY_BYTES
        ):
            self._on_reject(address, f"mechanism {mechanism[:16].decode(errors='replace')}")
            return _reply(request_id, b"400", b"CURVE required")
        key = z85.encode(credentials[0])
        if key not in self._allowed:
            self._on_reject(address, f"public key {key.decode()} is not allowed")
            return _reply(request_id, b"400", b"key not allowed")
        return _reply(request_id, b"200", b"OK", key)


def _reply(request_id: bytes, status: bytes, text: bytes, user_id: bytes = b"") -> list[bytes]:
    return [_VERSION, request_id, status, text, user_id, b""]
