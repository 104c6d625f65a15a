"""An app file to deploy, and the generated files read back as a user's tools read them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from cfactor.deploy import KeyPair

if TYPE_CHECKING:
    from pathlib import Path

APP = """\
import cfactor as cf

app = cf.App("wordcount")
"""


@pytest.fixture
def app(tmp_path: Path) -> Path:
    path = tmp_path / "src" / "wordcount.py"
    path.parent.mkdir()
    path.write_text(APP)
    return path


@pytest.fixture(scope="session")
def keys() -> KeyPair:
    return KeyPair.generate()
