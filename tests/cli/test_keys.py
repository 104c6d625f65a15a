from __future__ import annotations

import stat
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

import cfactor as cf
from cfactor.cli import main

if TYPE_CHECKING:
    from pathlib import Path


def test_keys_generate_writes_a_pair_that_curve_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "generate", str(tmp_path / "alpha")]) == 0
    secret = tmp_path / "alpha.key"
    public = tmp_path / "alpha.pub"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    curve = cf.Curve.from_files(secret)
    assert curve.public_key == public.read_text().strip()
    assert curve.allowed_keys == (curve.public_key,)
    assert curve.public_key in capsys.readouterr().out
    assert curve.secret_key not in repr(curve)


def test_keys_generate_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "generate", str(tmp_path / "k")]) == 0
    before = (tmp_path / "k.key").read_text()
    assert main(["keys", "generate", str(tmp_path / "k")]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert (tmp_path / "k.key").read_text() == before
    assert main(["keys", "generate", "--force", str(tmp_path / "k")]) == 0
    assert (tmp_path / "k.key").read_text() != before


def test_bad_arguments_give_one_line_and_a_nonzero_exit(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "cfactor.cli",
            "keys",
            "generate",
            str(tmp_path / "no" / "dir" / "k"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "does not exist" in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "cfactor.cli", "frobnicate"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 2
    assert "invalid choice" in out.stderr


def test_curve_rejects_bad_keys() -> None:
    with pytest.raises(cf.ConfigError):
        cf.Curve("short", "short", ["short"])
