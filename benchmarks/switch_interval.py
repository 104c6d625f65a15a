"""Why cfactor's CLI processes set a 50 ms GIL switch interval (docs/flow.md).

Runs ``benchmarks/flow.py``'s embedded wordcount flow (one process: a source replica,
two count replicas, two merges; sync Node functions in worker threads) on the same text
in fresh child processes, alternating Python's default switch interval (5 ms) with the
CLI's (50 ms), and prints the median throughput of each next to a plain
``collections.Counter`` over the same text in the same child.

    .venv/bin/python benchmarks/switch_interval.py            # 30 MB, 5 runs of each
    .venv/bin/python benchmarks/switch_interval.py --quick    # 10 MB, 2 runs of each
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import flow as bench  # benchmarks/flow.py: this script's directory is on sys.path

import cfactor as cf

DEFAULT_S = 0.005  # Python's default
CLI_S = 0.05  # cfactor.tools.local_cluster.SWITCH_INTERVAL_S


def child(interval: float, path: Path, megabytes: int) -> None:
    """One measurement in this fresh process; prints one JSON line."""
    sys.setswitchinterval(interval)
    trace = Path(tempfile.mkdtemp(prefix="cfactor-switch-"))
    sizes = bench.Sizes(
        text_mb=megabytes,
        block=1 << 20,
        counters=2,
        merges=2,
        records=0,
        embedded_records=0,
        sort_partitions=1,
        example_sort=False,
        deadline_s=120.0,
    )
    app = bench.build_wordcount(path, sizes, trace)
    started = time.perf_counter()
    result = cf.run(app.run(progress=False))
    flow_s = time.perf_counter() - started
    started = time.perf_counter()
    expected = Counter(path.read_text(encoding="utf-8").split())
    counter_s = time.perf_counter() - started
    problem = bench.check_counts(result.output, expected)
    if problem:
        raise SystemExit(f"wrong counts: {problem}")
    size = path.stat().st_size / 1e6
    print(json.dumps({"flow": size / flow_s, "counter": size / counter_s}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 MB, 2 runs of each")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(float(args.child[0]), Path(args.child[1]), int(args.child[2]))
        return 0
    megabytes, repeat = (10, 2) if args.quick else (30, 5)
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "text.txt"
        bench.write_text(path, megabytes * 1_000_000)
        runs: dict[float, list[dict[str, float]]] = {DEFAULT_S: [], CLI_S: []}
        for i in range(repeat):
            for interval in (DEFAULT_S, CLI_S):  # alternating: the machine's noise is shared
                out = subprocess.run(
                    [sys.executable, __file__, "--child", str(interval), str(path), str(megabytes)],
                    capture_output=True,
                    text=True,
                    timeout=300,
                    check=True,
                )
                runs[interval].append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(
                    f"run {i + 1}/{repeat} at {interval * 1000:g} ms: {runs[interval][-1]}",
                    file=sys.stderr,
                )
    print(f"embedded wordcount, {megabytes} MB, median of {repeat} runs each (MB/s)")
    print("| switch interval | flow | Counter in the same child | flow / Counter |")
    print("| --- | ---: | ---: | ---: |")
    medians = {}
    for interval, rows in runs.items():
        flow_mb = statistics.median(r["flow"] for r in rows)
        counter_mb = statistics.median(r["counter"] for r in rows)
        medians[interval] = flow_mb
        flows = ", ".join(f"{r['flow']:.1f}" for r in rows)
        print(
            f"| {interval * 1000:g} ms | {flow_mb:.1f} ({flows}) | {counter_mb:.1f} | "
            f"{flow_mb / counter_mb:.2f}x |"
        )
    print(f"50 ms against 5 ms: {medians[CLI_S] / medians[DEFAULT_S]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
