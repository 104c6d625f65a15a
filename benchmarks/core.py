"""Core runtime benchmark: each cfactor figure next to a raw asyncio baseline, same run.

Run it as ``.venv/bin/python benchmarks/core.py`` (``--quick`` for a smoke run of a few
seconds, ``--json PATH`` to also write the figures). Everything runs on one event loop
started by ``cf.run`` (uvloop when installed); the memory figures come from fresh child
processes, one per measurement, so earlier allocations cannot hide growth.

Each figure is measured ``--repeat`` times (3 by default), alternating which side goes
first, and the table reports the median; a second table lists every run. Every loop is
bounded in count and in time: a measurement that hits its deadline stops and is marked.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import sys
from dataclasses import dataclass, field
from time import perf_counter, perf_counter_ns
from typing import TYPE_CHECKING, Any

import harness
from harness import progress, remaining

import cfactor as cf

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

#: Inner-loop length between two deadline checks (checking the clock per message
#: would cost as much as some of the things measured).
CHUNK = 1024
#: The final ask of the tell benchmark, and what the raw consumer answers it with.
COUNT = "count"


@dataclass(frozen=True)
class Sizes:
    tell: int
    asks: int
    in_flight: int
    latency: int
    spawn: int
    memory: int
    #: Wall-clock bound of one measurement (one side, one run).
    deadline_s: float
    #: Wall-clock bound of one memory child process.
    child_timeout_s: float


FULL = Sizes(
    tell=200_000,
    asks=20_000,
    in_flight=1_000,
    latency=20_000,
    spawn=100_000,
    memory=100_000,
    deadline_s=30.0,
    child_timeout_s=120.0,
)
QUICK = Sizes(
    tell=20_000,
    asks=4_000,
    in_flight=200,
    latency=2_000,
    spawn=10_000,
    memory=10_000,
    deadline_s=5.0,
    child_timeout_s=30.0,
)


class BenchmarkTimeout(Exception):
    """A measurement did not finish within its deadline."""


# -- actors and raw consumers -----------------------------------------------------------------


class Counter(cf.Actor):
    """Counts the ints it is told; answers the count to ``COUNT``."""

    def __init__(self) -> None:
        self.n = 0

    async def receive(self, message: Any) -> Any:
        if message.__class__ is int:
            self.n += 1
            return None
        return self.n


class Echo(cf.Actor):
    async def receive(self, message: Any) -> Any:
        return message


class Idle(cf.Actor):
    """An actor with no state of its own; counts messages in the class, not the instance."""

    handled = 0
    target = -1
    reached: asyncio.Event | None = None

    async def receive(self, message: Any) -> Any:
        Idle.handled += 1
        if Idle.handled == Idle.target and Idle.reached is not None:
            Idle.reached.set()


async def raw_counter(queue: asyncio.Queue[Any]) -> None:
    n = 0
    get = queue.get
    while True:
        message = await get()
        if message.__class__ is int:
            n += 1
        else:
            message[1].set_result(n)


async def raw_echo(queue: asyncio.Queue[Any]) -> None:
    get = queue.get
    while True:
        message, future = await get()
        if not future.done():
            future.set_result(message)


async def raw_idle(queue: asyncio.Queue[Any]) -> None:
    get = queue.get
    while True:
        await get()


# -- one run of one measurement ---------------------------------------------------------------


@dataclass
class Run:
    """One run of one side of a measurement: its figures, and whether it was cut short."""

    values: dict[str, float]
    truncated: bool = False


async def cf_tell(n: int, deadline: float) -> Run:
    async with cf.ActorSystem() as system:
        ref = await system.spawn(Counter)
        tell = ref.tell
        sent = 0
        t0 = perf_counter()
        for start in range(0, n, CHUNK):
            stop = min(n, start + CHUNK)
            for i in range(start, stop):
                await tell(i)
            sent = stop
            if perf_counter() > deadline:
                break
        counted = await ref.ask(COUNT, timeout=remaining(deadline))
        elapsed = perf_counter() - t0
    if counted != sent:
        raise AssertionError(f"cfactor counted {counted} of {sent} tells")
    return Run({"rate": sent / elapsed}, truncated=sent < n)


async def raw_tell(n: int, deadline: float) -> Run:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1000)
    consumer = loop.create_task(raw_counter(queue))
    await asyncio.sleep(0)  # started, like a spawned actor
    put = queue.put
    sent = 0
    try:
        t0 = perf_counter()
        for start in range(0, n, CHUNK):
            stop = min(n, start + CHUNK)
            for i in range(start, stop):
                await put(i)
            sent = stop
            if perf_counter() > deadline:
                break
        future = loop.create_future()
        await put((COUNT, future))
        async with asyncio.timeout(remaining(deadline)):
            counted = await future
        elapsed = perf_counter() - t0
    finally:
        await harness.stop_tasks([consumer])
    if counted != sent:
        raise AssertionError(f"raw consumer counted {counted} of {sent} puts")
    return Run({"rate": sent / elapsed}, truncated=sent < n)


async def run_workers(n: int, in_flight: int, deadline: float, ask_one: Any) -> Run:
    """``in_flight`` tasks, each doing ``n / in_flight`` asks one after the other."""
    loop = asyncio.get_running_loop()
    per_worker = n // in_flight

    async def worker() -> None:
        for i in range(per_worker):
            await ask_one(i)

    t0 = perf_counter()
    tasks = [loop.create_task(worker()) for _ in range(in_flight)]
    _, pending = await asyncio.wait(tasks, timeout=remaining(deadline))
    elapsed = perf_counter() - t0
    if pending:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending)
        raise BenchmarkTimeout(f"{len(pending)} of {in_flight} workers did not finish")
    for task in tasks:
        task.result()  # re-raise a worker's error
    return Run({"rate": per_worker * in_flight / elapsed})


async def cf_pipelined(n: int, in_flight: int, deadline: float, timeout: float | None) -> Run:
    async with cf.ActorSystem() as system:
        ref = await system.spawn(Echo)
        ask = ref.ask

        def ask_one(i: int) -> Any:
            return ask(i, timeout)

        return await run_workers(n, in_flight, deadline, ask_one)


@contextlib.asynccontextmanager
async def raw_asks() -> AsyncIterator[Callable[[int], Awaitable[Any]]]:
    """The ask baseline: ``ask_one(i)`` puts (i, future) on an asyncio.Queue(maxsize=1000)
    that a ``raw_echo`` task serves, and awaits the future; the task stops on exit."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1000)
    consumer = loop.create_task(raw_echo(queue))
    await asyncio.sleep(0)
    put = queue.put
    create_future = loop.create_future

    async def ask_one(i: int) -> Any:
        future = create_future()
        await put((i, future))
        return await future

    try:
        yield ask_one
    finally:
        await harness.stop_tasks([consumer])


async def raw_pipelined(n: int, in_flight: int, deadline: float) -> Run:
    async with raw_asks() as ask_one:
        return await run_workers(n, in_flight, deadline, ask_one)


def percentile(sorted_samples: list[int], p: float) -> float:
    """Nearest-rank percentile of nanosecond samples, in microseconds."""
    rank = max(1, math.ceil(p / 100 * len(sorted_samples)))
    return sorted_samples[rank - 1] / 1000


async def time_sequential(n: int, deadline: float, ask_one: Any) -> Run:
    samples: list[int] = []
    record = samples.append
    for start in range(0, n, CHUNK):
        for i in range(start, min(n, start + CHUNK)):
            t0 = perf_counter_ns()
            await ask_one(i)
            record(perf_counter_ns() - t0)
        if perf_counter() > deadline:
            break
    samples.sort()
    return Run(
        {"p50": percentile(samples, 50), "p99": percentile(samples, 99)},
        truncated=len(samples) < n,
    )


async def cf_latency(n: int, deadline: float, timeout: float | None) -> Run:
    async with cf.ActorSystem() as system:
        ref = await system.spawn(Echo)
        ask = ref.ask

        def ask_one(i: int) -> Any:
            return ask(i, timeout)

        return await time_sequential(n, deadline, ask_one)


async def raw_latency(n: int, deadline: float) -> Run:
    async with raw_asks() as ask_one:
        return await time_sequential(n, deadline, ask_one)


async def cf_spawn(n: int, deadline: float) -> Run:
    refs: list[cf.ActorRef] = []
    keep = refs.append
    system = cf.ActorSystem()
    await system.start()
    try:
        spawn = system.spawn
        t0 = perf_counter()
        for start in range(0, n, CHUNK):
            for _ in range(start, min(n, start + CHUNK)):
                keep(await spawn(Idle))
            if perf_counter() > deadline:
                break
        elapsed = perf_counter() - t0
    finally:
        t1 = perf_counter()
        await system.aclose()
        closed = perf_counter() - t1
    done = len(refs)
    return Run(
        {"rate": done / elapsed, "close_rate": done / closed},
        truncated=done < n,
    )


async def raw_spawn(n: int, deadline: float) -> Run:
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []
    keep = tasks.append
    Queue = asyncio.Queue  # noqa: N806 - a local alias of the class
    create_task = loop.create_task
    try:
        t0 = perf_counter()
        for start in range(0, n, CHUNK):
            for _ in range(start, min(n, start + CHUNK)):
                keep(create_task(raw_idle(Queue())))
            if perf_counter() > deadline:
                break
        await asyncio.sleep(0)  # every task runs to its first await: ready to receive
        elapsed = perf_counter() - t0
    finally:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
    done = len(tasks)
    return Run({"rate": done / elapsed}, truncated=done < n)


# -- memory, in a child process ---------------------------------------------------------------

MEMORY_KINDS = ("cf-fresh", "cf-after-one", "raw")
#: Actors handling their one message at the same time in "cf-after-one", so that what
#: is measured is what an idle actor keeps, not 100,000 run tasks alive at once.
MEMORY_BATCH = 100


def rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


async def memory_child(
    kind: str, n: int, use_tracemalloc: bool, timeout_s: float
) -> dict[str, Any]:
    """Bytes per idle actor (or per raw queue + task) in this fresh process."""
    import tracemalloc

    deadline = perf_counter() + timeout_s
    holder: list[Any] = [None] * n  # allocated before the first reading: not counted
    system = cf.ActorSystem()
    await system.start()
    # Warm up the code paths (type caches, code objects, the names dict's first sizes).
    for _ in range(100):
        ref = await system.spawn(Idle)
        await ref.ask(0)
        await ref.stop()
    warm_queue: asyncio.Queue[Any] = asyncio.Queue()
    await harness.stop_tasks([asyncio.get_running_loop().create_task(raw_idle(warm_queue))])
    del warm_queue

    gc.collect()
    if use_tracemalloc:
        tracemalloc.start()
    before_traced = tracemalloc.get_traced_memory()[0] if use_tracemalloc else 0
    before_rss = rss_bytes()

    loop = asyncio.get_running_loop()
    done = 0
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        if kind == "raw":
            for i in range(start, stop):
                holder[i] = loop.create_task(raw_idle(asyncio.Queue()))
        else:
            for i in range(start, stop):
                holder[i] = await system.spawn(Idle)
        done = stop
        if perf_counter() > deadline:
            break
    await asyncio.sleep(0)  # raw tasks run to their first await
    if kind == "cf-after-one":
        Idle.handled = 0
        for start in range(0, done, MEMORY_BATCH):
            batch = holder[start : min(done, start + MEMORY_BATCH)]
            reached = Idle.reached = asyncio.Event()
            Idle.target = start + len(batch)
            for ref in batch:
                ref.tell_nowait(0)
            try:
                async with asyncio.timeout(remaining(deadline)):
                    await reached.wait()
            except TimeoutError:
                raise BenchmarkTimeout(
                    f"only {Idle.handled} of {done} actors handled their message"
                ) from None
        if any(ref._cell.queue is not None or ref._cell.task is not None for ref in holder[:done]):
            raise AssertionError("an actor still holds a deque or a task after going idle")

    gc.collect()
    after_rss = rss_bytes()
    after_traced = tracemalloc.get_traced_memory()[0] if use_tracemalloc else 0
    if use_tracemalloc:
        tracemalloc.stop()
    result = {
        "kind": kind,
        "n": done,
        "truncated": done < n,
        "rss_per_actor": (after_rss - before_rss) / done,
        "traced_per_actor": (after_traced - before_traced) / done if use_tracemalloc else None,
    }
    if kind == "raw":
        for task in holder[:done]:
            task.cancel()
        await asyncio.wait(holder[:done])
    holder.clear()
    await system.aclose()
    return result


async def measure_memory(kind: str, n: int, use_tracemalloc: bool, timeout_s: float) -> Run:
    args = [sys.executable, __file__, "--memory-child", kind, "--memory-n", str(n)]
    if use_tracemalloc:
        args.append("--tracemalloc")
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise BenchmarkTimeout(f"memory child {kind} ran longer than {timeout_s:g} s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"memory child {kind} failed:\n{err.decode(errors='replace')}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    key = "traced_per_actor" if use_tracemalloc else "rss_per_actor"
    return Run({"bytes": float(result[key])}, truncated=bool(result["truncated"]))


async def memory_figures(
    metric: Metric, kind: str, sizes: Sizes, use_tracemalloc: bool, repeat: int
) -> list[float]:
    """Bytes per actor from ``repeat`` child processes, run side by side.

    Memory figures do not depend on CPU contention, so the children run concurrently;
    each has its own RSS and its own deadline.
    """
    runs = await asyncio.gather(
        *(
            measure_memory(kind, sizes.memory, use_tracemalloc, sizes.child_timeout_s)
            for _ in range(repeat)
        ),
        return_exceptions=True,
    )
    figures = []
    for run in runs:
        if isinstance(run, BaseException):
            if not isinstance(run, BenchmarkTimeout | RuntimeError):
                raise run
            metric.error = f"{kind}: {run}"
            continue
        metric.truncated |= run.truncated
        figures.append(run.values["bytes"])
    return figures


# -- the table --------------------------------------------------------------------------------


@dataclass
class Metric(harness.Figures):
    """One row of the table: a figure of cfactor's, its baseline, and its target."""

    key: str
    label: str
    unit: str  # "rate" (per second), "us", "bytes"
    target: str  # shown in the table
    # How the target is checked: ("ratio>=", x), ("ratio<=", x), (">=", x), ("<=", x), None.
    check: tuple[str, float] | None
    cf_runs: list[float] = field(default_factory=list)
    base_runs: list[float] = field(default_factory=list)
    truncated: bool = False
    error: str | None = None

    @property
    def met(self) -> bool | None:
        if self.check is None:
            return None
        op, bound = self.check
        value = self.ratio if op.startswith("ratio") else self.cf
        if math.isnan(value):
            return False
        return value >= bound if op.endswith(">=") else value <= bound


def main_table(metrics: list[Metric]) -> str:
    rows = []
    for m in metrics:
        label = m.label + (" (cut short)" if m.truncated else "")
        if m.error:
            label += f" [error: {m.error}]"
        cf_text, raw_text = harness.fmt(m.cf, m.unit), harness.fmt(m.base, m.unit)
        ratio = harness.fmt_ratio(m.ratio, m.unit)
        rows.append([label, cf_text, raw_text, ratio, m.target, harness.met_flag(m.met)])
    return harness.results_table(rows)


# -- the benchmark ----------------------------------------------------------------------------


async def paired(
    metric_keys: list[Metric],
    repeat: int,
    deadline_s: float,
    cf_side: Any,
    raw_side: Any,
) -> None:
    """Run both sides ``repeat`` times, alternating which goes first, into the metrics.

    ``cf_side``/``raw_side`` take a deadline and return a Run whose ``values`` hold one
    entry per metric key. A side that fails or times out marks its metrics and stops.
    """
    for r in range(repeat):
        sides = [("cf", cf_side), ("raw", raw_side)]
        if r % 2:
            sides.reverse()
        for which, side in sides:
            if side is None:
                continue
            gc.collect()
            deadline = perf_counter() + deadline_s
            try:
                async with asyncio.timeout(deadline_s * 2 + 5):
                    run = await side(deadline)
            except (BenchmarkTimeout, TimeoutError) as exc:
                for metric in metric_keys:
                    metric.error = f"{which}: {exc or 'timed out'}"
                return
            for metric in metric_keys:
                if metric.key not in run.values:
                    continue  # a diagnostic of one side only
                runs = metric.cf_runs if which == "cf" else metric.base_runs
                runs.append(run.values[metric.key])
                metric.truncated |= run.truncated


async def benchmark(sizes: Sizes, repeat: int, source: str) -> tuple[int, dict[str, Any]]:
    """Run every measurement, print the tables; the exit status and the JSON document."""
    facts = harness.machine_facts(asyncio.get_running_loop(), source)
    harness.print_header("cfactor core benchmark", facts)
    print(
        f"- sizes: tell {sizes.tell:,}; pipelined asks {sizes.asks:,} with {sizes.in_flight:,} "
        f"in flight; sequential asks {sizes.latency:,}; spawn {sizes.spawn:,}; "
        f"memory {sizes.memory:,} actors; {repeat} runs each, median reported"
    )
    print(flush=True)
    d = sizes.deadline_s

    tell = Metric("rate", "tell throughput (msgs/s)", "rate", ">= 50 % of raw", ("ratio>=", 0.5))
    pipelined = Metric(
        "rate",
        f"pipelined ask throughput, {sizes.in_flight:,} in flight (asks/s)",
        "rate",
        ">= 50 % of raw",
        ("ratio>=", 0.5),
    )
    p50 = Metric("p50", "sequential ask latency p50", "us", "<= 3x raw", ("ratio<=", 3.0))
    p99 = Metric("p99", "sequential ask latency p99", "us", "-", None)
    spawn = Metric("rate", "spawn rate (actors/s)", "rate", ">= 100 k/s", (">=", 100_000.0))
    mem_fresh = Metric(
        "bytes", "memory per idle actor, fresh (RSS)", "bytes", "<= 1024 B", ("<=", 1024.0)
    )
    mem_one = Metric(
        "bytes", "memory per idle actor, after 1 msg (RSS)", "bytes", "<= 1024 B", ("<=", 1024.0)
    )
    traced_fresh = Metric("bytes", "memory per idle actor, fresh (tracemalloc)", "bytes", "-", None)
    traced_one = Metric(
        "bytes", "memory per idle actor, after 1 msg (tracemalloc)", "bytes", "-", None
    )
    # Diagnostics: not targets, they say where the time goes.
    pipelined_inf = Metric(
        "rate", "pipelined asks/s with timeout=inf (no timer)", "rate", "-", None
    )
    p50_inf = Metric("p50", "sequential ask p50 with timeout=inf (no timer)", "us", "-", None)
    p99_inf = Metric("p99", "sequential ask p99 with timeout=inf (no timer)", "us", "-", None)
    close = Metric(
        "close_rate", "system close with the spawned actors (actors/s)", "rate", "-", None
    )

    # Warm up both sides of the message paths once (not recorded).
    await cf_tell(min(sizes.tell, 20_000), perf_counter() + d)
    await raw_tell(min(sizes.tell, 20_000), perf_counter() + d)
    await cf_pipelined(sizes.asks // 4, sizes.in_flight, perf_counter() + d, None)
    await raw_pipelined(sizes.asks // 4, sizes.in_flight, perf_counter() + d)

    progress("tell ...")
    await paired(
        [tell],
        repeat,
        d,
        lambda dl: cf_tell(sizes.tell, dl),
        lambda dl: raw_tell(sizes.tell, dl),
    )
    progress("pipelined ask ...")
    await paired(
        [pipelined],
        repeat,
        d,
        lambda dl: cf_pipelined(sizes.asks, sizes.in_flight, dl, None),
        lambda dl: raw_pipelined(sizes.asks, sizes.in_flight, dl),
    )
    await paired(
        [pipelined_inf],
        repeat,
        d,
        lambda dl: cf_pipelined(sizes.asks, sizes.in_flight, dl, math.inf),
        None,
    )
    progress("sequential ask latency ...")
    await paired(
        [p50, p99],
        repeat,
        d,
        lambda dl: cf_latency(sizes.latency, dl, None),
        lambda dl: raw_latency(sizes.latency, dl),
    )
    await paired(
        [p50_inf, p99_inf],
        repeat,
        d,
        lambda dl: cf_latency(sizes.latency, dl, math.inf),
        None,
    )
    progress("spawn ...")
    await paired(
        [spawn, close],
        repeat,
        d,
        lambda dl: cf_spawn(sizes.spawn, dl),
        lambda dl: raw_spawn(sizes.spawn, dl),
    )
    progress("memory (child processes) ...")
    raw_runs: dict[bool, list[float]] = {}
    for metric, kind, traced in (
        (mem_fresh, "cf-fresh", False),
        (mem_one, "cf-after-one", False),
        (traced_fresh, "cf-fresh", True),
        (traced_one, "cf-after-one", True),
    ):
        metric.cf_runs = await memory_figures(metric, kind, sizes, traced, repeat)
        if traced not in raw_runs:
            raw_runs[traced] = await memory_figures(metric, "raw", sizes, traced, repeat)
        metric.base_runs = list(raw_runs[traced])

    metrics = [tell, pipelined, p50, p99, spawn, mem_fresh, mem_one, traced_fresh, traced_one]
    diagnostics = [pipelined_inf, p50_inf, p99_inf, close]
    harness.print_section(harness.RESULTS, main_table(metrics))
    harness.print_section(harness.EVERY_RUN, harness.runs_table(metrics + diagnostics))
    harness.print_section("Diagnostics (cfactor only; not targets)", main_table(diagnostics))
    print(
        "Baselines: tell = asyncio.Queue(maxsize=1000) + one consumer task; asks = the same "
        "queue carrying (msg, future), the consumer completing each future; spawn = "
        "asyncio.Queue + a task awaiting get(), started; memory = the same pair, idle."
    )
    print(flush=True)

    missed = [m for m in metrics if m.met is False]
    document = {
        "facts": facts,
        "sizes": sizes.__dict__,
        "repeat": repeat,
        "metrics": [metric_json(m) for m in metrics],
        "diagnostics": [metric_json(m) for m in diagnostics],
    }
    return (1 if missed else 0), document


def metric_json(m: Metric) -> dict[str, Any]:
    clean = harness.clean
    return {
        "label": m.label,
        "unit": {"rate": "per_second", "us": "microseconds", "bytes": "bytes"}[m.unit],
        "cfactor": clean(m.cf),
        "baseline": clean(m.base),
        "ratio": clean(m.ratio),
        "cfactor_runs": m.cf_runs,
        "baseline_runs": m.base_runs,
        "target": m.target,
        "met": m.met,
        "truncated": m.truncated,
        "error": m.error,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = harness.parser(
        "Measure cfactor's core runtime (tell and ask throughput, ask latency, spawn "
        "rate, memory per idle actor) next to raw asyncio baselines measured in the "
        "same run, and print a table. Exits 1 when a target is missed.",
        "small sizes: a smoke run of a few seconds",
    )
    parser.add_argument("--memory-child", choices=MEMORY_KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--memory-n", type=int, default=FULL.memory, help=argparse.SUPPRESS)
    parser.add_argument("--tracemalloc", action="store_true", help=argparse.SUPPRESS)
    return harness.parse(parser, argv)


def main() -> int:
    args = parse_args()
    if args.memory_child:
        result = cf.run(
            memory_child(args.memory_child, args.memory_n, args.tracemalloc, FULL.child_timeout_s)
        )
        print(json.dumps(result))
        return 0
    sizes = QUICK if args.quick else FULL
    return harness.run_and_finish(
        benchmark(sizes, args.repeat, harness.source_version()), args.json
    )


if __name__ == "__main__":
    sys.exit(main())
