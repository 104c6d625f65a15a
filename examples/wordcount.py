"""Word count, CloudFlow's first example, as a cfactor flow.

    read (a source, 2 replicas) -> count (a map, 2 replicas) -> merge (a reduce, 2 partitions)

Each source replica yields its share of the text in blocks of lines (on a cluster,
each reads its share where it runs); each ``count`` replica turns a block
into a word -> count dict; those dicts are split by word across the two ``merge``
partitions, and each partition adds up its words. The result is checked against
``collections.Counter`` on the same text.

    python examples/wordcount.py                      # embedded, generated text
    python examples/wordcount.py --file big.txt
    python examples/wordcount.py --cluster http://127.0.0.1:2379   # on `cfactor cluster start`
    cfactor run examples/wordcount.py                 # the same app, from the CLI
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import cfactor as cf

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "actor",
    "flow",
    "node",
    "member",
    "replica",
]
BLOCK = 1 << 16  # bytes of text per item


def make_text(n_words: int, seed: int = 7) -> str:
    """Deterministic text: ``n_words`` words, a dozen per line."""
    rng = random.Random(seed)
    words = rng.choices(WORDS + [f"w{i}" for i in range(500)], k=n_words)
    return "\n".join(" ".join(words[i : i + 12]) for i in range(0, n_words, 12)) + "\n"


def read_text(ctx: cf.Context, source: str | int) -> Any:
    """The source: blocks of whole lines, from a file or generated (``source`` words).

    Each of the source's replicas reads its own share: replica ``ctx.index`` of
    ``ctx.replicas`` takes the lines that start in its slice of the bytes.
    """
    if isinstance(source, int):
        text = make_text(source)
        for number, start in enumerate(range(0, len(text), BLOCK)):
            if number % ctx.replicas != ctx.index:
                continue
            # Whole lines: from the first line starting in the block to the last one.
            newline = text.find("\n", start - 1)
            begin = 0 if start == 0 else len(text) if newline < 0 else newline + 1
            end = text.find("\n", start + BLOCK - 1)
            end = len(text) if end < 0 else end + 1
            if begin < end:
                yield text[begin:end]
        return
    path = Path(source)
    size = path.stat().st_size
    share = -(-size // ctx.replicas)
    first, stop = ctx.index * share, min(size, (ctx.index + 1) * share)
    with path.open("rb") as file:
        file.seek(max(first - 1, 0))
        if first > 0:
            file.readline()  # the line that starts before our slice is the previous share's
        while file.tell() < stop:
            block = file.read(min(BLOCK, stop - file.tell()))
            if not block.endswith(b"\n"):
                block += file.readline()  # end on a line boundary
            yield block.decode("utf-8")


def count_words(ctx: cf.Context, block: str) -> dict[str, int]:
    return dict(Counter(block.split()))


def merge_counts(ctx: cf.Context, counts: list[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for part in counts:
        total.update(part)
    ctx.log.info("partition %d: %d distinct words", ctx.index, len(total))
    return dict(total)


def build(source: str | int = 200_000) -> cf.App:
    app = cf.App("wordcount")
    flow = app.session("s1").flow("f1")
    flow.add(read_text, "read", source, 2).map(count_words, "count", 2).reduce(
        merge_counts, "merge", 2
    )
    return app


app = build()  # `cfactor run` and cluster members find the app here


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", help="count the words of this file (default: generated text)")
    parser.add_argument(
        "--words", type=int, default=200_000, help="generated words (default 200000)"
    )
    parser.add_argument("--cluster", metavar="ETCD_URL", help="run on this cluster's members")
    parser.add_argument("--name", default="default", help="the cluster's name (default: default)")
    args = parser.parse_args()
    source: str | int = str(Path(args.file).resolve()) if args.file else args.words
    the_app = build(source)
    cluster = cf.Cluster(etcd=args.cluster, name=args.name) if args.cluster else None
    result = cf.run(the_app.run(cluster=cluster))

    counts: Counter[str] = Counter()
    for partition in result.output:
        counts.update(partition)
    text = (
        Path(source).read_text(encoding="utf-8") if isinstance(source, str) else make_text(source)
    )
    expected = Counter(text.split())
    print(f"{sum(counts.values())} words, {len(counts)} distinct, in {result.seconds:.2f} s")
    print("top 5:", counts.most_common(5))
    same = counts == expected
    print(f"matches collections.Counter: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
