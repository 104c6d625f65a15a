"""Replicated actors on a real cluster: a real etcd, member processes, real ZeroMQ."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pytest

import cfactor as cf
from cfactor._core.replicas import ReplicaSet
from cfactor.cluster.messages import Loads
from tests.cluster.actors import Reporting, addresses_of, eventually
from tests.cluster.harness import ROOT, WORKERS, real_cluster

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
        assert sum(shown["where"].values()) == shown["replicas"]
        assert set(shown["where"]) <= {c.me.address, c.workers[0].address}
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


async def test_a_remote_replicas_member_dies_its_held_messages_fail_and_it_is_replaced() -> None:
    async with real_cluster(2, ttl_s=2.0) as c:
        assert c.me is not None
        me = c.me
        config = cf.Replicas(min=2, max=2, report_interval_s=0.1, in_flight=1)
        ref = await me.spawn(Reporting, me.address, name="work", placement=WORKERS, replicas=config)
        group = ref._cell
        assert isinstance(group, ReplicaSet)
        assert len(addresses_of(group)) == 2  # one on each worker (spread by load)
        held = [asyncio.create_task(ref.ask(("sleep", 30.0), timeout=60)) for _ in range(2)]
        await asyncio.sleep(0.3)
        victim = next(w for w in c.workers if w.member_id != c.leader())
        victim.kill()
        done, _ = await asyncio.wait(held, timeout=15, return_when=asyncio.FIRST_COMPLETED)
        assert done, "the dead member's held message did not fail"
        with pytest.raises(cf.MemberUnreachable):
            await next(iter(done))
        # Forgotten, and the autoscaler brings the group back to min elsewhere.
        await eventually(lambda: _true(victim.address not in addresses_of(group)), 10)
        await eventually(lambda: _true(group.count == 2), 15)
        assert victim.address not in addresses_of(group)
        held[1 if held[0] in done else 0].cancel()


async def _true(value: bool) -> bool:
    return value


async def test_replicas_spread_by_load_and_members_report_group_load_to_placement() -> None:
    async with real_cluster(2, ttl_s=5.0) as c:
        assert c.me is not None
        me = c.me
        config = cf.Replicas(min=3, max=3, report_interval_s=0.1, in_flight=1)
        ref = await me.spawn(Reporting, me.address, name="work", replicas=config)
        group = ref._cell
        assert isinstance(group, ReplicaSet)
        assert group.count == 3
        assert len(addresses_of(group)) >= 2  # least loaded first: not all on one member
        # Remote replicas answer through the group like local ones.
        answers = await asyncio.gather(*(ref.ask(("sleep", 0.05)) for _ in range(12)))
        assert set(answers) == addresses_of(group)
        leader = next(w for w in c.workers if w.member_id == c.leader())
        placer = me.ref("$placement", at=leader.address)

        async def reported() -> Any:
            loads = await placer.ask(Loads())
            mine = loads.get(c.runtime.member_id)
            return mine is not None and mine["groups"].get("work") == [0, 3]

        assert await eventually(reported, 5)
        loads = await placer.ask(Loads())
        hosted = sum(entry["hosted"] for entry in loads.values())
        assert hosted == 3  # every replica counted once, where it runs


class KeyedTally(cf.Actor):
    def __init__(self, handled: list[tuple[str, int, float, str]]) -> None:
        self.handled = handled

    async def receive(self, message: Any) -> None:
        _kind, key, seq, started, address = message
        self.handled.append((key, seq, started, address))


def key_of(message: Any) -> str:
    return str(message[0])


async def test_keyed_replicas_on_several_members_keep_each_keys_order() -> None:
    async with real_cluster(2, ttl_s=5.0) as c:
        assert c.me is not None
        me = c.me
        handled: list[tuple[str, int, float, str]] = []
        await me.spawn(KeyedTally, handled, name="tally", placement="local")
        config = cf.Replicas(min=3, max=3, report_interval_s=0.1, in_flight=3, key=key_of)
        ref = await me.spawn(Reporting, me.address, 0.002, name="work", replicas=config)
        group = ref._cell
        assert isinstance(group, ReplicaSet)
        assert len(addresses_of(group)) >= 2
        keys = [f"k{i}" for i in range(20)]
        sent = 0
        for count in (3, 1, 3):  # partitions move between members, held ones first
            await group.scale_to(count)
            for _ in range(6):
                for key in keys:
                    await ref.tell((key, sent))
                sent += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while len(handled) < len(keys) * sent and loop.time() < deadline:
            await asyncio.sleep(0.02)
        assert len(handled) == len(keys) * sent
        for key in keys:
            mine = sorted((started, seq) for k, seq, started, _a in handled if k == key)
            assert [seq for _started, seq in mine] == list(range(sent)), key
        assert len({a for _k, _s, _t, a in handled}) >= 2  # handled on several members
