"""What the benchmark scripts share: the header, the tables, number formatting, the end.

Imported as ``import harness`` by ``benchmarks/core.py``, ``transport.py``, ``replicas.py``,
``cluster.py``, ``flow.py`` and ``autoscale.py`` (a script's directory is on ``sys.path``
when it is run as ``.venv/bin/python benchmarks/X.py``). Nothing here measures anything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol

import cfactor as cf

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterable

ROOT = Path(__file__).resolve().parent.parent
STARTED = perf_counter()


def progress(text: str) -> None:
    """A line on stderr, stamped with the seconds since the script started."""
    print(f"[{perf_counter() - STARTED:5.1f} s] {text}", file=sys.stderr, flush=True)


# -- bounds -----------------------------------------------------------------------------------


def remaining(deadline: float) -> float:
    """Seconds left until ``deadline`` (a ``perf_counter`` time), at least 1 ms."""
    return max(0.001, deadline - perf_counter())


def cancel_on_sigterm() -> None:
    """Make SIGTERM end the run like Ctrl-C: it cancels the current task, whose finally
    blocks stop what the run started."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel the tasks still running and wait until they are done."""
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)


# -- figures ----------------------------------------------------------------------------------


async def raw_timeout_lateness(count: int, timeout: float) -> list[float]:
    """The event loop's own floor for ask lateness, the baseline of the ask-deadline
    figures: ``count`` concurrent bare ``asyncio.timeout(timeout)`` waits on futures that
    never complete, each late by when it ended minus (when it began + ``timeout``)."""
    loop = asyncio.get_running_loop()

    async def one() -> float:
        started = loop.time()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await loop.create_future()
        return max(0.0, loop.time() - started - timeout)

    tasks = [loop.create_task(one()) for _ in range(count)]
    await asyncio.wait(tasks, timeout=timeout + 30)
    return [task.result() for task in tasks if task.done()]


def median(runs: list[float]) -> float:
    """The median of the runs that are numbers; nan when there are none."""
    values = [v for v in runs if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def ratio(cf_value: float, base_value: float) -> float:
    """cfactor's figure over the baseline's; nan when either is missing or the base is 0."""
    if math.isnan(cf_value) or math.isnan(base_value) or base_value == 0:
        return math.nan
    return cf_value / base_value


def clean(value: float) -> float | None:
    """nan as None, for JSON."""
    return None if math.isnan(value) else value


class Figures:
    """The medians and ratio of a row's runs; a script's row dataclass inherits them.

    The row declares ``cf_runs`` and ``base_runs`` (cfactor's and the baseline's runs).
    """

    cf_runs: list[float]
    base_runs: list[float]

    @property
    def cf(self) -> float:
        return median(self.cf_runs)

    @property
    def base(self) -> float:
        return median(self.base_runs)

    @property
    def ratio(self) -> float:
        return ratio(self.cf, self.base)


def fmt(value: float, unit: str) -> str:
    """A figure of core.py or transport.py: "rate" (k/s, M/s), "us" (µs), else bytes."""
    if math.isnan(value):
        return "n/a"
    if unit == "rate":
        if value >= 1e6:
            return f"{value / 1e6:.2f} M/s"
        return f"{value / 1e3:.1f} k/s"
    if unit == "us":
        return f"{value:.1f} µs"
    return f"{value:,.0f} B"


def fmt_ratio(value: float, unit: str, *, fine: bool = False) -> str:
    """A ratio: a percentage for rates (two decimals below 1 % when ``fine``), else "x"."""
    if math.isnan(value):
        return "n/a"
    if unit == "rate":
        return f"{value * 100:.2f} %" if fine and value < 0.01 else f"{value * 100:.0f} %"
    return f"{value:.2f}x"


def spread(runs: list[float]) -> str:
    """Half the range of the runs that are numbers, relative to their median."""
    values = [v for v in runs if not math.isnan(v)]
    if len(values) < 2:
        return "-"
    mid = statistics.median(values)
    return f"±{(max(values) - min(values)) / 2 / mid * 100:.0f} %" if mid else "-"


def met_flag(met: bool | None) -> str:
    return "-" if met is None else ("yes" if met else "NO")


# -- tables -----------------------------------------------------------------------------------


def markdown_table(header: list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        parts = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "| " + " | ".join(parts) + " |"

    rule = [
        "-" * (widths[i] - 1) + ":" if i in right else "-" * widths[i] for i in range(len(header))
    ]
    return "\n".join([line(header), line(rule), *(line(row) for row in rows)])


def results_table(rows: list[list[str]]) -> str:
    """The main table; each row is [metric, cfactor, baseline, ratio, target, met?]."""
    header = ["metric", "cfactor", "baseline", "ratio", "target", "met?"]
    return markdown_table(header, rows, right={1, 2, 3})


def every_run_table(
    rows: Iterable[tuple[str, str, list[float], list[float]]],
    fmt: Callable[[float, str], str] = fmt,
) -> str:
    """The every-run table, from (label, unit, cfactor runs, baseline runs) per metric."""
    body = [
        [
            label,
            ", ".join(fmt(v, unit) for v in cf_runs) or "-",
            spread(cf_runs),
            ", ".join(fmt(v, unit) for v in base_runs) or "-",
            spread(base_runs),
        ]
        for label, unit, cf_runs, base_runs in rows
    ]
    header = ["metric", "cfactor runs", "spread", "baseline runs", "spread"]
    return markdown_table(header, body, right={2, 4})


class HasRuns(Protocol):
    label: str
    unit: str
    cf_runs: list[float]
    base_runs: list[float]


def runs_table(rows: Iterable[HasRuns], fmt: Callable[[float, str], str] = fmt) -> str:
    """The every-run table of rows that carry their label, unit and both sides' runs."""
    return every_run_table(((r.label, r.unit, r.cf_runs, r.base_runs) for r in rows), fmt)


#: The titles of the two tables every script prints.
RESULTS = "Results (median of runs; ratio = cfactor / baseline)"
EVERY_RUN = "Every run (spread = half the range, relative to the median)"


def print_section(title: str, body: str) -> None:
    """``## title``, then the body, each followed by a blank line."""
    print(f"## {title}")
    print()
    print(body)
    print()


# -- the header -------------------------------------------------------------------------------


def source_version(
    dirs: tuple[str, ...] = ("cfactor",), dirty: str = "cfactor/ has uncommitted changes"
) -> str:
    """The commit measured, and ``dirty`` after it when any of ``dirs`` differs from it."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", *dirs],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"{commit} ({dirty})" if changed else commit


def machine_facts(loop: asyncio.AbstractEventLoop, source: str) -> dict[str, Any]:
    try:
        import uvloop

        uvloop_version = uvloop.__version__
    except ImportError:
        uvloop_version = "not installed"
    cpu_model = platform.processor() or "unknown"
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu_model = text.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        memory_gib = f"{psutil.virtual_memory().total / 2**30:.1f} GiB"
    except ImportError:
        memory_gib = "unknown"
    return {
        "command": " ".join(sys.orig_argv),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": sys.version.split()[0] + f" ({platform.python_implementation()})",
        "uvloop": uvloop_version,
        "cfactor": f"{cf.__version__}, commit {source}",
        "event_loop": f"{type(loop).__module__}.{type(loop).__qualname__}",
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model,
        "memory": memory_gib,
        "platform": platform.platform(),
        "load_average": "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg()),
    }


def print_header(title: str, facts: dict[str, Any]) -> None:
    """``# title`` and one ``- name: value`` line per fact (the sizes lines come next)."""
    print(f"# {title}")
    print()
    for name, value in facts.items():
        print(f"- {name}: {value}")


# -- the command line and the end -------------------------------------------------------------


def parser(description: str, quick_help: str, *, repeat: bool = True) -> argparse.ArgumentParser:
    """The options every script has: --quick, --json and (unless told not) --repeat."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    if repeat:
        p.add_argument(
            "--repeat", type=int, default=3, metavar="N", help="runs per figure (default 3)"
        )
    return p


def parse(p: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    args = p.parse_args(argv)
    if getattr(args, "repeat", 1) < 1:
        p.error("--repeat must be at least 1")
    return args


def run_and_finish(
    benchmark: Coroutine[Any, Any, tuple[int, dict[str, Any]]], json_path: Path | None
) -> int:
    """Run a script's benchmark, which returns (exit status, JSON document), then finish."""
    status, document = cf.run(benchmark)
    finish(json_path, document)
    return status


def finish(json_path: Path | None, document: dict[str, Any]) -> None:
    """Write the JSON document when asked to, and say the run is done."""
    if json_path is not None:
        json_path.write_text(json.dumps(document, indent=2) + "\n")
        progress(f"wrote {json_path}")
    progress("done")
