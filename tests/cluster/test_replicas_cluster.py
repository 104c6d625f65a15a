"""Replicated actors on a real cluster: a real etcd, member processes, real ZeroMQ."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pytest

import cfactor as cf
from cfactor._core.replicas import ReplicaSet
from tests.cluster.test_etcd_cluster import ROOT, real_cluster

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


class Sleeper(cf.Actor):
    async def receive(self, message: Any) -> Any:
        await asyncio.sleep(0.01)
        return message


async def cfactor_cli(*args: str) -> str:
    """Run ``cfactor ARGS`` without blocking the loop (this process is a member that
    must answer the command's questions meanwhile)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cfactor.cli",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_status_shows_replica_groups_with_the_autoscalers_last_decision() -> None:
    async with real_cluster(1, ttl_s=5.0) as c:
        assert c.me is not None
        config = cf.Replicas(
            min=1,
            max=3,
            target_depth=2,
            scale_out_window_s=0.2,
            report_interval_s=0.05,
            in_flight=1,
        )
        ref = await c.me.spawn(Sleeper, name="work", mailbox_capacity=500, replicas=config)
        group = ref._cell
        assert isinstance(group, ReplicaSet)
        for i in range(300):  # a backlog that scales the group out
            await ref.tell(i)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while group.count < 2 and loop.time() < deadline:
            await asyncio.sleep(0.05)
        assert group.count >= 2
        endpoint = c.etcd.endpoint
        report = json.loads(
            await cfactor_cli("status", "--etcd", endpoint, "--name", c.name, "--json")
        )
        groups = [g for g in report["groups"] if g["name"] == "work"]
        assert len(groups) == 1, report["groups"]
        shown = groups[0]
        assert shown["member"] == c.runtime.member_id
        assert shown["address"] == c.me.address
        assert shown["replicas"] >= 2
        assert shown["capacity"] == 500
        assert shown["last"] is not None
        assert shown["last"]["direction"] in {"out", "in", "hold"}
        assert "replica" in shown["last"]["reason"]
        change = shown["last_change"]
        assert change is not None
        assert change["direction"] == "out"
        assert "target 2" in change["reason"]
        assert change["replicas"] >= 2

        table = await cfactor_cli("status", "--etcd", endpoint, "--name", c.name)
        line = next(line for line in table.splitlines() if line.startswith("work "))
        assert c.runtime.member_id in line
        assert "->" in line
