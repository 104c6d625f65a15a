"""Installing for a cluster: ``python -m cfactor`` works, and a missing etcd says what to do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cfactor import __version__
from cfactor.cli import NO_ETCD, main
from cfactor.tools import etcd_server

if TYPE_CHECKING:
    import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_python_dash_m_cfactor_runs_the_cli() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cfactor", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"cfactor {__version__}"


def test_python_dash_m_cfactor_passes_the_exit_code_on() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cfactor", "no-such-command"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=ROOT,
    )
    assert out.returncode == 2
    assert "invalid choice" in out.stderr


def test_cluster_start_without_etcd_prints_what_to_install(tmp_path: Path) -> None:
    # find_etcd looks beside sys.executable, then on PATH: the child pretends to be a
    # Python in an empty directory and gets a PATH with nothing on it.
    empty = tmp_path / "bin"
    empty.mkdir()
    script = (
        "import sys\n"
        f"sys.executable = {str(empty / 'python')!r}\n"
        "from cfactor.cli import main\n"
        "sys.exit(main(['cluster', 'start', '--name', 'noetcd-test']))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=ROOT,
        env={"PATH": str(empty), "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 2
    assert out.stdout == ""  # nothing started, not even "starting etcd ..."
    assert out.stderr.count("\n") == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert "pip install 'cfactor[cluster]'" in out.stderr


def test_the_check_is_the_one_find_etcd_makes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def missing() -> Path:
        raise FileNotFoundError("no etcd")

    monkeypatch.setattr(etcd_server, "find_etcd", missing)
    assert main(["cluster", "start", "--name", "noetcd-test"]) == 2
    assert capsys.readouterr().err == f"cfactor: error: {NO_ETCD}\n"


def test_an_external_etcd_needs_no_binary(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def missing() -> Path:
        raise AssertionError("not looked for when --etcd is given")

    monkeypatch.setattr(etcd_server, "find_etcd", missing)
    # A bad --etcd URL is refused by the cluster code itself: proof it got that far.
    assert main(["cluster", "start", "--etcd", "nonsense", "--name", "noetcd-test"]) == 2
    assert "--etcd must look like" in capsys.readouterr().err
