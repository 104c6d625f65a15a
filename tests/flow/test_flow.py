"""Flows run embedded: results, partitions, ends of stream, failures, steps, services."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any

import pytest

import cfactor as cf
from cfactor.flow.functions import portable
from cfactor.flow.sending import stable_hash

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


# -- node functions (module level, as on a cluster) -----------------------------------------


def numbers(ctx: cf.Context, n: int) -> Any:
    yield from range(n)


async def anumbers(ctx: cf.Context, n: int) -> Any:
    for i in range(n):
        yield i


def words(ctx: cf.Context, lines: list[str]) -> Any:
    yield from lines


def split_words(ctx: cf.Context, line: str) -> dict[str, int]:
    return dict(Counter(line.split()))


def merge(ctx: cf.Context, parts: list[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for part in parts:
        total.update(part)
    return dict(total)


def double(ctx: cf.Context, x: int) -> int:
    return 2 * x


async def slow_double(ctx: cf.Context, x: int) -> int:
    await asyncio.sleep(0.001)
    return 2 * x


def total(ctx: cf.Context, items: list[int]) -> tuple[int, int, int]:
    return (ctx.index, len(items), sum(items))


def keyed(ctx: cf.Context, x: int) -> tuple[int, int]:
    return (x % 10, x)


def group_keys(ctx: cf.Context, pairs: list[tuple[int, int]]) -> tuple[int, list[int]]:
    return (ctx.index, sorted({k for k, _ in pairs}))


def by_parity(key: int, n: int) -> int:
    return key % 2


def evens_only(ctx: cf.Context, x: int) -> int | None:
    return x if x % 2 == 0 else None


def twice(ctx: cf.Context, x: int) -> Any:
    yield x
    yield x


# -- results ------------------------------------------------------------------------------


async def test_word_count_matches_counter_with_partitions_disjoint() -> None:
    lines = [f"a b c w{i % 37} w{i % 11} a" for i in range(3000)]
    app = cf.App("wc")
    flow = app.session("s").flow("f")
    flow.add(words, "read", lines).map(split_words, "count", 3).reduce(merge, "merge", 4)
    result = await app.run(progress=False)

    parts = result.output
    assert len(parts) == 4
    seen: set[str] = set()
    for part in parts:  # each word reached exactly one partition
        assert not seen & part.keys()
        seen |= part.keys()
    combined: Counter[str] = Counter()
    for part in parts:
        combined.update(part)
    assert combined == Counter(" ".join(lines).split())
    nodes = result.flow("f").nodes
    assert (nodes["read"].items_out, nodes["count"].items_in) == (3000, 3000)
    assert nodes["count"].replicas == 3
    assert nodes["merge"].items_out == 4


async def test_every_item_is_processed_once_through_map_and_reduce() -> None:
    app = cf.App("sums")
    flow = app.session("s").flow("f")
    flow.add(numbers, "src", 10_000).map(double, "double", 4).reduce(total, "total", 3)
    result = await app.run(progress=False)
    parts = sorted(result.output)
    assert [p[0] for p in parts] == [0, 1, 2]
    assert sum(p[1] for p in parts) == 10_000
    assert sum(p[2] for p in parts) == 2 * sum(range(10_000))


async def test_keyed_items_reach_one_partition_per_key_and_custom_partition_is_used() -> None:
    app = cf.App("keys")
    flow = app.session("s").flow("f")
    flow.add(numbers, "src", 500).map(keyed, "key", 2).reduce(group_keys, "by-key", 3)
    flow2 = app.session("s").flow("g")
    flow2.add(numbers, "src", 500).map(keyed, "key", 2).reduce(
        group_keys, "by-parity", 2, partition=by_parity
    )
    result = await app.run(progress=False)
    groups = dict(result.flow("f").output)
    all_keys = [k for keys in groups.values() for k in keys]
    assert sorted(all_keys) == list(range(10))  # every key in exactly one partition
    assert 0 in groups[stable_hash(0) % 3]  # key 0 went where the stable hash says
    parity = dict(result.flow("g").output)
    assert parity == {0: [0, 2, 4, 6, 8], 1: [1, 3, 5, 7, 9]}


async def test_none_drops_an_item_and_a_generator_gives_several() -> None:
    app = cf.App("shape")
    flow = app.session("s").flow("f")
    flow.add(numbers, "src", 100).map(evens_only, "evens", 2).map(twice, "twice", 2)
    result = await app.run(progress=False)
    assert sorted(result.output) == sorted([x for x in range(0, 100, 2) for _ in range(2)])


async def test_fan_out_sends_every_output_to_both_children() -> None:
    app = cf.App("fan")
    flow = app.session("s").flow("f")
    source = flow.add(numbers, "src", 300)
    source.map(double, "doubled", 2)
    source.reduce(total, "summed", 1)
    result = await app.run(progress=False)
    outputs = result.flow("f").outputs
    assert sorted(outputs["doubled"]) == [2 * x for x in range(300)]
    assert outputs["summed"] == [(0, 300, sum(range(300)))]
    with pytest.raises(cf.ConfigError, match="leaf nodes"):
        _ = result.flow("f").output


async def test_auto_parallelism_runs_a_replicated_map_and_loses_nothing() -> None:
    app = cf.App("auto")
    flow = app.session("s").flow("f")
    flow.add(anumbers, "src", 3000).map(slow_double, "work", cf.Auto(min=2, max=4)).reduce(
        total, "sum", 1
    )
    result = await app.run(progress=False)
    assert result.output == [(0, 3000, 2 * sum(range(3000)))]
    stats = result.flow("f").nodes["work"]
    assert stats.kind == "auto"
    assert stats.items_in == 3000
    assert 2 <= stats.replicas <= 4
    # At least two replicas did work (index -1 is the group's host saying it is done).
    assert len([i for i, figures in stats.per_replica.items() if i >= 0 and figures[0]]) >= 2


async def test_sync_functions_run_off_the_event_loop() -> None:
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    app = cf.App("blocking")
    app.session("s").flow("f").add(numbers, "src", 4).map(sleepy, "sleep", 1)
    task = asyncio.create_task(ticker())
    started = time.monotonic()
    await app.run(progress=False)
    elapsed = time.monotonic() - started
    stop.set()
    await task
    # 4 x 0.1 s of blocking sleep ran in a worker thread: the loop kept ticking.
    assert elapsed >= 0.4
    assert ticks >= 10


def sleepy(ctx: cf.Context, x: int) -> int:
    assert threading.current_thread() is not threading.main_thread()
    time.sleep(0.1)
    return x


# -- sessions and their stores ------------------------------------------------------------


def count_into_store(ctx: cf.Context, x: int) -> int:
    ctx.store.add("seen")
    return x


async def read_store(ctx: cf.Context, items: list[int]) -> Any:
    return (len(items), await ctx.store.get("seen", 0))


async def test_sessions_are_namespaces_with_their_own_stores() -> None:
    app = cf.App("ns")
    for name, n in (("one", 30), ("two", 70)):
        flow = app.session(name).flow("f")  # same flow and node names in both
        flow.add(numbers, "src", n).map(count_into_store, "count", 2).reduce(read_store, "read", 1)
    result = await app.run(progress=False)
    assert result.flow("f", session="one").output == [(30, 30)]
    assert result.flow("f", session="two").output == [(70, 70)]
    assert result.stores == {"one": {"seen": 30}, "two": {"seen": 70}}
    with pytest.raises(cf.ConfigError, match="2 flows match"):
        result.flow("f")


# -- failures -----------------------------------------------------------------------------


def fails_on_7(ctx: cf.Context, x: int) -> int:
    if x == 7:
        raise ValueError("seven is not allowed")
    return x


FLAKY: dict[int, int] = {}


def flaky(ctx: cf.Context, x: int) -> int:
    FLAKY[x] = FLAKY.get(x, 0) + 1
    if FLAKY[x] == 1 and x % 5 == 0:
        raise ConnectionError("first try fails")
    return x


def broken_source(ctx: cf.Context, n: int) -> Any:
    yield from range(n)
    raise OSError("disk gone")


async def test_a_failing_node_names_the_node_the_item_and_the_traceback() -> None:
    app = cf.App("fail")
    app.session("s").flow("f").add(numbers, "src", 50).map(fails_on_7, "strict", 2)
    with pytest.raises(cf.NodeFailed) as caught:
        await app.run(progress=False)
    error = caught.value
    assert error.node == "fail.s.f.strict"
    assert error.item == "7"
    assert error.type_name == "ValueError"
    assert "seven is not allowed" in str(error)
    assert "fails_on_7" in error.traceback
    assert isinstance(error.result, cf.RunResult)


async def test_retries_rerun_a_failing_item() -> None:
    FLAKY.clear()
    app = cf.App("retry")
    app.session("s").flow("f").add(numbers, "src", 20).map(flaky, "flaky", 2, retries=1)
    result = await app.run(progress=False)
    assert sorted(result.output) == list(range(20))
    assert {x for x, n in FLAKY.items() if n == 2} == {0, 5, 10, 15}


async def test_a_failing_source_fails_the_run() -> None:
    app = cf.App("src-fail")
    app.session("s").flow("f").add(broken_source, "src", 10).map(double, "d", 1)
    with pytest.raises(cf.NodeFailed, match="disk gone") as caught:
        await app.run(progress=False)
    assert caught.value.item == "<source after 10 items>"


async def test_the_system_stays_usable_after_a_failed_run() -> None:
    async with cf.ActorSystem() as system:
        app = cf.App("again")
        app.session("s").flow("f").add(numbers, "src", 20).map(fails_on_7, "m", 1)
        with pytest.raises(cf.NodeFailed):
            await app.run(system, progress=False)
        ok = cf.App("ok")
        ok.session("s").flow("f").add(numbers, "src", 20).map(double, "m", 1)
        assert sorted((await ok.run(system, progress=False)).output) == [2 * x for x in range(20)]
        # Nothing of the failed run is left running.
        assert not [n for n in system._names if n.startswith("again.")]


# -- stage-gated steps ----------------------------------------------------------------------


def python_step(ctx: cf.Context) -> str:
    ctx.store.put("python-step", "ran")
    return "made it"


async def test_steps_run_in_order_and_a_failure_skips_what_depends_on_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cfactor.flow.step")
    app = cf.App("ci")
    flow = app.session("s").flow("chain")
    first = flow.step(cf.shell("echo one; echo oops >&2"), "first")
    second = first.then(python_step, "second")
    bad = second.then(cf.shell("exit 4"), "bad")
    bad.then(cf.shell("echo never"), "after-bad")
    flow.step(cf.shell("echo side"), "side", after=second)
    with pytest.raises(cf.StepFailed) as caught:
        await app.run(progress=False)
    error = caught.value
    assert error.step == "ci.s.chain.bad"
    assert error.exit_code == 4
    assert "after-bad" in str(error)
    steps = error.result.flow("chain").steps
    assert {k: v.status for k, v in steps.items()} == {
        "first": "ok",
        "second": "ok",
        "bad": "failed",
        "after-bad": "skipped",
        "side": "ok",
    }
    assert steps["first"].stdout == "one\n"
    assert steps["first"].stderr == "oops\n"
    assert steps["second"].stdout == "made it"
    assert error.result.stores["s"] == {"python-step": "ran"}
    messages = [r.getMessage() for r in caplog.records]
    assert "ci.s.chain.first | one" in messages
    assert "ci.s.chain.first ! oops" in messages
    assert "ci.s.chain.bad: exit code 4" in messages


async def test_steps_gate_the_flows_dataflow() -> None:
    app = cf.App("gated")
    flow = app.session("s").flow("f")
    flow.step(cf.shell("exit 1"), "setup")
    flow.add(numbers, "src", 10).map(count_into_store, "count", 1)
    with pytest.raises(cf.StepFailed):
        await app.run(progress=False)
    passing = cf.App("gated-ok")
    flow = passing.session("s").flow("f")
    flow.step(cf.shell("true"), "setup")
    flow.add(numbers, "src", 10).map(double, "double", 1)
    result = await passing.run(progress=False)
    assert sorted(result.output) == [2 * x for x in range(10)]
    assert result.flow("f").steps["setup"].status == "ok"


async def test_a_shell_step_that_runs_too_long_is_killed() -> None:
    app = cf.App("slow")
    app.session("s").flow("f").step(cf.shell("sleep 5", timeout_s=0.2), "sleep")
    started = time.monotonic()
    with pytest.raises(cf.StepFailed, match=r"killed after 0\.2 s"):
        await app.run(progress=False)
    assert time.monotonic() - started < 4


# -- services -----------------------------------------------------------------------------


class Adder(cf.Actor):
    async def receive(self, message: Any) -> Any:
        return (message[0] + message[1], id(self))


def square(x: int) -> int:
    return x * x


async def use_services(ctx: cf.Context, x: int) -> int:
    added, _ = await ctx.service("adder").ask((x, 1))
    squared = await ctx.call("square", x)
    return int(added) + int(squared)


async def test_services_are_reachable_from_nodes_and_from_outside() -> None:
    app = cf.App("svc")
    app.service(Adder, "adder", replicas=2)
    app.reg(square, "squares")
    app.session("s").flow("f").add(numbers, "src", 10).map(use_services, "use", 2)
    result = await app.run(progress=False)
    assert sorted(result.output) == sorted(x + 1 + x * x for x in range(10))

    async with cf.ActorSystem() as system, app.start(system) as running:
        answers = await asyncio.gather(*(running.service("adder").ask((i, i)) for i in range(20)))
        assert [a for a, _ in answers] == [2 * i for i in range(20)]
        assert await running.call("square", 9) == 81
        assert system.ref("svc.adder") == running.service("adder")
        with pytest.raises(cf.ConfigError, match="no service 'nope'"):
            running.service("nope")
    # Leaving the block stopped them.
    with pytest.raises(cf.ActorNotFound):
        system.ref("svc.adder")


# -- bad input ----------------------------------------------------------------------------


def test_bad_definitions_are_config_errors_where_they_are_written() -> None:
    app = cf.App("bad")
    flow = app.session("s").flow("f")
    source = flow.add(numbers, "src", 1)
    with pytest.raises(cf.ConfigError, match="names are"):
        cf.App("has.dot")
    with pytest.raises(cf.ConfigError, match="names are"):
        source.map(double, "a b")
    with pytest.raises(cf.ConfigError, match="already has a step named 'src'"):
        source.map(double, "src")
    with pytest.raises(cf.ConfigError, match="parallelism"):
        source.map(double, "zero", 0)
    with pytest.raises(cf.ConfigError, match="partitions are fixed"):
        source.reduce(total, "r", cf.Auto())  # type: ignore[arg-type]
    with pytest.raises(cf.ConfigError, match="must be a function"):
        source.map(42, "num")  # type: ignore[arg-type]
    with pytest.raises(cf.ConfigError, match="max must be >= min"):
        cf.Auto(min=3, max=2)
    with pytest.raises(cf.ConfigError, match="retries"):
        source.map(double, "neg", retries=-1)
    with pytest.raises(cf.ConfigError, match="needs a command"):
        cf.shell("  ")
    with pytest.raises(cf.ConfigError, match="its own flow"):
        app.session("s").flow("g").step(
            cf.shell("true"), "x", after=flow.step(cf.shell("true"), "y")
        )
    with pytest.raises(cf.ConfigError, match="Actor subclass"):
        app.service(int, "svc")  # type: ignore[arg-type]
    app.reg(square)
    with pytest.raises(cf.ConfigError, match="already has a service named 'square'"):
        app.reg(square)


async def test_an_app_without_flows_is_a_config_error() -> None:
    with pytest.raises(cf.ConfigError, match="no flows"):
        await cf.App("empty").run()


def test_a_lambda_cannot_run_on_a_cluster_but_a_module_function_can() -> None:
    with pytest.raises(cf.ConfigError, match="module-level functions"):
        portable(lambda ctx, x: x, remote=True)
    assert portable(double, remote=True) == ("fn", __name__, "double", "")
    assert portable(double, remote=False) is double


def test_stable_hash_is_the_same_in_another_process() -> None:
    keys = ["word", "wört", b"bytes", 12345, ("a", 1)]
    here = [stable_hash(k) for k in keys]
    code = f"from cfactor.flow.sending import stable_hash;print([stable_hash(k) for k in {keys!r}])"
    there = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
        timeout=30,
    ).stdout.strip()
    assert there == str(here)


def shard(ctx: cf.Context, n: int) -> Any:
    yield from ((ctx.index, ctx.replicas, x) for x in range(ctx.index, n, ctx.replicas))


async def test_a_source_with_replicas_yields_each_share_once() -> None:
    app = cf.App("shards")
    app.session("s").flow("f").add(shard, "read", 1000, 3).map(keyed_by_shard, "tag", 2)
    result = await app.run(progress=False)
    rows = result.output
    assert sorted(x for _, _, x in rows) == list(range(1000))
    assert {(index, replicas) for index, replicas, _ in rows} == {(0, 3), (1, 3), (2, 3)}
    assert result.flow("f").nodes["read"].replicas == 3
    with pytest.raises(cf.ConfigError, match="own share"):
        app.session("s").flow("g").add(shard, "read", 1, cf.Auto())  # type: ignore[arg-type]


def keyed_by_shard(ctx: cf.Context, row: tuple[int, int, int]) -> tuple[int, int, int]:
    return row


# -- several flows, and what the review found -------------------------------------------------


async def test_flows_of_one_app_end_on_their_own() -> None:
    app = cf.App("two-speeds")
    session = app.session("s")
    session.flow("fast").add(numbers, "src", 5).map(double, "double", 1)
    slow = session.flow("slow")
    slow.step(cf.shell("sleep 0.5"), "wait")  # its nodes start half a second later
    slow.add(numbers, "src", 300).map(double, "double", 2)
    result = await app.run(progress=False)
    assert sorted(result.flow("fast").output) == [2 * x for x in range(5)]
    assert sorted(result.flow("slow").output) == [2 * x for x in range(300)]


async def test_a_failing_flow_stops_the_other_flows_actors_too() -> None:
    async with cf.ActorSystem() as system:
        app = cf.App("one-fails")
        session = app.session("s")
        session.flow("bad").step(cf.shell("exit 1"), "fail")
        later = session.flow("later")
        later.step(cf.shell("sleep 0.3"), "wait")
        later.add(numbers, "src", 10).map(double, "m", 2)
        with pytest.raises(cf.StepFailed):
            await app.run(system, progress=False)
        await asyncio.sleep(0.6)  # past when "later" would have spawned its nodes
        assert [n for n in system._names if n.startswith("one-fails.")] == []


def calls_a_service(ctx: cf.Context, x: int) -> int:
    result: int = ctx.call("double_it", x, timeout=10)
    return result


def double_it(x: int) -> int:
    return 2 * x


async def test_sync_nodes_calling_a_sync_service_do_not_starve_it() -> None:
    app = cf.App("pool")
    app.reg(double_it)
    app.session("s").flow("f").add(numbers, "src", 200).map(calls_a_service, "call", 12)
    result = await app.run(progress=False)
    assert sorted(result.output) == [2 * x for x in range(200)]


def bad_partition(key: int, n: int) -> int:
    if key == 3:
        raise ZeroDivisionError("no partition for 3")
    return key % n


async def test_a_failing_partition_function_is_blamed_on_the_sending_node() -> None:
    app = cf.App("part")
    app.session("s").flow("f").add(numbers, "src", 10).map(keyed, "key", 1).reduce(
        group_keys, "r", 2, partition=bad_partition
    )
    with pytest.raises(cf.NodeFailed) as caught:
        await app.run(progress=False)
    assert caught.value.node == "part.s.f.key"
    assert caught.value.item == "<partition of key 3>"
    assert caught.value.type_name == "ZeroDivisionError"
    assert "bad_partition" in caught.value.traceback


async def test_run_uses_the_services_start_brought_up() -> None:
    app = cf.App("shared")
    app.reg(square)
    app.session("s").flow("f").add(numbers, "src", 5).map(squares_via_service, "sq", 1)
    async with cf.ActorSystem() as system, app.start(system) as running:
        result = await app.run(system, progress=False)
        assert sorted(result.output) == [x * x for x in range(5)]
        assert await running.call("square", 4) == 16  # still up after the run


async def squares_via_service(ctx: cf.Context, x: int) -> int:
    return int(await ctx.call("square", x))


async def test_a_steps_result_keeps_the_end_of_a_long_output() -> None:
    app = cf.App("chatty")
    app.session("s").flow("f").step(cf.shell("seq 1 50000"), "count")
    result = await app.run(progress=False)
    out = result.flow("f").steps["count"].stdout
    assert out.endswith("49999\n50000\n")
    assert out.startswith("(")
    assert "characters before this are in the log" in out.splitlines()[0]
    assert len(out) < 70_000


def test_integral_floats_partition_like_ints() -> None:
    assert stable_hash(1.0) == stable_hash(1)
    assert stable_hash(2.5) != stable_hash(2)
