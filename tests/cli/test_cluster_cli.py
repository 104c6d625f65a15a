"""The cluster commands, as a person at a terminal would use them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cfactor.tools.local_cluster import state_file

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


def cfactor(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cfactor.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


def test_start_status_stop_round_trip() -> None:
    name = "cli" + os.urandom(3).hex()
    start = subprocess.Popen(
        [sys.executable, "-m", "cfactor.cli", "cluster", "start", "--members", "2", "--name", name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert start.stdout is not None
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = start.stdout.readline()
            lines.append(line)
            if "is up" in line or not line:
                break
        assert any("is up: 2 members" in line for line in lines), lines
        assert any(line.startswith("etcd ") for line in lines)

        report = json.loads(cfactor("status", "--name", name, "--json").stdout)
        assert len(report["members"]) == 2
        assert all(m["reachable"] for m in report["members"])
        assert report["leader"]["address"] in {m["address"] for m in report["members"]}
        table = cfactor("status", "--name", name).stdout
        assert "placement leader tcp://127.0.0.1:" in table
        assert table.count("tcp://127.0.0.1:") >= 3

        stopped = cfactor("cluster", "stop", "--name", name)
        assert stopped.returncode == 0, stopped.stderr
        assert start.wait(30) == 0
        assert not state_file(name).exists()
    finally:
        if start.poll() is None:
            start.send_signal(signal.SIGTERM)
            start.wait(30)
        start.communicate()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["cluster", "join", "--etcd", "nonsense", "--listen", "tcp://127.0.0.1:0"],
            "--etcd must look like",
        ),
        (
            ["cluster", "join", "--etcd", "http://127.0.0.1:2379", "--listen", "udp://x"],
            "--listen must look like",
        ),
        (["cluster", "start", "--members", "0"], "--members must be at least 1"),
        (["cluster", "stop", "--name", "never-started"], "no local cluster named"),
        (["status", "--name", "never-started"], "no --etcd given"),
    ],
)
def test_bad_arguments_are_one_line_and_a_nonzero_exit(args: list[str], message: str) -> None:
    out = cfactor(*args)
    assert out.returncode == 2
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_an_unreachable_etcd_fails_within_a_couple_of_seconds() -> None:
    for args in (
        ["status", "--etcd", "http://127.0.0.1:1"],
        ["cluster", "join", "--etcd", "http://127.0.0.1:1", "--listen", "tcp://127.0.0.1:0"],
    ):
        started = time.monotonic()
        out = cfactor(*args)
        assert time.monotonic() - started < 8  # interpreter start included
        assert out.returncode == 2
        assert "cannot reach etcd" in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
