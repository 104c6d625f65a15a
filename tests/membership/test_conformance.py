"""The membership conformance suite (``cfactor.testing.check_membership``), one check at
a time, against the memory backend (on a ``ManualClock``, so lease expiry is virtual
time) and against a real etcd; the kit is in conftest.py.

The checks themselves ship in the package (cfactor/testing/_check_membership.py) so that a
third-party membership backend can run them too; see docs/testing.md.
"""

from __future__ import annotations

from typing import Any

import pytest

from cfactor.testing import MEMBERSHIP_CHECKS, check_membership
from tests.membership.conftest import Kit

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("check", sorted(MEMBERSHIP_CHECKS))
async def test_membership_conformance(kit: Kit, check: str) -> None:
    await MEMBERSHIP_CHECKS[check](kit)


async def test_check_membership_runs_every_check_and_fails_on_a_broken_backend(
    anyio_backend: Any,
) -> None:
    async def memory_kit() -> Kit:
        return Kit("memory", None)

    assert len(MEMBERSHIP_CHECKS) >= 16
    await check_membership(memory_kit)

    class NoLeaders(Kit):
        """Members that never report a leader: the election check must notice."""

        async def make(self) -> Any:
            member = await super().make()
            member.leader = lambda _election: None
            return member

    kit = NoLeaders("memory", None)
    try:
        with pytest.raises((AssertionError, pytest.fail.Exception)):
            await MEMBERSHIP_CHECKS["campaign_elects_one_leader_and_a_successor"](kit)
    finally:
        await kit.aclose()
