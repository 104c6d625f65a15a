from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, bool]]:
    # The runtime is asyncio-native; uvloop is what cf.run picks when installed.
    return ("asyncio", {"use_uvloop": True})
