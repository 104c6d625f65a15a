"""Autoscaling benchmark: a replicated actor under a step load, and throughput per replica count.

Run it as ``.venv/bin/python benchmarks/autoscale.py`` (``--quick`` for a smoke run under
~40 s, ``--json PATH`` to also write the figures, ``--plot PATH`` to put the PNG elsewhere).
Everything runs embedded, in one process, on one event loop started by ``cf.run`` (uvloop
when installed), with a fresh ``cf.ActorSystem()`` per measurement.

The worker is I/O-bound: each message awaits a 10 ms sleep, so replicas add capacity even
on 2 cores. A replica holds up to ``in_flight`` = 4 messages but, being an actor, handles
them one at a time, so their sleeps do not overlap: one replica takes ~100 msgs/s (the
benchmark measures it rather than assuming it).

- **single-replica throughput** (measured first, also the baseline of the next rows): the
  worker as ``cf.Replicas(min=1, max=1)``, its backlog kept full by a sender task that
  ``await ref.tell(i)``s in a loop; messages handled per second over a fixed window after
  a warm-up.
- **throughput with N fixed replicas** (N = 2, 4, 8; ``min=max=N`` so the autoscaler
  holds): the same, against N x the single-replica figure (ratio). Diagnostic: raw
  asyncio, N tasks pulling from one ``asyncio.Queue`` and awaiting the same sleep (the
  ceiling for N sequential handlers on this loop).
- **step load**: ``cf.Replicas(min=1, max=8, target_depth=20)`` and every other setting
  at its default (report every 0.5 s, scale-out window 1 s, scale-in cooldown 10 s, one
  replica per scale-in, ``in_flight`` 4, backlog bound 1000). An open-loop producer
  offers 5 x the single-replica throughput at a steady rate for a fixed time, then stops:
  it sends with ``tell_nowait`` and, when the backlog is full, hands the message to a
  task of its own that awaits ``ref.tell`` (a blocked sender, which the depth signal
  counts), so the offered rate does not drop when the group falls behind. Every 50 ms a
  sampler records the depth (``statistics().depth + waiting_senders``) and the replica
  count. Times come from the controller's decisions (``Decision.at``, system clock) and
  from the handler (the clock when the last message was handled). Every id must be
  handled exactly once. The last run also waits for the scale-in back to ``min``
  (7 cooldowns) and is the one plotted.

Every loop is bounded by its count and a deadline. Exits 1 when a target is missed or a
message was lost or handled twice.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

import harness
from harness import progress, stop_tasks

import cfactor as cf

if TYPE_CHECKING:
    import argparse

#: What one message costs the worker: an awaited sleep (I/O-bound).
SERVICE_S = 0.010
#: The step load, as a multiple of the single-replica throughput.
OVERLOAD = 5.0
#: How often the sampler reads depth and replica count.
SAMPLE_S = 0.05
#: How often the producer wakes to send what is due.
TICK_S = 0.005
#: The backlog bound of the throughput runs: full at all times, small enough to drain fast.
THROUGHPUT_CAPACITY = 64

STEP_CONFIG = cf.Replicas(min=1, max=8, target_depth=20)
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Sizes:
    #: Step-load runs (median reported); the last also waits for the scale-in to min.
    step_runs: int
    #: How long the step load is offered (s).
    load_s: float
    #: Whether the last step run waits for the scale-in all the way back to min.
    scale_in_to_min: bool
    #: Throughput runs per replica count, the warm-up and the measured window of each (s).
    throughput_runs: int
    warmup_s: float
    window_s: float


FULL = Sizes(
    step_runs=3,
    load_s=10.0,
    scale_in_to_min=True,
    throughput_runs=3,
    warmup_s=0.3,
    window_s=1.5,
)
QUICK = Sizes(
    step_runs=1,
    load_s=5.0,
    scale_in_to_min=False,
    throughput_runs=1,
    warmup_s=0.2,
    window_s=1.0,
)


class Tally:
    """Which ids were handled, how often; when the expected count was reached."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.counts: dict[int, int] = {}
        self.handled = 0
        self.expect = -1
        self.done = asyncio.Event()
        self.done_at = math.nan

    def record(self, message: int) -> None:
        counts = self.counts
        counts[message] = counts.get(message, 0) + 1
        self.handled += 1
        if self.handled == self.expect:
            self.done_at = self.clock.now()
            self.done.set()

    def expect_total(self, total: int) -> None:
        self.expect = total
        if self.handled >= total and not self.done.is_set():
            self.done_at = self.clock.now()
            self.done.set()

    def check(self, sent: int) -> tuple[int, int, int]:
        """(lost, handled more than once, unknown ids) for ids 0 .. sent - 1."""
        counts = self.counts
        lost = sum(1 for i in range(sent) if i not in counts)
        twice = sum(1 for n in counts.values() if n > 1)
        unknown = sum(1 for i in counts if not 0 <= i < sent)
        return lost, twice, unknown


class Worker(cf.Actor):
    """I/O-bound: awaits 10 ms per message, then records its id."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    async def receive(self, message: Any) -> Any:
        await asyncio.sleep(SERVICE_S)
        self.tally.record(message)


def group_of(ref: cf.ActorRef) -> Any:
    return ref._cell


# -- throughput with N fixed replicas ---------------------------------------------------------


async def cf_throughput(n: int, sizes: Sizes) -> tuple[float, tuple[int, int, int]]:
    """Messages/s of N fixed replicas with a full backlog; (lost, twice, unknown)."""
    async with cf.ActorSystem() as system:
        clock = system.clock
        tally = Tally(clock)
        ref = await system.spawn(
            Worker,
            tally,
            name="work",
            mailbox_capacity=THROUGHPUT_CAPACITY,
            replicas=cf.Replicas(min=n, max=n, target_depth=STEP_CONFIG.target_depth),
        )
        sent = 0
        stop = False
        limit = int(2 * n * 4 / SERVICE_S * (sizes.warmup_s + sizes.window_s)) + 10_000

        async def sender() -> None:
            nonlocal sent
            while not stop and sent < limit:
                await ref.tell(sent)
                sent += 1

        task = asyncio.get_running_loop().create_task(sender())
        await asyncio.sleep(sizes.warmup_s)
        h0, t0 = tally.handled, clock.now()
        await asyncio.sleep(sizes.window_s)
        h1, t1 = tally.handled, clock.now()
        stop = True
        await stop_tasks([task])
        tally.expect_total(sent)
        async with asyncio.timeout(30):
            await tally.done.wait()
        if group_of(ref).count != n:
            raise AssertionError(f"{n} fixed replicas became {group_of(ref).count}")
        return (h1 - h0) / (t1 - t0), tally.check(sent)


async def raw_throughput(tasks: int, sizes: Sizes) -> float:
    """Raw asyncio: ``tasks`` consumers pulling from one full asyncio.Queue, same sleep."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=THROUGHPUT_CAPACITY)
    handled = 0

    async def consume() -> None:
        nonlocal handled
        while True:
            await queue.get()
            await asyncio.sleep(SERVICE_S)
            handled += 1

    async def produce() -> None:
        i = 0
        while True:
            await queue.put(i)
            i += 1

    running = [loop.create_task(consume()) for _ in range(tasks)]
    running.append(loop.create_task(produce()))
    try:
        await asyncio.sleep(sizes.warmup_s)
        h0, t0 = handled, loop.time()
        await asyncio.sleep(sizes.window_s)
        return (handled - h0) / (loop.time() - t0)
    finally:
        await stop_tasks(running)


# -- the step load ----------------------------------------------------------------------------


@dataclass
class StepRun:
    """One step-load run: what happened, relative to the load's start (s)."""

    rate: float
    sent: int = 0
    offered: float = math.nan
    load_end: float = math.nan
    first_out: float = math.nan
    max_decided: float = math.nan
    max_running: float = math.nan
    peak_depth: int = 0
    caught_up: float = math.nan
    drained: float = math.nan
    first_in: float = math.nan
    under_since: float = math.nan
    in_after_under: float = math.nan
    at_min: float = math.nan
    lost: int = 0
    twice: int = 0
    unknown: int = 0
    reversals: int = 0
    out_after_in: int = 0
    decisions: list[tuple[float, str, int, str]] = field(default_factory=list)
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


async def step_run(rate: float, sizes: Sizes, settle_s: float, to_min: bool) -> StepRun:
    run = StepRun(rate=rate)
    cfg = STEP_CONFIG
    async with cf.ActorSystem() as system:
        loop = asyncio.get_running_loop()
        clock = system.clock
        tally = Tally(clock)
        ref = await system.spawn(Worker, tally, name="work", replicas=cfg)
        group = group_of(ref)
        controller = group.controller
        # Where the load starts relative to the controller's 0.5 s reports (its phase)
        # moves the first decision by up to one interval; runs use different phases.
        await asyncio.sleep(settle_s)

        t0 = clock.now()
        total = int(rate * sizes.load_s)
        blocked: set[asyncio.Task[None]] = set()
        samples = run.samples
        stop_sampling = False

        async def sample() -> None:
            bound = t0 + sizes.load_s + 60 + (cfg.max - cfg.min + 2) * cfg.scale_in_cooldown_s
            while not stop_sampling and clock.now() < bound:
                stats = ref.statistics()
                samples.append((clock.now() - t0, stats.depth + stats.waiting_senders, group.count))
                await asyncio.sleep(SAMPLE_S)

        sampler = loop.create_task(sample())
        sent = 0
        try:
            while sent < total and clock.now() - t0 < sizes.load_s * 2:
                due = min(total, int((clock.now() - t0) * rate) + 1)
                while sent < due:
                    try:
                        ref.tell_nowait(sent)
                    except cf.MailboxFull:
                        task = loop.create_task(ref.tell(sent))
                        blocked.add(task)
                        task.add_done_callback(blocked.discard)
                    sent += 1
                await asyncio.sleep(TICK_S)
            t1 = clock.now()
            run.sent = sent
            run.load_end = t1 - t0
            run.offered = sent / (t1 - t0)
            if sent < total:
                run.notes.append(f"producer cut short: {sent} of {total} sent")
            tally.expect_total(sent)
            try:
                async with asyncio.timeout(60):
                    await tally.done.wait()
                run.drained = tally.done_at - t1
            except TimeoutError:
                run.notes.append(f"not drained within 60 s: {tally.handled} of {sent} handled")

            # Wait for the first scale-in (one cooldown after the load went away), and in
            # the plotted run for the count back at min.
            cooldown = cfg.scale_in_cooldown_s
            steps = cfg.max - cfg.min if to_min else 1
            deadline = perf_counter() + steps * (cooldown + 2 * cfg.report_interval_s) + 5
            while perf_counter() < deadline:
                changes = list(controller.decisions)
                ins = [d for d in changes if d.direction == "in"]
                if ins and (not to_min or ins[-1].replicas == cfg.min):
                    break
                await asyncio.sleep(SAMPLE_S)
            await asyncio.sleep(3 * SAMPLE_S)  # a few samples after the last change
        finally:
            stop_sampling = True
            await stop_tasks([sampler, *blocked])
        run.lost, run.twice, run.unknown = tally.check(sent)
        decisions = list(controller.decisions)

    run.decisions = [(d.at - t0, d.direction, d.replicas, d.reason) for d in decisions]
    outs = [d for d in run.decisions if d[1] == "out"]
    ins = [d for d in run.decisions if d[1] == "in"]
    if outs:
        run.first_out = outs[0][0]
    reached = [d for d in outs if d[2] == cfg.max]
    if reached:
        run.max_decided = reached[0][0]
    running = [t for t, _, n in samples if n == cfg.max]
    if running:
        run.max_running = running[0]
    if ins:
        run.first_in = ins[0][0]
        if to_min and ins[-1][2] == cfg.min:
            run.at_min = ins[-1][0] - ins[0][0]
        # When the depth per replica last went under the low watermark before the first
        # scale-in (from the 50 ms samples; the policy sees 0.5 s reports).
        low = cfg.effective_low_watermark
        before = [(t, depth, n) for t, depth, n in samples if t < run.first_in]
        under = math.nan
        for t, depth, n in reversed(before):
            if depth >= low * n:
                break
            under = t
        run.under_since = under
        run.in_after_under = run.first_in - under
    directions = [d[1] for d in run.decisions]
    run.reversals = sum(1 for a, b in itertools.pairwise(directions) if a != b)
    if ins:
        first_in_at = ins[0][0]
        run.out_after_in = sum(1 for d in outs if d[0] > first_in_at)
    # Caught up: the first sample after the peak depth at which the depth per replica is
    # back within the target (the group keeps up with the load from then on).
    if samples:
        peak_index = max(range(len(samples)), key=lambda i: samples[i][1])
        run.peak_depth = samples[peak_index][1]
        for t, depth, n in samples[peak_index:]:
            if n and depth <= cfg.target_depth * n:
                run.caught_up = t
                break
    return run


# -- the table --------------------------------------------------------------------------------


@dataclass
class Row(harness.Figures):
    """One row of the table: cfactor's figure, its baseline and target."""

    label: str
    unit: str  # "s", "rate", "count", "msgs"
    target: str = "-"
    check: tuple[str, float] | None = None  # ("<=", x) | (">=", x) | ("ratio>=", x)
    cf_runs: list[float] = field(default_factory=list)
    base_runs: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.check is None:
            return None
        op, bound = self.check
        if any(math.isnan(v) for v in self.cf_runs) or not self.cf_runs:
            return False
        value = self.ratio if op.startswith("ratio") else self.cf
        if math.isnan(value):
            return False
        if op.endswith(">="):
            return value >= bound
        # "<=" targets hold for every run, not only the median.
        return all(v <= bound for v in self.cf_runs) and value <= bound


def fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "n/a"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "rate":
        return f"{value:,.0f} /s"
    return f"{value:,.0f}"


def main_table(rows: list[Row]) -> str:
    body = []
    for r in rows:
        cf_text, base_text = fmt(r.cf, r.unit), fmt(r.base, r.unit)
        ratio = harness.fmt_ratio(r.ratio, r.unit)
        body.append([r.label, cf_text, base_text, ratio, r.target, harness.met_flag(r.met)])
    return harness.results_table(body)


# -- the plot ---------------------------------------------------------------------------------


def plot(run: StepRun, path: Path) -> str:
    """Draw depth and replicas over time; the PNG's path, or why there is none."""
    try:
        import matplotlib as mpl
    except ImportError:
        return (
            "matplotlib is not installed, so no plot was drawn; install it with "
            "`.venv/bin/pip install -e '.[bench]'` and run again"
        )
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    cfg = STEP_CONFIG
    times = [s[0] for s in run.samples]
    depths = [s[1] for s in run.samples]
    counts = [s[2] for s in run.samples]
    fig, left = plt.subplots(figsize=(11, 5.5), dpi=110)
    left.axvspan(0, run.load_end, color="tab:orange", alpha=0.12, lw=0)
    left.plot(times, depths, color="tab:blue", lw=1.4, label="depth (backlog + held + senders)")
    left.plot(
        times,
        [cfg.target_depth * n for n in counts],
        color="tab:blue",
        lw=1,
        ls=":",
        label=f"target depth x replicas ({cfg.target_depth:g} per replica)",
    )
    left.set_xlabel("time since the load started (s)")
    left.set_ylabel("depth (messages)", color="tab:blue")
    left.tick_params(axis="y", colors="tab:blue")
    left.set_ylim(bottom=0)
    left.grid(visible=True, alpha=0.3)
    right = left.twinx()
    right.step(times, counts, where="post", color="tab:red", lw=2, label="replicas")
    right.set_ylabel("replicas", color="tab:red")
    right.tick_params(axis="y", colors="tab:red")
    right.set_ylim(0, cfg.max + 1)
    right.set_yticks(range(cfg.max + 1))
    for at, direction, _n, _why in run.decisions:
        right.axvline(at, color="tab:red", alpha=0.25, lw=0.8, ls="--")
        right.annotate(
            "+" if direction == "out" else "-",
            (at, cfg.max + 0.55),
            ha="center",
            va="center",
            color="tab:red",
            fontsize=9,
        )
    handles = left.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    load = mpl.patches.Patch(color="tab:orange", alpha=0.25)
    left.legend(
        [*handles[0], *more[0], load],
        [
            *handles[1],
            *more[1],
            f"offered load: {run.offered:,.0f} msgs/s ({OVERLOAD:g}x one replica)",
        ],
        loc="upper right",
        fontsize=9,
    )
    left.set_title(
        f"cfactor autoscaling: step load of {OVERLOAD:g}x one replica for "
        f"{run.load_end:.0f} s (dashed lines: decisions, + out / - in)",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)


# -- the benchmark ----------------------------------------------------------------------------


async def benchmark(sizes: Sizes, source: str, plot_path: Path) -> tuple[int, dict[str, Any]]:
    facts = harness.machine_facts(asyncio.get_running_loop(), source)
    cfg = STEP_CONFIG
    harness.print_header("cfactor autoscaling benchmark", facts)
    print(
        f"- worker: awaits asyncio.sleep({SERVICE_S:g}) per message; step load "
        f"{OVERLOAD:g}x the single-replica throughput for {sizes.load_s:g} s, "
        f"{sizes.step_runs} run(s); throughput {sizes.throughput_runs} run(s) per N, "
        f"{sizes.window_s:g} s window after {sizes.warmup_s:g} s warm-up"
    )
    print(
        f"- step config: min={cfg.min} max={cfg.max} target_depth={cfg.target_depth:g} "
        f"scale_out_window_s={cfg.scale_out_window_s:g} "
        f"scale_in_cooldown_s={cfg.scale_in_cooldown_s:g} "
        f"low_watermark={cfg.effective_low_watermark:g} max_step_out=double "
        f"max_step_in={cfg.max_step_in} report_interval_s={cfg.report_interval_s:g} "
        f"in_flight={cfg.in_flight} backlog=1000 (the defaults but target_depth)"
    )
    print(flush=True)

    integrity = {"lost": 0, "twice": 0, "unknown": 0}

    def account(check: tuple[int, int, int]) -> None:
        for key, value in zip(("lost", "twice", "unknown"), check, strict=True):
            integrity[key] += value

    # 1. Single-replica throughput: the unit of everything else.
    progress("throughput, 1 replica ...")
    counts = (1, 2, 4, 8)
    through: dict[int, list[float]] = {n: [] for n in counts}
    for _ in range(sizes.throughput_runs):
        gc.collect()
        value, check = await cf_throughput(1, sizes)
        through[1].append(value)
        account(check)
    one = statistics.median(through[1])
    rate = OVERLOAD * one

    # 2. The step load.
    runs: list[StepRun] = []
    for r in range(sizes.step_runs):
        last = r == sizes.step_runs - 1
        to_min = sizes.scale_in_to_min and last
        progress(
            f"step load {r + 1}/{sizes.step_runs}: {rate:,.0f} msgs/s for {sizes.load_s:g} s"
            + (", then the scale-in to min" if to_min else "")
            + " ..."
        )
        gc.collect()
        settle = 0.3 + cfg.report_interval_s * r / max(1, sizes.step_runs)
        run = await step_run(rate, sizes, settle, to_min)
        runs.append(run)
        integrity["lost"] += run.lost
        integrity["twice"] += run.twice
        integrity["unknown"] += run.unknown

    # 3. Throughput with N fixed replicas, and the raw asyncio ceiling.
    raw: dict[int, float] = {}
    for n in counts:
        if n != 1:
            progress(f"throughput, {n} replicas ...")
            for _ in range(sizes.throughput_runs):
                gc.collect()
                value, check = await cf_throughput(n, sizes)
                through[n].append(value)
                account(check)
        raw[n] = await raw_throughput(n, sizes)

    windows = cfg.scale_out_window_s
    doublings = math.ceil(math.log2(cfg.max / cfg.min))
    first_out = Row(
        "step load: start -> first scale-out decision",
        "s",
        "<= 2 s",
        ("<=", 2.0),
        [r.first_out for r in runs],
        [windows for _ in runs],
    )
    max_decided = Row(
        f"step load: start -> decision for max ({cfg.max} replicas)",
        "s",
        cf_runs=[r.max_decided for r in runs],
        base_runs=[doublings * windows for _ in runs],
    )
    max_running = Row(
        f"step load: start -> {cfg.max} replicas running",
        "s",
        cf_runs=[r.max_running for r in runs],
        base_runs=[doublings * windows for _ in runs],
    )
    caught_up = Row(
        "step load: start -> backlog back within target (depth <= target x replicas)",
        "s",
        cf_runs=[r.caught_up for r in runs],
    )
    peak = Row("step load: peak depth (messages)", "msgs", cf_runs=[r.peak_depth for r in runs])
    drained = Row(
        "step load: load end -> last message handled",
        "s",
        cf_runs=[r.drained for r in runs],
        base_runs=[SERVICE_S for _ in runs],
    )
    first_in = Row(
        f"depth/replica under the low watermark ({cfg.effective_low_watermark:g}) "
        "-> first scale-in decision",
        "s",
        cf_runs=[r.in_after_under for r in runs],
        base_runs=[cfg.scale_in_cooldown_s for _ in runs],
    )
    at_min = Row(
        f"first scale-in -> back at min ({cfg.min}; last run, not with --quick)",
        "s",
        cf_runs=[r.at_min for r in runs if not math.isnan(r.at_min)],
        base_runs=[
            (cfg.max - cfg.min - 1) * cfg.scale_in_cooldown_s
            for r in runs
            if not math.isnan(r.at_min)
        ],
    )
    under_since = Row(
        "step load: start -> depth/replica under the low watermark (load still on)",
        "s",
        cf_runs=[r.under_since for r in runs],
        base_runs=[r.load_end for r in runs],
    )
    first_in_start = Row(
        "step load: start -> first scale-in decision",
        "s",
        cf_runs=[r.first_in for r in runs],
        base_runs=[r.load_end + cfg.scale_in_cooldown_s for r in runs],
    )
    offered = Row(
        "step load: offered rate (msgs/s)",
        "rate",
        cf_runs=[r.offered for r in runs],
        base_runs=[rate for _ in runs],
    )
    lost = Row("messages lost (all runs)", "count", "0", ("<=", 0.0), [float(integrity["lost"])])
    twice = Row(
        "messages handled twice (all runs)", "count", "0", ("<=", 0.0), [float(integrity["twice"])]
    )
    out_after_in = Row(
        "step load: scale-outs after the first scale-in (oscillation)",
        "count",
        "0",
        ("<=", 0.0),
        [float(r.out_after_in) for r in runs],
    )
    tput_rows = [
        Row(
            f"throughput, {n} fixed replica{'s' if n > 1 else ''} (msgs/s)",
            "rate",
            cf_runs=through[n],
            base_runs=[n * one],
        )
        for n in counts
    ]
    rows = [
        first_out,
        max_decided,
        max_running,
        caught_up,
        drained,
        first_in,
        at_min,
        *tput_rows,
        lost,
        twice,
        out_after_in,
    ]
    diagnostics = [
        offered,
        peak,
        under_since,
        first_in_start,
        *(
            Row(
                f"raw asyncio: {n} task{'s' if n > 1 else ''} pulling from one "
                "asyncio.Queue, same sleep (msgs/s)",
                "rate",
                cf_runs=[raw[n]],
                base_runs=[n * one],
            )
            for n in counts
        ),
    ]

    print(
        f"Single-replica throughput (median of {len(through[1])}): {one:,.1f} msgs/s, so the "
        f"step load offers {rate:,.0f} msgs/s."
    )
    print()
    harness.print_section(harness.RESULTS, main_table(rows))
    harness.print_section(harness.EVERY_RUN, harness.runs_table(rows + diagnostics, fmt))
    harness.print_section("Diagnostics (not targets)", main_table(diagnostics))
    print(
        "Baselines: first scale-out = the scale-out window (the policy's floor); max = "
        f"{doublings} doublings one window apart; last message = one service time; first "
        f"scale-in = the cooldown; back at min = {cfg.max - cfg.min - 1} more scale-ins one "
        "cooldown apart; throughput = N x the single-replica throughput measured in this "
        "run (so the 1-replica row is 100 % by construction); under the watermark = the "
        "load's end; start -> first scale-in = the load's end + the cooldown."
    )
    print()
    print("## Decisions (times from the load's start; reasons as the controller logged them)")
    print()
    for i, run in enumerate(runs, 1):
        print(
            f"Run {i}: {run.sent:,} messages sent in {run.load_end:.2f} s "
            f"({run.offered:,.0f}/s); lost {run.lost}, twice {run.twice}, "
            f"unknown {run.unknown}; changes of direction {run.reversals}"
        )
        for at, direction, n, why in run.decisions:
            print(f"- {at:7.2f} s {direction:>3} -> {n}: {why}")
        for note in run.notes:
            print(f"- NOTE: {note}")
        print()
    plotted = plot(runs[-1], plot_path) if runs else "no run"
    print(f"Plot (last run): {plotted}")
    print(flush=True)

    missed = [r for r in rows if r.met is False]
    document = {
        "facts": facts,
        "sizes": sizes.__dict__,
        "config": {
            "min": cfg.min,
            "max": cfg.max,
            "target_depth": cfg.target_depth,
            "scale_out_window_s": cfg.scale_out_window_s,
            "scale_in_cooldown_s": cfg.scale_in_cooldown_s,
            "low_watermark": cfg.effective_low_watermark,
            "max_step_in": cfg.max_step_in,
            "report_interval_s": cfg.report_interval_s,
            "in_flight": cfg.in_flight,
        },
        "single_replica_rate": one,
        "offered_rate": rate,
        "metrics": [row_json(r) for r in rows],
        "diagnostics": [row_json(r) for r in diagnostics],
        "runs": [
            {
                "sent": r.sent,
                "decisions": [
                    {"at": at, "direction": d, "replicas": n, "reason": why}
                    for at, d, n, why in r.decisions
                ],
                "samples": r.samples,
                "notes": r.notes,
            }
            for r in runs
        ],
        "plot": plotted,
    }
    return (1 if missed else 0), document


def row_json(r: Row) -> dict[str, Any]:
    clean = harness.clean
    return {
        "label": r.label,
        "unit": r.unit,
        "cfactor": clean(r.cf),
        "baseline": clean(r.base),
        "ratio": clean(r.ratio),
        "cfactor_runs": [clean(v) for v in r.cf_runs],
        "baseline_runs": [clean(v) for v in r.base_runs],
        "target": r.target,
        "met": r.met,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = harness.parser(
        "Measure cfactor's autoscaler on a replicated I/O-bound actor (10 ms per "
        "message): reaction to a step load of 5x one replica (first scale-out, max, "
        "drain, scale-in), throughput with 1/2/4/8 fixed replicas against N x one "
        "replica, exactly-once delivery; print a table and save a PNG plot of depth "
        "and replicas over time. Exits 1 when a target is missed.",
        "one short step run, no wait for the scale-in to min (under ~40 s)",
        repeat=False,
    )
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="PATH",
        default=HERE / "autoscale.png",
        help="where to save the PNG (default benchmarks/autoscale.png)",
    )
    return harness.parse(parser, argv)


def main() -> int:
    args = parse_args()
    sizes = QUICK if args.quick else FULL
    return harness.run_and_finish(benchmark(sizes, harness.source_version(), args.plot), args.json)


if __name__ == "__main__":
    sys.exit(main())
