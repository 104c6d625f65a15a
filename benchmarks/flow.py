"""Flow benchmark: wordcount and gigasort on a real 2-member local cluster, same run as baselines.

Run it as ``.venv/bin/python benchmarks/flow.py`` (``--quick`` for a smoke run under a
minute, ``--json PATH`` to also write the figures, ``--repeat N`` runs per figure). It
starts a local cluster with ``cfactor cluster start --members 2`` (its own etcd, two
member processes) from an empty temporary directory, and this process is the flow's
driver: it joins the cluster and the flow layer pins the Node replicas round-robin on
the two members (``app.run(cluster=cf.Cluster(etcd=URL, name=NAME))``).

- **wordcount** on a generated text (``--quick``: 10 MB; full: 100 MB; Zipf-distributed
  words, s = 1.07 over a 100,000-word vocabulary, a dozen words a line). MB/s of the whole
  ``app.run()`` call (cluster join, placement, the run, leave), embedded and on the
  cluster. Baseline: a fresh plain-Python process reading the file and running
  ``collections.Counter(text.split())``, timed from the read to the Counter. The flow is
  ``read (1 MiB blocks) -> count (2 replicas) -> merge (2 partitions)``, with
  ``examples/wordcount.py``'s ``merge_counts``; ``count`` counts a block 256 KiB at a time
  into one Counter, splits the counts by word itself and emits one ``(partition, packed
  counts)`` pair per partition (why, and what the example's own shape costs, see
  ``WORDCOUNT_SHAPE``). Every
  run's counts are checked equal to the baseline's Counter (and the partitions disjoint).
  The example's own app (``examples.wordcount.build(path)``) runs once too, as a
  diagnostic.
- **gigasort** (``examples/gigasort.py``) of 10 million 100-byte records (1 GB;
  ``--quick``: 200,000): records/s of ``app.run()`` on the cluster (and embedded, once),
  checked with ``examples.gigasort.verify``; peak RSS of each member process and of this
  driver, sampled every 50 ms. Baseline: a fresh plain-Python process generating the same
  records and ``sorted()``-ing them by their 10-byte key (its peak RSS too). The example's
  default 4 sort partitions run once as a diagnostic (full mode).

Baselines run in child processes (``--child ...``), so each is a fresh interpreter like a
user's script and this process stays small for the driver's RSS. Every figure is the
median of ``--repeat`` runs, baseline and flow runs alternating. Every flow run is bounded
by a deadline; the cluster (supervisor, etcd, members) is stopped on exit, also on an
error or Ctrl-C: SIGTERM to the supervisor, then SIGKILL to its group and the members.
Node functions live in this file: members load it by its path (``cfactor.loading``),
and find ``harness`` and ``examples`` on the PYTHONPATH this script gives the cluster.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import itertools
import json
import math
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any, Self

import harness
from harness import progress

import cfactor as cf

THIS_FILE = Path(__file__).resolve()
HERE = THIS_FILE.parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # examples/ is not installed; members get it on PYTHONPATH
    sys.path.insert(0, str(ROOT))

from examples import gigasort, wordcount  # noqa: E402

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator

#: How long ``cfactor cluster start`` may take to print that the cluster is up.
CLUSTER_START_TIMEOUT_S = 60.0
#: RSS sampling period of the member processes and the driver.
SAMPLE_EVERY_S = 0.05
MIB = 2**20
#: At most this many gigasort runs (each takes ~40 s at 1 GB, baseline included).
GIGASORT_RUNS = 3
#: Characters of a wordcount block counted at a time (its words stay in the CPU cache).
SLICE = 256 * 1024

WORDCOUNT_SHAPE = """\
Why the wordcount flow is shaped as it is (each measured while writing this script):
- a source replica per member, each reading its share of the file where it runs (maps
  prefer a replica in their own process until it is busy), so few blocks cross members.
- count emits packed (partition, counts) pairs, not the example's dicts: a dict output bound
  for a reduce is split per key by the flow on the replica's event loop thread (Edge.put,
  ~150 ns per distinct word of each block, benchmarks/edge_put.py); a bytes value is
  sized exactly and sent as one.
- 1 MiB blocks counted 256 KiB at a time: every block sends each of its distinct words on
  to a merge, so small blocks multiply the merge's work (Zipf text: ~2.8 M words-per-block
  entries at 1 MiB, ~7.6 M at 64 KiB); and Counter(text.split()) over a big block is slower
  per word than over small slices (the slice's words stay in the CPU cache). Blocks must
  stay under the 4 MiB frame limit.
- 2 count replicas and 2 merge partitions: one of each per member. A member runs sync Node
  functions in threads of one process, so a second replica on the same member only adds
  GIL contention."""


@dataclass(frozen=True)
class Sizes:
    text_mb: int  # wordcount input, MB (10**6 bytes)
    block: int  # wordcount source block, bytes
    counters: int  # wordcount count replicas
    merges: int  # wordcount merge partitions
    records: int  # gigasort records on the cluster
    embedded_records: int  # gigasort records embedded (0: not run)
    sort_partitions: int
    example_sort: bool  # also run gigasort with the example's 4 partitions, once
    deadline_s: float  # bound of one flow run


FULL = Sizes(
    text_mb=100,
    block=2**20,
    counters=2,
    merges=2,
    records=10_000_000,
    embedded_records=10_000_000,
    sort_partitions=16,
    example_sort=True,
    deadline_s=240.0,
)
QUICK = Sizes(
    text_mb=10,
    block=2**20,
    counters=2,
    merges=2,
    records=200_000,
    embedded_records=200_000,
    sort_partitions=16,
    example_sort=False,
    deadline_s=60.0,
)


class BenchmarkError(Exception):
    """The cluster or a run did not do what the measurement needs (the message says what)."""


# -- the text -----------------------------------------------------------------------------------


def vocabulary(n: int, seed: int) -> list[str]:
    """``n`` distinct lowercase words; frequent (low-rank) words are shorter, as in English."""
    rng = random.Random(seed)
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    weights = [12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8]
    weights += [2.4, 2.4, 2.2, 2.0, 2.0, 1.9, 1.5, 1.0, 0.8, 0.15, 0.15, 0.1, 0.07]
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        mean = 2.5 + 1.2 * math.log10(len(out) + 1)
        length = max(1, min(14, int(rng.gauss(mean, 1.6))))
        word = "".join(rng.choices(letters, weights, k=length))
        if word not in seen:
            seen.add(word)
            out.append(word)
    return out


def write_text(path: Path, n_bytes: int, seed: int = 7) -> None:
    """At least ``n_bytes`` of Zipf-distributed words (s = 1.07, 100,000 words), 12 a line."""
    rng = random.Random(seed)
    words = vocabulary(100_000, seed)
    cum = list(itertools.accumulate(1 / r**1.07 for r in range(1, len(words) + 1)))
    size = 0
    with path.open("w", encoding="utf-8") as file:
        while size < n_bytes:
            chosen = rng.choices(words, cum_weights=cum, k=120_000)
            chunk = "\n".join(" ".join(chosen[i : i + 12]) for i in range(0, len(chosen), 12))
            size += file.write(chunk + "\n")


# -- the wordcount flow (its functions run on the members) ------------------------------------


def _trace(trace: str, what: str, started: float) -> None:
    """One line per call in this process's trace file: which phase ran when (wall clock)."""
    with Path(trace, f"trace-{os.getpid()}.txt").open("a") as file:
        file.write(f"{os.getpid()} {what} {started:.4f} {time.time():.4f}\n")


def read_blocks(ctx: cf.Context, arg: tuple[str, int, int, str]) -> Iterator[Any]:
    """The source: blocks of whole lines, each with the partition count and trace dir.
    Replica ``ctx.index`` of ``ctx.replicas`` reads the lines that start in its share of
    the file's bytes (on the cluster, one replica per member reads where it runs)."""
    path, block, partitions, trace = arg
    ctx.store.put("trace", trace)
    size = Path(path).stat().st_size
    share = -(-size // ctx.replicas)
    first, stop = ctx.index * share, min(size, (ctx.index + 1) * share)
    with Path(path).open("rb") as file:
        file.seek(max(first - 1, 0))
        if first > 0:
            file.readline()  # that line starts in the share before ours
        while file.tell() < stop:
            data = file.read(min(block, stop - file.tell()))
            if not data.endswith(b"\n"):
                data += file.readline()
            yield (data.decode("utf-8"), partitions, trace)


def pack(counts: dict[str, int]) -> bytes:
    """Word counts as one bytes value: the words' length, the words, the counts (uint32)."""
    words = " ".join(counts).encode()
    return len(words).to_bytes(4, "little") + words + array("I", counts.values()).tobytes()


def unpack(packed: bytes) -> dict[str, int]:
    size = int.from_bytes(packed[:4], "little")
    counts = array("I")
    counts.frombytes(packed[4 + size :])
    if not size:
        return {}
    return dict(zip(packed[4 : 4 + size].decode().split(" "), counts, strict=True))


def count_block(ctx: cf.Context, item: tuple[str, int, str]) -> Iterator[tuple[int, bytes]]:
    """Count a block's words in slices of SLICE characters (one Counter; a slice's words
    stay in the CPU cache), split the counts by word (crc32, as cfactor's ``stable_hash``
    of a str) and emit one packed ``(partition, counts)`` pair per partition."""
    text, n, trace = item
    started = time.time()
    counts: Counter[str] = Counter()
    start = 0
    while start < len(text):
        end = text.find("\n", start + SLICE)
        end = len(text) if end < 0 else end + 1
        counts.update(text[start:end].split())
        start = end
    parts: list[dict[str, int]] = [{} for _ in range(n)]
    crc32 = zlib.crc32
    for word, k in counts.items():
        parts[crc32(word.encode()) % n][word] = k
    out = [(p, pack(d)) for p, d in enumerate(parts) if d]
    _trace(trace, "count", started)
    return iter(out)


def by_index(key: int, n: int) -> int:
    """A ``(partition, counts)`` pair goes to the partition it names."""
    return key % n


def merge_blocks(ctx: cf.Context, items: list[tuple[int, bytes]]) -> dict[str, int]:
    """The example's ``merge_counts`` over the unpacked counts of this partition."""
    started = time.time()
    total = wordcount.merge_counts(ctx, [unpack(packed) for _, packed in items])
    _trace(ctx.store.get("trace"), "merge", started)
    return total


def build_wordcount(path: Path, sizes: Sizes, trace: Path) -> cf.App:
    app = cf.App("wcbench")
    source = (str(path), sizes.block, sizes.merges, str(trace))
    app.session("s1").flow("f1").add(read_blocks, "read", source, sizes.counters).map(
        count_block, "count", sizes.counters
    ).reduce(merge_blocks, "merge", sizes.merges, partition=by_index)
    return app


def check_counts(outputs: list[Any], expected: Counter[str]) -> str | None:
    """What is wrong with the merge partitions' outputs (None: they equal ``expected``)."""
    total: Counter[str] = Counter()
    keys = 0
    for part in outputs:
        if not isinstance(part, dict):
            return f"a partition returned {type(part).__name__}, not a dict"
        keys += len(part)
        total.update(part)
    if keys != len(total):
        return f"partitions overlap: {keys - len(total)} words in more than one"
    if total != expected:
        missing = len(expected.keys() - total.keys())
        return f"counts differ from collections.Counter ({missing} words missing)"
    return None


# -- the gigasort flow, traced (the example's functions, each call timed) -------------------


def _trace_dir(ctx: cf.Context) -> str:
    """This run's trace dir, from the session store once per replica (a member keeps this
    module loaded from run to run, so nothing run-specific may live in a global)."""
    trace: str | None = getattr(ctx, "bench_trace", None)
    if trace is None:
        trace = ctx.store.get("trace")
        ctx.bench_trace = trace  # type: ignore[attr-defined]
    return str(trace)


def traced_generate(ctx: cf.Context, arg: tuple[int, int, str, str]) -> Iterator[bytes]:
    """``gigasort.generate``; each block's production is traced."""
    n, seed, out_dir, trace = arg
    ctx.store.put("trace", trace)
    blocks = gigasort.generate(ctx, (n, seed, out_dir))
    while True:
        started = time.time()
        blob = next(blocks, None)
        if blob is None:
            return
        _trace(trace, "generate", started)
        yield blob


def traced_split(ctx: cf.Context, blob: bytes) -> dict[int, bytes]:
    started = time.time()
    out = gigasort.split(ctx, blob)
    _trace(_trace_dir(ctx), "split", started)
    return out


def traced_sort(ctx: cf.Context, parts: list[dict[int, bytes]]) -> tuple[Any, ...]:
    started = time.time()
    out = gigasort.sort_partition(ctx, parts)
    _trace(_trace_dir(ctx), "sort", started)
    return out


def build_gigasort(records: int, partitions: int, out: Path, trace: Path | None) -> cf.App:
    """``gigasort.build``'s flow; with ``trace``, from the traced wrappers above."""
    if trace is None:
        return gigasort.build(records, 1, partitions, str(out))
    out.mkdir(parents=True, exist_ok=True)
    app = cf.App("gigasort")
    source = (records, 1, str(out.resolve()), str(trace))
    app.session("s1").flow("sort").add(traced_generate, "generate", source).map(
        traced_split, "split", 2
    ).reduce(traced_sort, "sort", partitions, partition=gigasort.by_range)
    return app


# -- baselines: fresh child processes ---------------------------------------------------------


def child_main(argv: list[str]) -> int:
    """``--child KIND ...``: one baseline measurement; prints one JSON line."""
    kind = argv[0]
    extra: dict[str, float] = {}
    if kind == "wordcount":
        path, out = argv[1], argv[2]
        t0 = perf_counter()
        text = Path(path).read_text(encoding="utf-8")
        counts = Counter(text.split())
        seconds = perf_counter() - t0
        Path(out).write_text(json.dumps(counts))
        n_bytes = len(text.encode("utf-8"))
    elif kind == "wordcount-blocks":
        # The flow's own functions, one after the other in one process: the same work
        # (blocks, per-block Counters, partition split, pack, unpack, merge) with no runtime.
        path, block, merges = argv[1], int(argv[2]), int(argv[3])
        with tempfile.TemporaryDirectory() as trace:
            ctx: Any = _BareContext(trace)
            t0 = perf_counter()
            by_part: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(merges)}
            for item in read_blocks(ctx, (path, block, merges, trace)):
                for p, packed in count_block(ctx, item):
                    by_part[p].append((p, packed))
            for p, items in by_part.items():
                ctx.index = p
                merge_blocks(ctx, items)
            seconds = perf_counter() - t0
            calls = read_trace(Path(trace), 0.0).get("count", [])
            extra["count_ms"] = statistics.mean(c[2] - c[1] for c in calls) * 1e3
        n_bytes = Path(path).stat().st_size
    elif kind == "gigasort":
        n = int(argv[1])
        t0 = perf_counter()
        rng = random.Random(1)  # the example's generate(): same seed, same blocks
        records: list[bytes] = []
        rec = gigasort.RECORD
        for start in range(0, n, gigasort.BLOCK_RECORDS):
            blob = rng.randbytes(rec * min(gigasort.BLOCK_RECORDS, n - start))
            records.extend(blob[i : i + rec] for i in range(0, len(blob), rec))
        generated = perf_counter() - t0
        ordered = sorted(records, key=lambda r: r[: gigasort.KEY])
        seconds = perf_counter() - t0
        if len(ordered) != n:
            raise SystemExit(f"baseline sorted {len(ordered)} of {n} records")
        n_bytes = n * rec
        print(json.dumps({"generate_s": generated}), file=sys.stderr)
    else:
        raise SystemExit(f"unknown child {kind!r}")
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    figures = {"seconds": seconds, "bytes": n_bytes, "maxrss": maxrss, **extra}
    print(json.dumps(figures), flush=True)
    return 0


class _BareContext:
    """What the wordcount functions use of a Context, for the one-process baseline."""

    def __init__(self, trace: str) -> None:
        self.index = 0
        self.replicas = 1
        self.log = _NullLog()
        self.store = _DictStore({"trace": trace})


class _NullLog:
    def info(self, *args: Any) -> None:
        pass


class _DictStore:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value


async def run_child(*args: str, timeout_s: float) -> dict[str, Any]:
    """Run ``this file --child ARGS`` and return its JSON line."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(THIS_FILE),
        "--child",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await process.communicate()
    except TimeoutError:
        raise BenchmarkError(f"baseline {args[0]} did not finish in {timeout_s:g} s") from None
    finally:
        if process.returncode is None:  # timed out, or this run is being cancelled
            with contextlib.suppress(ProcessLookupError):
                process.kill()
    if process.returncode != 0:
        raise BenchmarkError(f"baseline {args[0]} failed: {err.decode(errors='replace')[-500:]}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


# -- the local cluster --------------------------------------------------------------------------


@dataclass
class LocalCluster:
    """``cfactor cluster start --members 2 --name NAME``, run from an empty directory."""

    name: str
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    etcd: str = ""
    member_pids: list[int] = field(default_factory=list)
    started_s: float = 0.0

    @property
    def log(self) -> Path:
        return self.workdir / "cluster.log"

    def command(self) -> list[str]:
        cli = Path(sys.executable).with_name("cfactor")
        base = [str(cli)] if cli.exists() else [sys.executable, "-m", "cfactor.cli"]
        return [*base, "cluster", "start", "--members", "2", "--name", self.name]

    def start(self) -> None:
        """Raises: BenchmarkError: it did not come up within CLUSTER_START_TIMEOUT_S."""
        env = dict(os.environ)
        # Members load this file (the Node functions): it imports harness and examples.
        paths = [str(HERE), str(ROOT), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        env.setdefault("GRPC_VERBOSITY", "ERROR")
        t0 = perf_counter()
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.workdir / "cwd",  # empty: no stray .py shadows the stdlib
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its group holds etcd too
            )
        _CLUSTERS.append(self)
        deadline = perf_counter() + CLUSTER_START_TIMEOUT_S
        while perf_counter() < deadline:
            text = self.log.read_text(errors="replace")
            if " is up: " in text:
                break
            if self.process.poll() is not None:
                raise BenchmarkError(f"cluster start exited:\n{text[-2000:]}")
            time.sleep(0.1)
        else:
            raise BenchmarkError(f"the cluster did not come up:\n{self.log_tail()}")
        for line in text.splitlines():
            if line.startswith("etcd "):
                self.etcd = line.split()[1]
            elif line.startswith("member ") and "(pid " in line:
                self.member_pids.append(int(line.rsplit("(pid ", 1)[1].rstrip(")")))
        if not self.etcd or len(self.member_pids) != 2:
            raise BenchmarkError(f"cannot read the cluster's etcd and members:\n{text}")
        self.started_s = perf_counter() - t0

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        """SIGTERM to the supervisor (members leave, etcd stops); SIGKILL what lingers."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        for pid in self.member_pids:  # each member runs in a session of its own
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # etcd, if the supervisor left it
        self.process = None
        with contextlib.suppress(ValueError):
            _CLUSTERS.remove(self)

    def cluster(self) -> cf.Cluster:
        return cf.Cluster(etcd=self.etcd, name=self.name)


_CLUSTERS: list[LocalCluster] = []


def _stop_leftovers() -> None:
    for local in _CLUSTERS:
        local.stop()


atexit.register(_stop_leftovers)


# -- watching processes: RSS peaks and CPU time -------------------------------------------------


class Watch:
    """Samples the RSS of some processes every SAMPLE_EVERY_S in a thread; CPU time too."""

    def __init__(self, pids: dict[str, int]) -> None:
        import psutil

        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.start_rss = {name: p.memory_info().rss for name, p in self.procs.items()}
        self.peak = dict(self.start_rss)
        self.cpu0 = {name: sum(p.cpu_times()[:2]) for name, p in self.procs.items()}
        self.cpu: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(SAMPLE_EVERY_S):
            for name, p in self.procs.items():
                with contextlib.suppress(psutil.Error):
                    self.peak[name] = max(self.peak[name], p.memory_info().rss)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        import psutil

        self._stop.set()
        self._thread.join()
        for name, p in self.procs.items():
            with contextlib.suppress(psutil.Error):
                self.peak[name] = max(self.peak[name], p.memory_info().rss)
                self.cpu[name] = sum(p.cpu_times()[:2]) - self.cpu0[name]


# -- the table --------------------------------------------------------------------------------


@dataclass
class Metric(harness.Figures):
    label: str
    unit: str  # "MB/s", "rec/s", "MiB", "s", "x" (a share), "ok"
    target: str = "-"
    cf_runs: list[float] = field(default_factory=list)
    base_runs: list[float] = field(default_factory=list)
    minimum_ratio: float | None = None  # the target, as a ratio to the baseline
    error: str | None = None

    @property
    def met(self) -> bool | None:
        if self.error:
            return False
        if self.unit == "ok":
            return bool(self.cf_runs) and all(v == 1 for v in self.cf_runs)
        if self.minimum_ratio is None:
            return None
        return not math.isnan(self.ratio) and self.ratio >= self.minimum_ratio


_FORMATS = {
    "MB/s": lambda v: f"{v:.1f} MB/s",
    "rec/s": lambda v: f"{v / 1e3:,.0f} k/s",
    "MiB": lambda v: f"{v:,.0f} MiB",
    "s": lambda v: f"{v:.2f} s",
    "x": lambda v: f"{v * 100:.0f} %",
    "ms": lambda v: f"{v:.0f} ms",
}


def fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "n/a"
    return _FORMATS.get(unit, lambda v: f"{v:g}")(value)


def main_table(metrics: list[Metric]) -> str:
    rows = []
    for m in metrics:
        label = m.label + (f" [error: {m.error}]" if m.error else "")
        ratio = "n/a" if math.isnan(m.ratio) else f"{m.ratio:.2f}x"
        cells = [label, fmt(m.cf, m.unit), fmt(m.base, m.unit), ratio, m.target]
        if m.unit == "ok":  # a count of good runs
            cells[1:4] = [f"{sum(m.cf_runs):.0f}/{len(m.cf_runs)}", "-", "-"]
        rows.append([*cells, harness.met_flag(m.met)])
    return harness.results_table(rows)


def metric_json(m: Metric) -> dict[str, Any]:
    clean = harness.clean
    return {
        "label": m.label,
        "unit": m.unit,
        "cfactor": clean(m.cf),
        "baseline": clean(m.base),
        "ratio": clean(m.ratio),
        "cfactor_runs": [clean(v) for v in m.cf_runs],
        "baseline_runs": [clean(v) for v in m.base_runs],
        "target": m.target,
        "met": m.met,
        "error": m.error,
    }


# -- one flow run -------------------------------------------------------------------------------


@dataclass
class FlowRun:
    wall_s: float
    run_s: float  # RunResult.seconds: the flow's own time, without join and leave
    result: Any
    watch: Watch


async def run_flow(
    app: cf.App, local: LocalCluster | None, deadline_s: float, driver_pid: int
) -> FlowRun:
    """``await app.run(...)`` embedded or on ``local``, timed, its processes watched."""
    pids = {"driver": driver_pid}
    if local is not None:
        pids |= {f"member {i}": pid for i, pid in enumerate(local.member_pids, 1)}
    with Watch(pids) as watch:
        t0 = perf_counter()
        async with asyncio.timeout(deadline_s):
            if local is None:
                result = await app.run(progress=False)
            else:
                result = await app.run(cluster=local.cluster(), progress=False)
        wall = perf_counter() - t0
    return FlowRun(wall, result.seconds, result, watch)


def read_trace(trace: Path, started_at: float) -> dict[str, list[tuple[str, float, float]]]:
    """Every traced call, by kind: (pid, start, end), seconds after ``started_at``."""
    rows: dict[str, list[tuple[str, float, float]]] = {}
    for path in trace.glob("trace-*.txt"):
        for line in path.read_text().splitlines():
            pid, what, a, b = line.split()
            rows.setdefault(what, []).append((pid, float(a) - started_at, float(b) - started_at))
    return rows


def busy_share(calls: list[tuple[str, float, float]]) -> float:
    """The busiest process's time in these calls over their whole span."""
    busy: dict[str, float] = {}
    for who, began, ended in calls:
        busy[who] = busy.get(who, 0.0) + (ended - began)
    span = max(c[2] for c in calls) - min(c[1] for c in calls)
    return max(busy.values()) / span if span > 0 else math.nan


def wordcount_phases(trace: Path, started_at: float) -> dict[str, float]:
    """The wordcount run's phases from its trace files (wall clock; one machine)."""
    rows = read_trace(trace, started_at)
    counts, merges = rows.get("count", []), rows.get("merge", [])
    if not counts or not merges:
        return {}
    return {
        "start -> first block counted": min(r[2] for r in counts),
        "counting: first block start -> last block end": max(r[2] for r in counts)
        - min(r[1] for r in counts),
        "count busy per member / counting span (max)": busy_share(counts),
        "count_block, mean per block (ms)": statistics.mean(r[2] - r[1] for r in counts) * 1e3,
        "last block counted -> merges start": min(r[1] for r in merges) - max(r[2] for r in counts),
        "merge (reduce) duration, max over partitions": max(r[2] - r[1] for r in merges),
        "blocks counted": float(len(counts)),
    }


def gigasort_phases(trace: Path, started_at: float) -> dict[str, float]:
    """The gigasort run's phases from its trace files."""
    rows = read_trace(trace, started_at)
    gen, split, sort = rows.get("generate", []), rows.get("split", []), rows.get("sort", [])
    if not gen or not split or not sort:
        return {}
    return {
        "start -> first block generated": min(r[2] for r in gen),
        "first block generated -> first split starts": min(r[1] for r in split)
        - min(r[2] for r in gen),
        "generate: first -> last block (source)": max(r[2] for r in gen) - min(r[1] for r in gen),
        "split: first start -> last end": max(r[2] for r in split) - min(r[1] for r in split),
        "split busy per member / split span (max)": busy_share(split),
        "last split end -> first sort starts": min(r[1] for r in sort) - max(r[2] for r in split),
        "sort partitions: first start -> last end": max(r[2] for r in sort)
        - min(r[1] for r in sort),
        "sort_partition, longest call": max(r[2] - r[1] for r in sort),
        "last sort end (s after start)": max(r[2] for r in sort),
    }


def phase_unit(label: str) -> str:
    if "(ms)" in label:
        return "ms"
    if "/" in label:
        return "x"
    return "n" if label.startswith("blocks") else "s"


# -- the benchmark ------------------------------------------------------------------------------


async def wordcount_section(
    sizes: Sizes, repeat: int, work: Path, details: dict[str, Any]
) -> list[list[Metric]]:
    mb = sizes.text_mb
    text = work / "text.txt"
    progress(f"wordcount: writing {mb} MB of text ...")
    await asyncio.to_thread(write_text, text, mb * 10**6)
    n_bytes = text.stat().st_size
    details["wordcount_bytes"] = n_bytes
    expected_path = work / "expected.json"
    child_timeout = 60 + 2 * mb

    shape = (
        f"read x{sizes.counters} {sizes.block // 1024} KiB blocks -> count x{sizes.counters} "
        f"-> merge x{sizes.merges}"
    )
    cluster_m = Metric(
        f"wordcount {mb} MB, 2-member cluster ({shape}) (MB/s)",
        "MB/s",
        ">= 1.5x",
        minimum_ratio=1.5,
    )
    embedded_m = Metric(f"wordcount {mb} MB, embedded (one process, same flow) (MB/s)", "MB/s")
    correct = Metric("wordcount: runs whose counts equal collections.Counter's", "ok", "all")
    # Diagnostics.
    blocks_m = Metric(
        "cluster vs the flow's own functions run one after the other in one process (MB/s)",
        "MB/s",
    )
    example_m = Metric(
        "examples/wordcount.py's own app (64 KiB blocks, count x4, merge x2, dict outputs), "
        "2-member cluster, 1 run (MB/s)",
        "MB/s",
    )
    run_s = Metric("cluster: the flow's own time (RunResult.seconds) (s)", "s")
    cpu_m = Metric("cluster: CPU used by members + driver / (2 cores x wall)", "x")
    base_rss = Metric("wordcount baseline process: peak RSS (MiB)", "MiB")
    ceiling_m = Metric(
        "2 plain processes at once, each doing the one-process work: aggregate (MB/s) "
        "(baseline: one alone)",
        "MB/s",
    )
    vs_ceiling = Metric(
        "cluster vs that 2-process aggregate (the machine's ceiling for this work) (MB/s)", "MB/s"
    )
    pair_ms = Metric(
        "count_block, mean per block, in 2 plain processes at once (ms) (baseline: one alone)",
        "ms",
    )
    count_ms = Metric(
        "cluster phase: count_block, mean per block (ms) (baseline: in the one-process run)", "ms"
    )
    phase_ms: dict[str, Metric] = {"count_block, mean per block (ms)": count_ms}

    local = LocalCluster(f"flowbench-wc-{os.getpid()}", work / "wc-cluster")
    (local.workdir / "cwd").mkdir(parents=True)
    progress("wordcount: starting a 2-member cluster ...")
    await asyncio.to_thread(local.start)
    details["wordcount_cluster_start_s"] = local.started_s
    expected: Counter[str] | None = None
    try:
        for r in range(repeat):
            progress(f"wordcount run {r + 1}/{repeat}: baseline (child process) ...")
            base = await run_child(
                "wordcount", str(text), str(expected_path), timeout_s=child_timeout
            )
            rate = base["bytes"] / 1e6 / base["seconds"]
            for m in (cluster_m, embedded_m):
                m.base_runs.append(rate)
            base_rss.cf_runs.append(base["maxrss"] / MIB)
            if expected is None:
                expected = Counter(json.loads(expected_path.read_text()))
            blocks = await run_child(
                "wordcount-blocks",
                str(text),
                str(sizes.block),
                str(sizes.merges),
                timeout_s=child_timeout,
            )
            blocks_m.base_runs.append(blocks["bytes"] / 1e6 / blocks["seconds"])
            count_ms.base_runs.append(blocks["count_ms"])
            # What two cores give two plain processes: both do the one-process work at once.
            pair = await asyncio.gather(
                *(
                    run_child(
                        "wordcount-blocks",
                        str(text),
                        str(sizes.block),
                        str(sizes.merges),
                        timeout_s=2 * child_timeout,
                    )
                    for _ in range(2)
                )
            )
            ceiling = 2 * n_bytes / 1e6 / max(p["seconds"] for p in pair)
            ceiling_m.cf_runs.append(ceiling)
            ceiling_m.base_runs.append(blocks["bytes"] / 1e6 / blocks["seconds"])
            vs_ceiling.base_runs.append(ceiling)
            pair_ms.cf_runs.append(statistics.mean(p["count_ms"] for p in pair))
            pair_ms.base_runs.append(blocks["count_ms"])

            progress(f"wordcount run {r + 1}/{repeat}: on the cluster ...")
            trace = work / f"trace-{r}"
            trace.mkdir()
            started_at = time.time()
            run = await run_flow(
                build_wordcount(text, sizes, trace), local, sizes.deadline_s, os.getpid()
            )
            cluster_m.cf_runs.append(n_bytes / 1e6 / run.wall_s)
            blocks_m.cf_runs.append(n_bytes / 1e6 / run.wall_s)
            vs_ceiling.cf_runs.append(n_bytes / 1e6 / run.wall_s)
            run_s.cf_runs.append(run.run_s)
            cpu_m.cf_runs.append(sum(run.watch.cpu.values()) / (2 * run.wall_s))
            for label, value in wordcount_phases(trace, started_at).items():
                metric = phase_ms.setdefault(
                    label, Metric(f"cluster phase: {label}", phase_unit(label))
                )
                metric.cf_runs.append(value)
            problem = check_counts(run.result.output, expected)
            correct.cf_runs.append(0.0 if problem else 1.0)
            if problem:
                correct.error = f"cluster run {r + 1}: {problem}"

            progress(f"wordcount run {r + 1}/{repeat}: embedded ...")
            trace = work / f"trace-e{r}"
            trace.mkdir()
            run = await run_flow(
                build_wordcount(text, sizes, trace), None, sizes.deadline_s, os.getpid()
            )
            embedded_m.cf_runs.append(n_bytes / 1e6 / run.wall_s)
            problem = check_counts(run.result.output, expected)
            correct.cf_runs.append(0.0 if problem else 1.0)
            if problem:
                correct.error = f"embedded run {r + 1}: {problem}"

        assert expected is not None
        progress("wordcount: the example's own app on the cluster, once ...")
        try:
            run = await run_flow(wordcount.build(str(text)), local, sizes.deadline_s, os.getpid())
        except (cf.CfactorError, TimeoutError) as exc:
            example_m.error = f"{type(exc).__name__}: {str(exc)[:200]}"
        else:
            example_m.cf_runs.append(n_bytes / 1e6 / run.wall_s)
            example_m.base_runs = list(cluster_m.base_runs)
            problem = check_counts(run.result.output, expected)
            if problem:
                example_m.error = problem
    finally:
        progress("wordcount: stopping the cluster ...")
        await asyncio.to_thread(local.stop)
    correct.base_runs = [1.0] * len(correct.cf_runs)
    metrics = [cluster_m, embedded_m, correct]
    diagnostics = [blocks_m, ceiling_m, vs_ceiling, pair_ms, example_m, run_s, cpu_m]
    diagnostics += [*phase_ms.values(), base_rss]
    return [metrics, diagnostics]


async def gigasort_section(
    sizes: Sizes, repeat: int, work: Path, details: dict[str, Any]
) -> list[list[Metric]]:
    n = sizes.records
    gb = n * gigasort.RECORD / 1e9
    parts = sizes.sort_partitions
    out = work / "sorted"
    child_timeout = 120 + n / 50_000
    cluster_m = Metric(
        f"gigasort {n:,} records ({gb:g} GB), 2-member cluster, {parts} sort partitions "
        "(records/s)",
        "rec/s",
    )
    embedded_m = Metric(
        f"gigasort {sizes.embedded_records:,} records, embedded, {parts} partitions, 1 run "
        "(records/s)",
        "rec/s",
    )
    correct = Metric("gigasort: runs that examples.gigasort.verify passes", "ok", "all")
    rss = {
        name: Metric(f"gigasort cluster: peak RSS of {name} (baseline: the sorting process)", "MiB")
        for name in ("member 1", "member 2", "driver")
    }
    driver_growth = Metric("gigasort cluster: driver RSS growth during the run (MiB)", "MiB")
    run_s = Metric("gigasort cluster: the flow's own time (RunResult.seconds) (s)", "s")
    cpu_m = Metric("gigasort cluster: CPU used by members + driver / (2 cores x wall)", "x")
    example_m = Metric(
        f"gigasort {n:,} records with the example's 4 sort partitions, cluster, 1 run (records/s)",
        "rec/s",
    )
    embedded_rss = Metric("gigasort embedded: peak RSS of this process (MiB)", "MiB")
    phase_ms: dict[str, Metric] = {}

    local = LocalCluster(f"flowbench-gs-{os.getpid()}", work / "gs-cluster")
    (local.workdir / "cwd").mkdir(parents=True)
    progress("gigasort: starting a 2-member cluster ...")
    await asyncio.to_thread(local.start)
    details["gigasort_cluster_start_s"] = local.started_s
    details["gigasort_member_rss_before_mib"] = []
    try:
        for r in range(repeat):
            progress(f"gigasort run {r + 1}/{repeat}: baseline {n:,} records (child) ...")
            base = await run_child("gigasort", str(n), timeout_s=child_timeout)
            cluster_m.base_runs.append(n / base["seconds"])
            for m in rss.values():
                m.base_runs.append(base["maxrss"] / MIB)
            progress(f"gigasort run {r + 1}/{repeat}: on the cluster ...")
            trace = work / f"gs-trace-{r}"
            trace.mkdir()
            started_at = time.time()
            try:
                run = await run_flow(
                    build_gigasort(n, parts, out, trace), local, sizes.deadline_s, os.getpid()
                )
            except (cf.CfactorError, TimeoutError) as exc:
                cluster_m.error = f"run {r + 1}: {type(exc).__name__}: {str(exc)[:200]}"
                correct.cf_runs.append(0.0)
                progress(f"gigasort run failed: {exc!r:.300}\n{local.log_tail()}")
                break
            cluster_m.cf_runs.append(n / run.wall_s)
            run_s.cf_runs.append(run.run_s)
            cpu_m.cf_runs.append(sum(run.watch.cpu.values()) / (2 * run.wall_s))
            for name, m in rss.items():
                m.cf_runs.append(run.watch.peak[name] / MIB)
            details["gigasort_member_rss_before_mib"].append(
                {k: v / MIB for k, v in run.watch.start_rss.items()}
            )
            driver_growth.cf_runs.append(
                (run.watch.peak["driver"] - run.watch.start_rss["driver"]) / MIB
            )
            for label, value in gigasort_phases(trace, started_at).items():
                metric = phase_ms.setdefault(
                    label, Metric(f"gigasort cluster phase: {label}", phase_unit(label))
                )
                metric.cf_runs.append(value)
            problems = await asyncio.to_thread(gigasort.verify, run.result)
            correct.cf_runs.append(0.0 if problems else 1.0)
            if problems:
                correct.error = f"run {r + 1}: {'; '.join(problems)[:200]}"
            del run
        if sizes.example_sort and parts != gigasort.PARTITIONS:
            progress(f"gigasort: the example's {gigasort.PARTITIONS} partitions, once ...")
            try:
                run = await run_flow(
                    gigasort.build(n, 1, gigasort.PARTITIONS, str(out)),
                    local,
                    sizes.deadline_s,
                    os.getpid(),
                )
            except (cf.CfactorError, TimeoutError) as exc:
                example_m.error = f"{type(exc).__name__}: {str(exc)[:240]}"
                progress(f"it failed: {exc!r:.300}")
            else:
                example_m.cf_runs.append(n / run.wall_s)
                problems = await asyncio.to_thread(gigasort.verify, run.result)
                if problems:
                    example_m.error = "; ".join(problems)[:200]
            example_m.base_runs = list(cluster_m.base_runs)
    finally:
        progress("gigasort: stopping the cluster ...")
        await asyncio.to_thread(local.stop)
    if sizes.embedded_records:
        k = sizes.embedded_records
        progress(f"gigasort: embedded, {k:,} records, once ...")
        base_runs = cluster_m.base_runs
        if k != n:
            base = await run_child("gigasort", str(k), timeout_s=child_timeout)
            base_runs = [k / base["seconds"]]
        embedded_m.base_runs = list(base_runs)
        try:
            run = await run_flow(
                gigasort.build(k, 1, parts, str(out)), None, sizes.deadline_s, os.getpid()
            )
        except (cf.CfactorError, TimeoutError) as exc:
            embedded_m.error = f"{type(exc).__name__}: {str(exc)[:200]}"
        else:
            embedded_m.cf_runs.append(k / run.wall_s)
            embedded_rss.cf_runs.append(run.watch.peak["driver"] / MIB)
            embedded_rss.base_runs = list(rss["driver"].base_runs[:1])
            problems = await asyncio.to_thread(gigasort.verify, run.result)
            correct.cf_runs.append(0.0 if problems else 1.0)
            if problems:
                correct.error = f"embedded: {'; '.join(problems)[:200]}"
    shutil.rmtree(out, ignore_errors=True)
    correct.base_runs = [1.0] * len(correct.cf_runs)
    metrics = [cluster_m, embedded_m, correct, *rss.values()]
    diagnostics = [driver_growth, run_s, cpu_m, *phase_ms.values(), example_m, embedded_rss]
    return [metrics, diagnostics]


async def benchmark(
    sizes: Sizes, repeat: int, work: Path, only: str | None
) -> tuple[int, dict[str, Any]]:
    source = harness.source_version(
        ("cfactor", "transports", "examples"), "cfactor/, transports/ or examples/ changed"
    )
    facts = harness.machine_facts(asyncio.get_running_loop(), source)
    harness.print_header("cfactor flow benchmark", facts)
    print(
        f"- sizes: wordcount {sizes.text_mb} MB of text (Zipf words); gigasort "
        f"{sizes.records:,} records of 100 bytes on the cluster, "
        f"{sizes.embedded_records:,} embedded; {repeat} runs each (gigasort at most "
        f"{GIGASORT_RUNS}, embedded gigasort 1), "
        f"median reported; {sizes.deadline_s:g} s deadline per flow run"
    )
    print(flush=True)
    from cluster import CpuShare  # benchmarks/cluster.py: the rest of the machine's CPU

    busy = CpuShare()
    details: dict[str, Any] = {}
    metrics: list[Metric] = []
    diagnostics: list[Metric] = []
    # gigasort first: the driver's RSS is measured in it, before any embedded run.
    sections: list[list[Metric]] = []
    if only in (None, "gigasort"):
        sections = await gigasort_section(sizes, min(repeat, GIGASORT_RUNS), work, details)
    if only in (None, "wordcount"):
        m, d = await wordcount_section(sizes, repeat, work, details)
        metrics += m
        diagnostics += d
    if sections:
        metrics += sections[0]
        diagnostics += sections[1]
    harness.print_section(harness.RESULTS, main_table(metrics))
    harness.print_section(harness.EVERY_RUN, harness.runs_table(metrics + diagnostics, fmt))
    harness.print_section("Diagnostics (not targets)", main_table(diagnostics))
    print(
        "Baselines: wordcount = a fresh python process reading the file and running "
        "collections.Counter(text.split()) (read + count timed); 'the flow's own functions "
        "in one process' = the same read_blocks/count_block/merge_blocks calls in a row in a "
        "fresh process, no runtime ('2 plain processes at once' = two such processes "
        "started together: what this machine's two cores give this work); gigasort = a "
        "fresh process generating the same records "
        "(same seed and blocks as the example) and sorted(records, key=first 10 bytes). "
        "Throughputs of flows are input size over the wall time of the whole app.run() call "
        "(join, placement, run, leave). RSS peaks are sampled every "
        f"{SAMPLE_EVERY_S * 1000:.0f} ms; the baseline's is its ru_maxrss."
    )
    print()
    print(WORDCOUNT_SHAPE)
    print()
    others = busy.others()
    details["other_processes_core_share"] = others
    print(
        f"Other processes on this machine used {others:.0%} of one core on average during "
        f"the run (machine busy time less this benchmark's and its children's: the "
        f"baselines, the cluster, etcd; {os.cpu_count()} cores); load average at the end "
        "{:.2f} {:.2f} {:.2f}.".format(*os.getloadavg())
    )
    print(flush=True)
    document = {
        "facts": facts,
        "sizes": sizes.__dict__,
        "repeat": repeat,
        "metrics": [metric_json(m) for m in metrics],
        "diagnostics": [metric_json(m) for m in diagnostics],
        "details": details,
    }
    failed = any(m.error for m in metrics)
    return (2 if failed else 0), document


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = harness.parser(
        "Measure cfactor flows (wordcount, gigasort) on a 2-member local cluster and "
        "embedded, next to plain single-process Python measured in the same run. Prints "
        "tables; exits 2 when a measurement failed or a result was wrong.",
        "small sizes (10 MB of text, 200,000 records): a smoke run under a minute",
    )
    parser.add_argument(
        "--only", choices=("wordcount", "gigasort"), help="run one of the two benchmarks"
    )
    parser.add_argument(
        "--block", type=int, metavar="BYTES", help="wordcount source block (default 1 MiB)"
    )
    return harness.parse(parser, argv)


async def run_main(args: argparse.Namespace, work: Path) -> tuple[int, dict[str, Any]]:
    # SIGTERM ends the run like Ctrl-C: the finally blocks stop the cluster.
    harness.cancel_on_sigterm()
    sizes = QUICK if args.quick else FULL
    if args.block:
        sizes = dataclasses.replace(sizes, block=args.block)
    return await benchmark(sizes, args.repeat, work, args.only)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child_main(sys.argv[2:])
    args = parse_args()
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    # As `cfactor run` does (and the members `cfactor cluster start` runs): the embedded
    # flows run here with the GIL switch interval the CLI sets for Node functions.
    from cfactor.tools.local_cluster import run_node_functions_well

    run_node_functions_well()
    work = Path(tempfile.mkdtemp(prefix="cfactor-flow-bench-"))
    try:
        status, document = cf.run(run_main(args, work))
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("interrupted (the cluster is stopped)")
        return 130
    except BenchmarkError as exc:
        progress(f"failed: {exc}")
        return 2
    finally:
        _stop_leftovers()
        shutil.rmtree(work, ignore_errors=True)
    harness.finish(args.json, document)
    return status


if __name__ == "__main__":
    sys.exit(main())
