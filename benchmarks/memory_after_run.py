"""Does a process give memory back after a flow run? (``cfactor.flow.threads``)

Runs ``examples/gigasort.py``'s flow embedded, three times in one actor system, and prints
this process's RSS right after each run and 1.5 s later: with the flow's trim (a second
after the last replica stopped, ``malloc_trim(0)``), and, in a fresh child process, with
the trim switched off (the baseline: what glibc keeps on its own).

    .venv/bin/python benchmarks/memory_after_run.py            # 1,000,000 records a run
    .venv/bin/python benchmarks/memory_after_run.py --quick    # 200,000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import harness

import cfactor as cf
from cfactor.flow.threads import FlowThreads

if str(harness.ROOT) not in sys.path:
    sys.path.insert(0, str(harness.ROOT))
from examples import gigasort

RUNS = 3


def rss_mib() -> float:
    with Path("/proc/self/status").open(encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def measure(records: int) -> list[tuple[float, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as out:
        async with cf.ActorSystem() as system:
            for run in range(RUNS):
                app = gigasort.build(records, run, 4, out)
                result = await app.run(system, progress=False)
                if gigasort.verify(result):
                    raise SystemExit(f"run {run}: {gigasort.verify(result)}")
                right_after = rss_mib()
                await asyncio.sleep(1.5)
                rows.append((right_after, rss_mib()))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200,000 records a run")
    parser.add_argument("--child", choices=("trim", "no-trim"), help=argparse.SUPPRESS)
    parser.add_argument("--records", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child == "no-trim":
            FlowThreads.release_memory_soon = lambda self: None  # type: ignore[method-assign]
        print(json.dumps({"start": rss_mib(), "rows": cf.run(measure(args.records))}))
        return 0
    records = 200_000 if args.quick else 1_000_000
    found = {}
    for mode in ("no-trim", "trim"):  # each in a fresh process
        out = subprocess.run(
            [sys.executable, __file__, "--child", mode, "--records", str(records)],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        found[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"gigasort embedded, {records:,} records a run, {RUNS} runs in one system (RSS, MiB)")
    print("| run | right after, no trim | 1.5 s later | right after, trim | 1.5 s later |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for run in range(RUNS):
        base, trim = found["no-trim"]["rows"][run], found["trim"]["rows"][run]
        print(f"| {run + 1} | {base[0]:.0f} | {base[1]:.0f} | {trim[0]:.0f} | {trim[1]:.0f} |")
    print(
        f"at start: {found['no-trim']['start']:.0f} MiB (no trim), "
        f"{found['trim']['start']:.0f} MiB (trim); "
        f"after the last run: {found['no-trim']['rows'][-1][1]:.0f} vs "
        f"{found['trim']['rows'][-1][1]:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
