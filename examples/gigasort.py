"""Gigasort, CloudFlow's other example: sort N random 100-byte records by their 10-byte key.

    generate (a source) -> split (a map, 2 replicas) -> sort (a reduce, 4 partitions)

The source yields blocks of records; ``split`` cuts each block into 256 buckets by
the key's first byte; the buckets are partitioned by key range (bucket b goes to
partition b * 4 // 256), so partition p holds only keys below partition p + 1's.
Each partition sorts its records and writes them to ``OUT/part-PPPPP``. The check:
every part is sorted, the parts follow each other in key order, and the records'
checksum (the sum of their CRC-32s, which ignores order) and count match the input's,
which the source keeps in the session's store.

    python examples/gigasort.py                          # 100,000 records embedded
    python examples/gigasort.py --records 10000000       # 1 GB
    python examples/gigasort.py --cluster http://127.0.0.1:2379
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

import cfactor as cf

RECORD = 100
KEY = 10
BLOCK_RECORDS = 10_000  # 1 MB per block
PARTITIONS = 4


def checksum(blob: bytes) -> int:
    return sum(zlib.crc32(blob[i : i + RECORD]) for i in range(0, len(blob), RECORD))


def generate(ctx: cf.Context, arg: tuple[int, int, str]) -> Any:
    """The source: ``n`` records from ``seed``, in blocks. It leaves the output
    directory and the input's count and checksum in the session's store."""
    n, seed, out_dir = arg
    ctx.store.put("out", out_dir)
    rng = random.Random(seed)
    total = 0
    for start in range(0, n, BLOCK_RECORDS):
        blob = rng.randbytes(RECORD * min(BLOCK_RECORDS, n - start))
        total += checksum(blob)
        yield blob
    ctx.store.put("input", (n, total))


def split(ctx: cf.Context, blob: bytes) -> dict[int, bytes]:
    """A block -> {first key byte: its records}."""
    buckets: dict[int, list[bytes]] = {}
    for i in range(0, len(blob), RECORD):
        buckets.setdefault(blob[i], []).append(blob[i : i + RECORD])
    return {b: b"".join(records) for b, records in buckets.items()}


def by_range(bucket: int, n: int) -> int:
    """Key-range partitioning: bucket (first key byte) b of 256 -> partition."""
    return bucket * n // 256


def sort_partition(ctx: cf.Context, parts: list[dict[int, bytes]]) -> tuple[Any, ...]:
    """Sort this partition's records and write them; what the check needs.

    It sorts one bucket (first key byte) at a time, in bucket order: that is the
    partition's order, it holds one bucket's records at a time, and no single sort
    runs long. (A sort is one C call that keeps the GIL: sorting a whole 250 MB
    partition at once starved the member's event loop for seconds, long enough for
    its peers to count it lost.)
    """
    buckets: dict[int, list[bytes]] = {}
    for part in parts:
        for bucket, chunk in part.items():
            buckets.setdefault(bucket, []).append(chunk)
    target = Path(ctx.store.get("out")) / f"part-{ctx.index:05d}"
    count = crc = 0
    first = last = b""
    with target.open("wb") as file:
        for bucket in sorted(buckets):
            blob = b"".join(buckets.pop(bucket))
            records = [blob[i : i + RECORD] for i in range(0, len(blob), RECORD)]
            del blob
            records.sort(key=lambda r: r[:KEY])
            file.writelines(records)
            first = first or records[0][:KEY]
            last = records[-1][:KEY]
            count += len(records)
            crc += sum(zlib.crc32(r) for r in records)
    return (ctx.index, count, crc, first, last, str(target))


OUT_DIR = str(Path(tempfile.gettempdir()) / "cfactor-gigasort")


def build(
    records: int = 100_000, seed: int = 1, partitions: int = PARTITIONS, out: str = OUT_DIR
) -> cf.App:
    Path(out).mkdir(parents=True, exist_ok=True)
    app = cf.App("gigasort")
    flow = app.session("s1").flow("sort")
    flow.add(generate, "generate", (records, seed, str(Path(out).resolve()))).map(
        split, "split", 2
    ).reduce(sort_partition, "sort", partitions, partition=by_range)
    return app


app = build()


def verify(result: cf.RunResult) -> list[str]:
    """What is wrong with the output (nothing, if the list is empty)."""
    problems = []
    parts = sorted(result.output)
    n, total = result.stores["s1"]["input"]
    if sum(p[1] for p in parts) != n:
        problems.append(f"{sum(p[1] for p in parts)} records out, {n} in")
    if sum(p[2] for p in parts) != total:
        problems.append("the checksum of the output differs from the input's")
    for (_, count, _, _, last, _), (index, _, _, first, _, _) in itertools.pairwise(parts):
        if count and first and last > first:
            problems.append(f"partition {index} starts below where the one before ended")
    for index, _, _, _, _, path in parts:
        data = Path(path).read_bytes()
        keys = [data[i : i + KEY] for i in range(0, len(data), RECORD)]
        if keys != sorted(keys):
            problems.append(f"partition {index} is not sorted")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000, help="records (default 100000)")
    parser.add_argument("--partitions", type=int, default=PARTITIONS, help="sort partitions")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=OUT_DIR, help=f"output directory (default {OUT_DIR})")
    parser.add_argument("--cluster", metavar="ETCD_URL", help="run on this cluster's members")
    parser.add_argument("--name", default="local", help="the cluster's name (default: local)")
    args = parser.parse_args()
    if args.records < 1 or args.partitions < 1:
        parser.error("--records and --partitions must be at least 1")
    the_app = build(args.records, args.seed, args.partitions, args.out)
    cluster = cf.Cluster(etcd=args.cluster, name=args.name) if args.cluster else None
    result = cf.run(the_app.run(cluster=cluster))
    problems = verify(result)
    rate = args.records / result.seconds if result.seconds else 0.0
    print(
        f"sorted {args.records} records into {args.partitions} partitions "
        f"in {result.seconds:.2f} s ({rate:,.0f} records/s)"
    )
    print("sorted and complete: " + ("yes" if not problems else "NO: " + "; ".join(problems)))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
