from __future__ import annotations

import os

import pytest

# As cfactor.membership.etcd does, before any test imports grpc (see the note there).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, bool]]:
    # The runtime is asyncio-native; uvloop is what cf.run picks when installed.
    return ("asyncio", {"use_uvloop": True})
