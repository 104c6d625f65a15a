"""Ask deadlines under a full queue (issue 10, items 1, 2 and 10): how late do asks end?

Run it as ``.venv/bin/python benchmarks/ask_lateness.py`` (``--runs N``, default 3).

- local: 10,000 concurrent asks with ``timeout=0.1`` to a hung actor (mailbox 1,000: a
  tenth queue, the rest wait for room), in this process;
- remote: 20,000 concurrent asks with ``timeout=0.1`` to a hung actor in a member
  process over ZeroMQ on loopback (the send queue to it holds 10,000);

Each ask's lateness is when it ended minus (when it began + its timeout), so the time
the asking loop took to start 20,000 tasks is not counted against the runtime. It
prints p50/p99/max lateness next to the target (p99 <= 20 ms), how long a healthy
neighbour of the hung actor took to answer meanwhile, and what the hung actor's
mailbox still held after every ask had ended. Also p99 with the garbage collector
off, to show what GC passes add, and the baseline measured in the same run: as many
plain asyncio tasks, each awaiting a future that never completes under
``asyncio.timeout(0.1)`` (the floor this event loop sets on lateness). Every wait is
bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness

import cfactor as cf

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 0.1
TARGET_P99_MS = 20.0


class Hung(cf.Actor):
    async def receive(self, message: Any) -> Any:
        await asyncio.Event().wait()
        return message


class Echo(cf.Actor):
    async def receive(self, message: Any) -> Any:
        if message == "left":
            hung = self.system.ref("hung").statistics()
            return hung.depth + hung.waiting_senders
        return message


async def timed(ref: cf.ActorRef, message: Any, timeout: float) -> tuple[float, str]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await ref.ask(message, timeout=timeout)
        kind = "answered"
    except cf.CfactorError as exc:
        kind = type(exc).__name__
    return loop.time() - started - timeout, kind


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def flood(hung: cf.ActorRef, healthy: cf.ActorRef, count: int) -> dict[str, Any]:
    tasks = [asyncio.ensure_future(timed(hung, i, TIMEOUT_S)) for i in range(count)]
    await asyncio.sleep(0)
    neighbour, kind = await timed(healthy, "ping", 10.0)
    done, pending = await asyncio.wait(tasks, timeout=30)
    for task in pending:
        task.cancel()
    results = [task.result() for task in done]
    late = [max(0.0, lateness) for lateness, _ in results]
    kinds: dict[str, int] = {}
    for _, k in results:
        kinds[k] = kinds.get(k, 0) + 1
    return {
        "pending": len(pending),
        "p50": statistics.median(late) * 1000 if late else float("nan"),
        "p99": pct(late, 0.99) * 1000 if late else float("nan"),
        "max": max(late) * 1000 if late else float("nan"),
        "neighbour_ms": (neighbour + 10.0) * 1000 if kind == "answered" else float("nan"),
        "kinds": kinds,
    }


async def raw_run(count: int) -> dict[str, Any]:
    """The baseline: ``count`` bare asyncio timeouts, no actors, measured like an ask."""
    late = await harness.raw_timeout_lateness(count, TIMEOUT_S)
    return {
        "pending": count - len(late),
        "p50": statistics.median(late) * 1000,
        "p99": pct(late, 0.99) * 1000,
        "max": max(late) * 1000,
        "neighbour_ms": float("nan"),
        "left": "-",
        "kinds": {"TimeoutError": len(late)},
    }


@dataclass(frozen=True)
class Case:
    """What differs between the local and the remote case, besides where the hung actor
    lives: how many asks flood it, and how long its mailbox gets to let go of the ended
    asks before it is read."""

    count: int
    settle_s: float


LOCAL = Case(count=10_000, settle_s=0.05)
REMOTE = Case(count=20_000, settle_s=0.2)


async def start_targets(system: cf.ActorSystem) -> tuple[cf.ActorRef, cf.ActorRef]:
    """The hung actor (busy with its first message for good) and its healthy neighbour."""
    hung = await system.spawn(Hung, name="hung")
    healthy = await system.spawn(Echo, name="healthy")
    await hung.tell("hang")
    await asyncio.sleep(0)
    return hung, healthy


async def case_run(address: str | None, case: Case, gc_on: bool) -> dict[str, Any]:
    """Flood the hung actor with ``case.count`` asks: in this process (``address``
    None) or in the member at ``address``."""
    options: dict[str, Any] = (
        {"stop_timeout_s": 0.2} if address is None else {"listen": "tcp://127.0.0.1:0"}
    )
    async with cf.ActorSystem(**options) as system:
        if address is None:
            hung, healthy = await start_targets(system)
        else:
            hung, healthy = system.ref("hung", at=address), system.ref("healthy", at=address)
            await healthy.ask("warm up", timeout=10)
        if not gc_on:
            gc.disable()
        try:
            figures = await flood(hung, healthy, case.count)
        finally:
            gc.enable()
        await asyncio.sleep(case.settle_s)
        figures["left"] = await healthy.ask("left", timeout=10)
        return figures


async def serve_member() -> None:
    async with cf.ActorSystem(listen="tcp://127.0.0.1:0", stop_timeout_s=0.2) as system:
        await start_targets(system)
        print("ADDRESS", system.address, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def member() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--member"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("ADDRESS "):
        process.kill()
        raise SystemExit(f"member did not start: {line!r}")
    return process, line.split()[1]


def row(name: str, f: dict[str, Any]) -> str:
    return (
        f"| {name} | {f['p50']:.1f} | {f['p99']:.1f} | {f['max']:.1f} | {TARGET_P99_MS:.0f} | "
        f"{'yes' if f['p99'] <= TARGET_P99_MS else 'no'} | {f['neighbour_ms']:.1f} | "
        f"{f['left']} | {f['pending']} | "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(f["kinds"].items()))
        + " |"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--member", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.member:
        cf.run(serve_member())
        return
    print("# ask lateness with a full queue (timeout 0.1 s, hung target)\n")
    print(f"python {sys.version.split()[0]}, runs: {args.runs}\n")
    print(
        "| case | lateness p50 ms | p99 ms | max ms | target p99 ms | met? | "
        "healthy neighbour answered in ms | hung mailbox left | asks never ended | outcomes |"
    )
    print("| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |")
    for run in range(args.runs):
        for count in (10_000, 20_000):
            print(
                row(
                    f"baseline: raw asyncio {count // 1000}k, run {run + 1}", cf.run(raw_run(count))
                )
            )
        for gc_on in (True, False):
            tag = f"run {run + 1}" + ("" if gc_on else ", gc off")
            local = cf.run(case_run(None, LOCAL, gc_on))
            print(row(f"local 10k, {tag}", local), flush=True)
            process, address = member()
            try:
                remote = cf.run(case_run(address, REMOTE, gc_on))
                print(row(f"remote 20k, {tag}", remote), flush=True)
            finally:
                process.communicate(timeout=10)


if __name__ == "__main__":
    main()
