"""Flows on a real local cluster: etcd and two ``cfactor cluster join`` member processes
(started with ``cfactor cluster start``), the driver in this process or a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import cfactor as cf
from tests.flow.apps import spread

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.timeout(120)]


@dataclass
class LocalCluster:
    process: subprocess.Popen[str]
    name: str
    etcd: str
    pids: list[int]

    def cluster(self) -> cf.Cluster:
        return cf.Cluster(etcd=self.etcd, name=self.name)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()


def start_cluster(ttl: float = 5.0) -> LocalCluster:
    name = "flow" + os.urandom(3).hex()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cfactor.cli",
            "cluster",
            "start",
            "--members",
            "2",
            "--name",
            name,
            "--ttl",
            str(ttl),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    etcd, pids, lines = "", [], []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if line.startswith("etcd "):
            etcd = line.split()[1]
        if line.startswith("member "):
            pids.append(int(line.rsplit("pid ", 1)[1].rstrip(")\n")))
        if "is up" in line or not line:
            break
    if len(pids) != 2 or not etcd:
        process.kill()
        raise AssertionError(f"the cluster did not start: {lines}")
    return LocalCluster(process, name, etcd, pids)


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[LocalCluster]:
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


def run_example(cluster: LocalCluster, name: str, *args: str) -> str:
    out = subprocess.run(
        [
            sys.executable,
            f"examples/{name}",
            "--cluster",
            cluster.etcd,
            "--name",
            cluster.name,
            *list(args),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_wordcount_on_the_cluster_matches_counter(local_cluster: LocalCluster) -> None:
    out = run_example(local_cluster, "wordcount.py", "--words", "100000")
    assert "matches collections.Counter: True" in out


def test_gigasort_on_the_cluster_is_sorted_and_complete(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    out = run_example(local_cluster, "gigasort.py", "--records", "20000", "--out", str(tmp_path))
    assert "sorted and complete: yes" in out
    assert len(list(tmp_path.glob("part-*"))) == 4


@pytest.mark.anyio
async def test_node_replicas_spread_over_the_members(local_cluster: LocalCluster) -> None:
    result = await spread.app.run(cluster=local_cluster.cluster(), progress=False)
    rows = result.output
    assert sorted(x for x, _, _ in rows) == list(range(4000))
    by_pid: dict[int, set[int]] = {}
    for _, pid, index in rows:
        by_pid.setdefault(pid, set()).add(index)
    # Four replicas, two on each member; none in this (the driver's) process.
    assert set(by_pid) == set(local_cluster.pids)
    assert sorted(len(indexes) for indexes in by_pid.values()) == [2, 2]
    assert os.getpid() not in by_pid


@pytest.mark.anyio
async def test_an_auto_map_runs_on_a_member_and_loses_nothing(
    local_cluster: LocalCluster,
) -> None:
    result = await spread.auto.run(cluster=local_cluster.cluster(), progress=False)
    [(count, total, pids)] = result.output
    assert (count, total) == (2000, sum(range(2000)))
    assert set(pids) <= set(local_cluster.pids)
    assert result.flow("f").nodes["work"].replicas >= 2


@pytest.mark.anyio
async def test_a_failure_on_a_member_comes_back_with_its_traceback(
    local_cluster: LocalCluster,
) -> None:
    with pytest.raises(cf.NodeFailed) as caught:
        await spread.failing.run(cluster=local_cluster.cluster(), progress=False)
    assert caught.value.item == "13"
    assert "raise ArithmeticError" in caught.value.traceback


def test_cfactor_run_with_cluster(local_cluster: LocalCluster) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "cfactor.cli",
            "run",
            "tests/flow/apps/spread.py",
            "--app",
            "spread",
            "--cluster",
            local_cluster.etcd,
            "--name",
            local_cluster.name,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["flows"]["s.f"]["outputs"] == {"where": 4000}


@pytest.mark.anyio
async def test_a_member_that_dies_mid_run_fails_the_run_with_worker_lost() -> None:
    cluster = start_cluster(ttl=2.0)
    try:
        run = spread.long_running.run(cluster=cluster.cluster(), progress=False)
        task = asyncio.ensure_future(run)
        await asyncio.sleep(2.0)  # the replicas are busy now
        assert not task.done()
        os.kill(cluster.pids[0], signal.SIGKILL)
        with pytest.raises(cf.WorkerLost, match=r"long\.s\.f"):
            await asyncio.wait_for(task, 60)
    finally:
        cluster.stop()


@pytest.mark.anyio
async def test_batches_over_the_frame_limit_are_split_and_a_lone_huge_item_fails_clearly(
    local_cluster: LocalCluster,
) -> None:
    result = await spread.fat_items.run(cluster=local_cluster.cluster(), progress=False)
    assert result.output == [(40, 40 * 400_000)]  # 16 MB in batches the guess put together
    with pytest.raises(cf.NodeFailed, match="FrameTooLarge") as caught:
        await spread.too_big.run(cluster=local_cluster.cluster(), progress=False)
    assert caught.value.node == "huge.s.f.huge"


def test_the_pipeline_runs_its_steps_on_the_members(local_cluster: LocalCluster) -> None:
    out = run_example(local_cluster, "pipeline.py")
    assert [line.split()[:2] for line in out.splitlines()] == [
        ["prepare", "ok"],
        ["build", "ok"],
        ["test", "ok"],
        ["package", "ok"],
        ["lint", "ok"],
    ]
    failing = subprocess.run(
        [
            sys.executable,
            "examples/pipeline.py",
            "--fail",
            "--cluster",
            local_cluster.etcd,
            "--name",
            local_cluster.name,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        cwd=ROOT,
    )
    assert failing.returncode == 1
    assert "step pipeline.ci.chain.test failed (exit code 3)" in failing.stdout
    assert "package  skipped" in failing.stdout


def test_the_service_example_on_the_cluster(local_cluster: LocalCluster) -> None:
    out = run_example(local_cluster, "service.py")
    assert "24 lookups answered by 3 replicas" in out
    assert "subtotal 46.2, with tax 55.44" in out
    assert "asking for durian: KeyError" in out
