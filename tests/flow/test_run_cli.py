"""``cfactor run FILE.py``, embedded, as a person at a terminal would use it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cfactor.flow.progress import render
from cfactor.flow.run import NodeStats

ROOT = Path(__file__).resolve().parents[2]
APPS = Path(__file__).resolve().parent / "apps"
pytestmark = pytest.mark.timeout(60)


def cfactor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cfactor.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


def test_run_prints_each_flows_figures_and_outputs() -> None:
    out = cfactor("run", "examples/wordcount.py")
    assert out.returncode == 0, out.stderr
    assert "app wordcount: done in" in out.stdout
    assert "node count: map, 2 replicas, 15 in, 15 out" in out.stdout
    assert "output of merge: [{" in out.stdout
    assert out.stderr == ""  # not a terminal: no progress display


def test_run_json_and_choosing_an_app() -> None:
    out = cfactor("run", str(APPS / "spread.py"), "--app", "spread", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["app"] == "spread"
    assert report["flows"]["s.f"]["outputs"] == {"where": 4000}
    assert report["flows"]["s.f"]["nodes"]["where"] == {
        "kind": "map",
        "replicas": 4,
        "in": 4000,
        "out": 4000,
        "dropped": 0,
    }


def test_a_failing_node_exits_1_with_the_node_item_and_traceback() -> None:
    out = cfactor("run", str(APPS / "spread.py"), "--app", "failing")
    assert out.returncode == 1
    assert "run failed: node failing.s.f.strict" in out.stderr
    assert "failed on 13: ArithmeticError: unlucky 13" in out.stderr
    assert 'in fails_on_13\n    raise ArithmeticError("unlucky 13")' in out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "nope.py"], "nope.py: no such file"),
        (
            ["run", "tests/flow/apps/spread.py"],
            "defines several apps ['auto', 'failing', 'fat', 'huge', 'long', 'spread']",
        ),
        (["run", "tests/flow/apps/spread.py", "--app", "x"], "defines no app named 'x'"),
        (["run", "tests/__init__.py"], "defines no cf.App at module level"),
        (["run", "examples/wordcount.py", "--cluster", "nothttp"], "--cluster"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    out = cfactor(*args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_a_file_that_does_not_import_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import cfactor as cf\nraise ImportError('missing thing')\n")
    out = cfactor("run", str(bad))
    assert out.returncode == 2
    assert "cannot import" in out.stderr
    assert "missing thing" in out.stderr


def test_progress_on_draws_one_line_per_node() -> None:
    out = cfactor("run", "examples/wordcount.py", "--progress", "on")
    assert out.returncode == 0, out.stderr
    last = out.stderr.split("\x1b[")[-6:]
    text = "".join(last)
    for name in ("read", "count", "merge"):
        assert name in text
    assert "read   in       0  out      15" in out.stderr
    assert "replicas  2  done" in out.stderr


def test_render_shows_counts_rates_and_state() -> None:
    stats = NodeStats("a.s.f.count", "map", replicas=2)
    stats.update(0, 1500, 1500, finished=True, dropped=0)
    stats.update(1, 500, 500, finished=False, dropped=3)
    rows = render({"a.s.f.count": stats}, ["a.s.f.count"], elapsed=2.0)
    assert rows[0].split() == [
        "count",
        "in",
        "2.0k",
        "out",
        "2.0k",
        "1.0k/s",
        "replicas",
        "2",
        "running",
        "dropped",
        "3",
    ]
    assert rows[-1] == "2.0 s"
