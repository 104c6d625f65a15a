"""What splitting a dict output across reduce partitions costs a flow replica.

``cfactor.flow.sending.Edge.put`` on dicts of 5,000 word -> count entries bound for 2
partitions (the shape of a wordcount map's output), in ns per key, next to the plain
Python a user would write for the same split (crc32 of each word, one sub-dict per
partition) measured in the same run.

    .venv/bin/python benchmarks/edge_put.py            # 200 dicts, 5 runs
    .venv/bin/python benchmarks/edge_put.py --quick    # 40 dicts, 3 runs
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import zlib
from time import perf_counter
from typing import Any

from cfactor.flow.sending import Edge

KEYS = 5000
PARTITIONS = 2


class _Sink:
    """Stands in for an emitter: takes the full batches, sends nothing."""

    batch_items = 256

    def launch(self, edge: Any, target: int, items: list[Any]) -> None:
        pass


def dicts(n: int) -> list[dict[str, int]]:
    rng = random.Random(1)
    words = [f"w{i}" for i in range(20_000)]
    return [{w: rng.randint(1, 9) for w in rng.sample(words, KEYS)} for _ in range(n)]


def with_edge(items: list[dict[str, int]]) -> float:
    edge = Edge("part", [None] * PARTITIONS, None, None)  # type: ignore[list-item]
    sink = _Sink()
    started = perf_counter()
    for item in items:
        edge.put(item, sink)  # type: ignore[arg-type]
    return perf_counter() - started


def plain(items: list[dict[str, int]]) -> float:
    crc32 = zlib.crc32
    started = perf_counter()
    for item in items:
        parts: list[dict[str, int]] = [{} for _ in range(PARTITIONS)]
        for word, count in item.items():
            parts[crc32(word.encode()) % PARTITIONS][word] = count
    return perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="40 dicts, 3 runs")
    args = parser.parse_args()
    n, repeat = (40, 3) if args.quick else (200, 5)
    items = dicts(n)
    keys = n * KEYS
    edge_runs, plain_runs = [], []
    for _ in range(repeat):  # alternating: the machine's noise is shared
        edge_runs.append(with_edge(items) / keys * 1e9)
        plain_runs.append(plain(items) / keys * 1e9)
    edge_ns, plain_ns = statistics.median(edge_runs), statistics.median(plain_runs)
    print(f"splitting {n} dicts of {KEYS} keys over {PARTITIONS} partitions, median of {repeat}")
    print("| measure | Edge.put | plain Python split | ratio |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| ns per key | {edge_ns:.0f} | {plain_ns:.0f} | {edge_ns / plain_ns:.2f}x |")
    print("runs (ns per key): Edge.put " + ", ".join(f"{v:.0f}" for v in edge_runs))
    print("runs (ns per key): plain    " + ", ".join(f"{v:.0f}" for v in plain_runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
