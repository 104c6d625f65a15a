"""The transport conformance suite (``cfactor.testing.check_transport``), one check at a
time, against the memory transport, ZeroMQ over tcp and ZeroMQ over ipc.

The checks themselves ship in the package (cfactor/testing/_check_transport.py) so that a
third-party transport can run them too; see docs/testing.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from cfactor.testing import TRANSPORT_CHECKS, check_transport

if TYPE_CHECKING:
    from tests.transports.conftest import TransportKit

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("check", sorted(TRANSPORT_CHECKS))
async def test_transport_conformance(kit: TransportKit, check: str) -> None:
    await TRANSPORT_CHECKS[check](kit)


async def test_check_transport_runs_every_check_and_fails_on_a_broken_transport(
    kit: TransportKit,
) -> None:
    if kit.kind != "memory":
        pytest.skip("once is enough: each check runs on every transport above")
    assert len(TRANSPORT_CHECKS) >= 9
    await check_transport(kit)

    class Disorderly:
        """Makes transports that deliver each envelope twice: the suite must notice."""

        def __init__(self) -> None:
            self.inner = kit

        def make(self, **options: object) -> object:
            transport = kit.make(**options)
            start = transport.start

            async def start_twice_delivering(address: str, handler: object) -> None:
                class Twice:
                    def __getattr__(self, name: str) -> object:
                        return getattr(handler, name)

                    def envelope_received(self, peer: str, envelope: object) -> None:
                        handler.envelope_received(peer, envelope)  # type: ignore[attr-defined]
                        handler.envelope_received(peer, envelope)  # type: ignore[attr-defined]

                await start(address, Twice())  # type: ignore[arg-type]

            transport.start = start_twice_delivering  # type: ignore[method-assign,assignment]
            return transport

        def listen(self) -> str:
            return kit.listen()

        def unused_address(self) -> str:
            return kit.unused_address()

        @property
        def loss_bound_s(self) -> float:
            return kit.loss_bound_s

    with pytest.raises(AssertionError):
        await TRANSPORT_CHECKS["envelopes_arrive_in_order_with_their_sender"](Disorderly())  # type: ignore[arg-type]
