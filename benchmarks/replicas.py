"""Replicated actors: tell and pipelined-ask throughput, unkeyed and keyed, next to raw asyncio.

Run it as ``.venv/bin/python benchmarks/replicas.py`` (``--quick`` for a smoke run of a few
seconds, ``--json PATH`` to also write the figures). Everything runs in one process on one
event loop started by ``cf.run`` (uvloop when installed), embedded: each cfactor run starts a
fresh ``cf.ActorSystem()`` and spawns one replicated actor with 4 fixed replicas
(``cf.Replicas(min=4, max=4)``, optionally ``key=``).

The baselines are what a hand-written asyncio program would do with 4 workers: 4
``asyncio.Queue`` consumers fed by the same producer(s), round robin (unkeyed) or by
``hash(key) % 4`` (keyed), doing exactly the handler's work.

Every run is checked, cfactor's and the baseline's alike: every message handled exactly once,
every ask answered with its own message, and, when keyed, each key handled by one replica only
and in the order its messages entered the backlog. Message ids are handed out in the order the
messages are sent (one producer for tells, a shared counter read just before each ask enqueues
without waiting), so "in order" means "ids increasing per key". A violated check makes the
script exit 1: a fast wrong answer is not a result.

Each figure is measured ``--repeat`` times, alternating which side goes first; the table
reports the median and a second table every run. Counts are fixed; each run is also bounded in
time (a run that hits the bound is an error, not a figure).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import sys
from dataclasses import dataclass, field
from functools import partial
from time import perf_counter
from typing import TYPE_CHECKING, Any

import harness
from harness import progress

import cfactor as cf

if TYPE_CHECKING:
    import argparse
    from collections.abc import Awaitable, Callable

#: Replicas of the group, and consumers of the baseline.
REPLICAS = 4
#: Distinct keys of a keyed run: the key of message ``i`` is ``i % KEYS``.
KEYS = 1000
#: The group's backlog bound (the default ``mailbox_capacity``); the baseline's 4 queues
#: hold as many in total.
BACKLOG = 1000


def key_of(message: int) -> int:
    return message % KEYS


@dataclass(frozen=True)
class Sizes:
    tell: int
    asks: int
    in_flight: int
    repeat: int
    #: Wall-clock bound of one run (one side, one figure).
    timeout_s: float


FULL = Sizes(tell=200_000, asks=100_000, in_flight=1_000, repeat=5, timeout_s=30.0)
QUICK = Sizes(tell=20_000, asks=10_000, in_flight=1_000, repeat=3, timeout_s=10.0)


# -- what the handlers record -----------------------------------------------------------------


class Record:
    """What one run's handlers saw: per replica (or consumer), the ids in handling order."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.seen: list[list[int]] = []
        self.handled = 0
        self.all_handled = asyncio.Event()
        #: Asks answered with something other than their own message.
        self.wrong_answers = 0

    def new_replica(self) -> list[int]:
        seen: list[int] = []
        self.seen.append(seen)
        return seen


class Worker(cf.Actor):
    """Records each message it handles, counts it, answers it with itself."""

    def __init__(self, record: Record) -> None:
        self.record = record
        self.append = record.new_replica().append

    async def receive(self, message: Any) -> Any:
        self.append(message)
        record = self.record
        record.handled += 1
        if record.handled == record.n:
            record.all_handled.set()
        return message


async def raw_tell_consumer(queue: asyncio.Queue[int], record: Record) -> None:
    """The baseline of ``Worker`` for tells: the same work per message."""
    append = record.new_replica().append
    get = queue.get
    while True:
        message = await get()
        append(message)
        record.handled += 1
        if record.handled == record.n:
            record.all_handled.set()


async def raw_ask_consumer(
    queue: asyncio.Queue[tuple[int, asyncio.Future[int]]], record: Record
) -> None:
    """The baseline of ``Worker`` for asks: the same work, then completes the future."""
    append = record.new_replica().append
    get = queue.get
    while True:
        message, future = await get()
        append(message)
        record.handled += 1
        if record.handled == record.n:
            record.all_handled.set()
        if not future.done():
            future.set_result(message)


# -- the check --------------------------------------------------------------------------------


@dataclass
class Check:
    """The verdict on one run."""

    violations: list[str] = field(default_factory=list)
    #: Share of the messages each replica handled, smallest and largest.
    share_min: float = 0.0
    share_max: float = 0.0


def check(record: Record, *, keyed: bool, sent: int) -> Check:
    """Exactly once for ids ``0..sent-1``; when keyed, one replica per key, in id order."""
    result = Check()
    bad = result.violations
    n = sent
    counts = bytearray(n)
    strays = 0
    for seen in record.seen:
        for message in seen:
            if message.__class__ is not int or not 0 <= message < n:
                strays += 1
            elif counts[message] < 255:  # a byte's limit
                counts[message] += 1
    missing = counts.count(0)
    duplicated = n - missing - counts.count(1)
    if missing:
        bad.append(f"{missing:,} of {n:,} messages never handled")
    if duplicated:
        bad.append(f"{duplicated:,} messages handled more than once")
    if strays:
        bad.append(f"{strays:,} unknown messages handled")
    if record.wrong_answers:
        bad.append(f"{record.wrong_answers:,} asks answered with another message")
    if keyed:
        owner: dict[int, int] = {}
        last: dict[int, int] = {}
        split = disorder = 0
        for replica, seen in enumerate(record.seen):
            for message in seen:
                key = key_of(message)
                first = owner.setdefault(key, replica)
                if first != replica:
                    split += 1
                elif message <= last.get(key, -1):
                    disorder += 1
                last[key] = message
        if split:
            bad.append(f"{split:,} messages handled by another replica than their key's")
        if disorder:
            bad.append(f"{disorder:,} messages handled before an earlier one of their key")
    sizes = [len(seen) for seen in record.seen]
    total = sum(sizes)
    if len(sizes) != REPLICAS:
        bad.append(f"{len(sizes)} replicas or consumers recorded messages, not {REPLICAS}")
    if total:
        result.share_min = min(sizes) / total
        result.share_max = max(sizes) / total
    return result


# -- one run of one side ----------------------------------------------------------------------


@dataclass
class Run:
    rate: float
    check: Check


async def finish(
    record: Record, keyed: bool, sent: int, timeout_s: float, work: Callable[[], Awaitable[None]]
) -> Run:
    """Time ``work`` plus the wait until every message is handled; then check the run."""
    t0 = perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            await work()
            await record.all_handled.wait()
    except TimeoutError:
        verdict = check(record, keyed=keyed, sent=sent)
        verdict.violations.insert(0, f"did not finish within {timeout_s:g} s")
        return Run(float("nan"), verdict)
    elapsed = perf_counter() - t0
    return Run(sent / elapsed, check(record, keyed=keyed, sent=sent))


async def spawn_group(system: cf.ActorSystem, record: Record, *, keyed: bool) -> cf.ActorRef:
    replicas = cf.Replicas(min=REPLICAS, max=REPLICAS, key=key_of if keyed else None)
    return await system.spawn(Worker, record, name="w", replicas=replicas)


async def cf_tell(n: int, *, keyed: bool, timeout_s: float) -> Run:
    record = Record(n)
    async with cf.ActorSystem() as system:
        ref = await spawn_group(system, record, keyed=keyed)
        tell = ref.tell

        async def produce() -> None:
            for i in range(n):
                await tell(i)

        return await finish(record, keyed, n, timeout_s, produce)


async def raw_tell(n: int, *, keyed: bool, timeout_s: float) -> Run:
    loop = asyncio.get_running_loop()
    record = Record(n)
    queues: list[asyncio.Queue[int]] = [
        asyncio.Queue(maxsize=BACKLOG // REPLICAS) for _ in range(REPLICAS)
    ]
    consumers = [loop.create_task(raw_tell_consumer(q, record)) for q in queues]
    await asyncio.sleep(0)  # started, like spawned replicas
    puts = [q.put for q in queues]

    async def produce_round_robin() -> None:
        for i in range(n):
            await puts[i % REPLICAS](i)

    async def produce_by_key() -> None:
        for i in range(n):
            await puts[hash(key_of(i)) % REPLICAS](i)

    try:
        return await finish(
            record, keyed, n, timeout_s, produce_by_key if keyed else produce_round_robin
        )
    finally:
        await harness.stop_tasks(consumers)


async def pipelined(
    n: int, in_flight: int, record: Record, ask_one: Callable[[int], Awaitable[Any]]
) -> None:
    """``in_flight`` tasks asking until ``n`` ids are taken; ids come from one counter,
    read just before the ask enqueues, so they increase in backlog order."""
    ids = itertools.count()
    take = ids.__next__

    async def worker() -> None:
        while (i := take()) < n:
            if await ask_one(i) != i:
                record.wrong_answers += 1

    tasks = [asyncio.get_running_loop().create_task(worker()) for _ in range(in_flight)]
    try:
        await asyncio.gather(*tasks)
    finally:
        await harness.stop_tasks(tasks)


async def cf_pipelined(n: int, in_flight: int, *, keyed: bool, timeout_s: float) -> Run:
    record = Record(n)
    async with cf.ActorSystem() as system:
        ref = await spawn_group(system, record, keyed=keyed)
        ask = ref.ask
        return await finish(
            record, keyed, n, timeout_s, lambda: pipelined(n, in_flight, record, ask)
        )


async def raw_pipelined(n: int, in_flight: int, *, keyed: bool, timeout_s: float) -> Run:
    loop = asyncio.get_running_loop()
    record = Record(n)
    queues: list[asyncio.Queue[tuple[int, asyncio.Future[int]]]] = [
        asyncio.Queue(maxsize=BACKLOG // REPLICAS) for _ in range(REPLICAS)
    ]
    consumers = [loop.create_task(raw_ask_consumer(q, record)) for q in queues]
    await asyncio.sleep(0)
    puts = [q.put for q in queues]
    create_future = loop.create_future
    turn = itertools.count()

    async def ask_round_robin(i: int) -> int:
        future: asyncio.Future[int] = create_future()
        await puts[next(turn) % REPLICAS]((i, future))
        return await future

    async def ask_by_key(i: int) -> int:
        future: asyncio.Future[int] = create_future()
        await puts[hash(key_of(i)) % REPLICAS]((i, future))
        return await future

    ask_one = ask_by_key if keyed else ask_round_robin
    try:
        return await finish(
            record, keyed, n, timeout_s, lambda: pipelined(n, in_flight, record, ask_one)
        )
    finally:
        await harness.stop_tasks(consumers)


# -- the figures ------------------------------------------------------------------------------


@dataclass
class Metric(harness.Figures):
    """One row: a figure of cfactor's and its baseline's, every run, and every check."""

    label: str
    keyed: bool
    cf_runs: list[float] = field(default_factory=list)
    base_runs: list[float] = field(default_factory=list)
    cf_checks: list[Check] = field(default_factory=list)
    raw_checks: list[Check] = field(default_factory=list)

    def violations(self) -> list[str]:
        return [
            f"{self.label}, {side} run {i + 1}: {text}"
            for side, checks in (("cfactor", self.cf_checks), ("baseline", self.raw_checks))
            for i, verdict in enumerate(checks)
            for text in verdict.violations
        ]


async def paired(
    metric: Metric,
    repeat: int,
    cf_side: Callable[[], Awaitable[Run]],
    raw_side: Callable[[], Awaitable[Run]],
) -> None:
    """Both sides ``repeat`` times, alternating which goes first."""
    for r in range(repeat):
        sides = [("cf", cf_side), ("raw", raw_side)]
        if r % 2:
            sides.reverse()
        for which, side in sides:
            gc.collect()
            run = await side()
            if which == "cf":
                metric.cf_runs.append(run.rate)
                metric.cf_checks.append(run.check)
            else:
                metric.base_runs.append(run.rate)
                metric.raw_checks.append(run.check)


def shares(checks: list[Check]) -> str:
    if not checks:
        return "-"
    low = min(c.share_min for c in checks) * 100
    high = max(c.share_max for c in checks) * 100
    return f"{low:.1f}-{high:.1f} %"


def results_table(metrics: list[Metric]) -> str:
    rows = [
        [
            m.label,
            harness.fmt(m.cf, "rate"),
            harness.fmt(m.base, "rate"),
            harness.fmt_ratio(m.ratio, "rate"),
            harness.spread(m.cf_runs),
            harness.spread(m.base_runs),
        ]
        for m in metrics
    ]
    header = ["metric", "cfactor", "baseline", "ratio", "cf spread", "base spread"]
    return harness.markdown_table(header, rows, right={1, 2, 3, 4, 5})


def checks_table(metrics: list[Metric]) -> str:
    rows = []
    for m in metrics:
        checked = "exactly once, answers" if "ask" in m.label else "exactly once"
        if m.keyed:
            checked += ", one replica per key, per-key order"
        bad = len(m.violations())
        runs = len(m.cf_checks) + len(m.raw_checks)
        rows.append(
            [
                m.label,
                checked,
                f"{runs}",
                "none" if not bad else f"{bad} (see below)",
                shares(m.cf_checks),
                shares(m.raw_checks),
            ]
        )
    header = [
        "metric",
        "checked in every run",
        "runs",
        "violations",
        "cf replica share",
        "base consumer share",
    ]
    return harness.markdown_table(header, rows, right={2})


async def benchmark(sizes: Sizes, repeat: int, source: str) -> tuple[int, dict[str, Any]]:
    facts = harness.machine_facts(asyncio.get_running_loop(), source)
    harness.print_header("cfactor replicated actors: keyed and unkeyed routing", facts)
    print(
        f"- sizes: {REPLICAS} fixed replicas (min=max={REPLICAS}, in_flight 4, backlog "
        f"{BACKLOG:,}); tell {sizes.tell:,}; pipelined asks {sizes.asks:,} with "
        f"{sizes.in_flight:,} in flight; keyed: key = id % {KEYS:,}; {repeat} runs each, "
        "median reported"
    )
    print(flush=True)
    t = sizes.timeout_s
    tell = Metric("tell, unkeyed (msgs/s)", keyed=False)
    tell_keyed = Metric("tell, keyed (msgs/s)", keyed=True)
    ask = Metric(f"pipelined ask, unkeyed, {sizes.in_flight:,} in flight (asks/s)", keyed=False)
    ask_keyed = Metric(f"pipelined ask, keyed, {sizes.in_flight:,} in flight (asks/s)", keyed=True)

    # Warm up every path once (not recorded, but checked like the rest).
    warm = Metric("warm-up", keyed=True)
    for keyed in (False, True):
        n, a = min(sizes.tell, 20_000), min(sizes.asks, 10_000)
        for run in (
            await cf_tell(n, keyed=keyed, timeout_s=t),
            await raw_tell(n, keyed=keyed, timeout_s=t),
            await cf_pipelined(a, sizes.in_flight, keyed=keyed, timeout_s=t),
            await raw_pipelined(a, sizes.in_flight, keyed=keyed, timeout_s=t),
        ):
            warm.cf_checks.append(run.check)

    for metric in (tell, tell_keyed, ask, ask_keyed):
        keyed = metric.keyed
        if metric in (tell, tell_keyed):
            cf_side = partial(cf_tell, sizes.tell, keyed=keyed, timeout_s=t)
            raw_side = partial(raw_tell, sizes.tell, keyed=keyed, timeout_s=t)
        else:
            cf_side = partial(cf_pipelined, sizes.asks, sizes.in_flight, keyed=keyed, timeout_s=t)
            raw_side = partial(raw_pipelined, sizes.asks, sizes.in_flight, keyed=keyed, timeout_s=t)
        progress(f"{metric.label} ...")
        await paired(metric, repeat, cf_side, raw_side)

    metrics = [tell, tell_keyed, ask, ask_keyed]
    harness.print_section(harness.RESULTS, results_table(metrics))
    harness.print_section(
        harness.EVERY_RUN,
        harness.every_run_table((m.label, "rate", m.cf_runs, m.base_runs) for m in metrics),
    )
    harness.print_section("Checks (cfactor and baseline runs alike)", checks_table(metrics))
    print(
        f"Baselines: {REPLICAS} asyncio.Queue(maxsize={BACKLOG // REPLICAS}) consumer tasks "
        "doing the handler's work (record the id, count it); tells: one producer, "
        "`await q.put(i)` to queue i % 4 (unkeyed) or hash(key(i)) % 4 (keyed); asks: the same "
        f"{sizes.in_flight:,} worker tasks putting (i, future) round robin or by key and "
        "awaiting the future, which the consumer completes. cfactor: one "
        f"cf.ActorSystem per run, `spawn(Worker, replicas=cf.Replicas(min={REPLICAS}, "
        f"max={REPLICAS}[, key=key_of]))` with key_of(i) = i % {KEYS}, `await ref.tell(i)` / "
        "`await ref.ask(i)` (default timeout); a run ends when every message is handled."
    )
    print()
    violations = [v for m in [warm, *metrics] for v in m.violations()]
    if violations:
        print("## CHECKS FAILED")
        print()
        for text in violations:
            print(f"- {text}")
        print()
    sys.stdout.flush()

    document = {
        "facts": facts,
        "sizes": sizes.__dict__ | {"repeat": repeat, "replicas": REPLICAS, "keys": KEYS},
        "metrics": [
            {
                "label": m.label,
                "keyed": m.keyed,
                "unit": "per_second",
                "cfactor": harness.clean(m.cf),
                "baseline": harness.clean(m.base),
                "ratio": harness.clean(m.ratio),
                "cfactor_runs": m.cf_runs,
                "baseline_runs": m.base_runs,
                "violations": m.violations(),
            }
            for m in metrics
        ],
        "violations": violations,
    }
    return (1 if violations else 0), document


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = harness.parser(
        "Measure tell and pipelined-ask throughput to a replicated actor with 4 fixed "
        "replicas, unkeyed and keyed, next to raw asyncio baselines measured in the same "
        "run, checking every run's answer. Exits 1 when a check fails.",
        "small sizes: a smoke run of a few seconds",
        repeat=False,
    )
    parser.add_argument(
        "--repeat",
        type=int,
        metavar="N",
        help=f"runs per figure (default {FULL.repeat}, {QUICK.repeat} with --quick)",
    )
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main() -> int:
    args = parse_args()
    sizes = QUICK if args.quick else FULL
    repeat = args.repeat or sizes.repeat
    return harness.run_and_finish(benchmark(sizes, repeat, harness.source_version()), args.json)


if __name__ == "__main__":
    sys.exit(main())
