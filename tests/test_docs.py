"""The docs stand alone: every reference in README.md, docs/ and benchmarks/ resolves to a
file in this repository, and none points outside it (to DESIGN.md or MEASURED.md, which
live elsewhere, or to a path on one machine). docs/design.md and docs/measured.md hold
what the docs rely on from those."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *ROOT.glob("benchmarks/*.md")])

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]+`")
#: A path in the repository named in code spans: `cfactor/_core/remote.py`.
REPO_PATH = re.compile(
    r"`((?:cfactor|tests|docs|benchmarks|examples|transports|scripts)/[\w./-]+\.(?:py|md|toml))`"
)
#: Absolute paths that only exist on one machine.
MACHINE_PATH = re.compile(r"(?<![\w:/])/(?:work|home|Users|root|mnt)/\S*")
#: The design notes that lived outside the repository, named as files.
OUTSIDE = re.compile(r"\b(?:DESIGN|MEASURED|STYLE)\.md\b")


def prose(path: Path) -> str:
    """The text of ``path`` without fenced code blocks (examples, not references)."""
    return FENCE.sub("", path.read_text(encoding="utf-8"))


def ids(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", DOCS, ids=ids)
def test_every_relative_link_resolves_to_a_file_in_the_repository(path: Path) -> None:
    text = INLINE_CODE.sub("", prose(path))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL (https:, mailto:) or an anchor in the same page
        resolved = (path.parent / target.split("#", 1)[0]).resolve()
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            broken.append(target)
    assert not broken, f"{ids(path)} links to what is not in the repository: {broken}"


@pytest.mark.parametrize("path", DOCS, ids=ids)
def test_every_repository_path_named_in_code_exists(path: Path) -> None:
    missing = [p for p in REPO_PATH.findall(prose(path)) if not (ROOT / p).exists()]
    assert not missing, f"{ids(path)} names files that do not exist: {missing}"


def text_files() -> list[Path]:
    found = [*DOCS]
    for top in ("cfactor", "transports", "tests", "benchmarks", "examples", "scripts"):
        found += (ROOT / top).rglob("*.py")
    found.append(ROOT / "pyproject.toml")
    return sorted(p for p in found if p != Path(__file__).resolve())


@pytest.mark.parametrize("path", text_files(), ids=ids)
def test_nothing_refers_outside_the_repository(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert not OUTSIDE.findall(text), (
        f"{ids(path)} cites a design note that is not in the repository; "
        "cite docs/design.md or docs/measured.md"
    )
    assert not MACHINE_PATH.findall(text), f"{ids(path)} names a path on one machine"


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    page = "see [the design](DESIGN.md), [x](../../nowhere.md) and `cfactor/nope.py`\n"
    assert OUTSIDE.findall(page)
    assert LINK.findall(page) == ["DESIGN.md", "../../nowhere.md"]
    assert REPO_PATH.findall(page) == ["cfactor/nope.py"]
    assert MACHINE_PATH.findall("(see `/work/shared/MEASURED.md`: allow)")
    assert not MACHINE_PATH.findall("ipc:///tmp/x.sock and https://example.com/home/x")
    assert not LINK.findall(INLINE_CODE.sub("", "`await CHECKS[name](Kit())`"))
