"""Reconnect benchmark: how long an old peer takes to reach a member resumed after SIGSTOP.

Run it as ``.venv/bin/python benchmarks/reconnect.py --runs 10`` (``--stop-s`` seconds
stopped, default the heartbeat timeout + 4 s; ``--bound-s`` how long to try after SIGCONT,
default 15 s). Each run starts a fresh member process (``tests/faults/member_process.py``,
default heartbeat settings: 0.5 s interval, 2 s timeout), asks its ``echo`` actor from
this process, SIGSTOPs it, SIGCONTs it, and then asks (timeout 0.2 s, every 10 ms) until
an answer comes or ``--bound-s`` passes. It prints each run's time to the first answer,
then reached/runs, p50 and max, next to the target (one heartbeat timeout plus one
backoff step) and a baseline measured in the same run: raw pyzmq (a DEALER client and a
ROUTER echo server process, the same heartbeat and reconnect options) through the same
SIGSTOP and SIGCONT. ``run_reconnect(runs, ...)`` returns the figures as a dict (for
``benchmarks/faults.py``). Every loop is bounded by its count and a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import zmq  # noqa: E402 - after the path set-up
import zmq.asyncio  # noqa: E402
from cfactor_zmq._transport import RECONNECT_IVL_MAX_S, RECONNECT_IVL_S  # noqa: E402

import cfactor as cf  # noqa: E402
from tests.faults.member_process import MemberProcess, timing  # noqa: E402

HEARTBEAT_TIMEOUT_S = 2.0  # ZmqTransport's default (interval 0.5 s)
TARGET_S = HEARTBEAT_TIMEOUT_S + min(RECONNECT_IVL_MAX_S, HEARTBEAT_TIMEOUT_S)

RAW_SERVER = textwrap.dedent(
    """
    import sys, zmq
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.setsockopt(zmq.HEARTBEAT_IVL, {ivl})
    router.setsockopt(zmq.HEARTBEAT_TIMEOUT, {timeout})
    router.bind("tcp://127.0.0.1:0")
    print(router.getsockopt(zmq.LAST_ENDPOINT).decode(), flush=True)
    while True:
        router.send_multipart(router.recv_multipart())
    """
)


async def reach(ask: Any, bound_s: float) -> float | None:
    """Call ``ask()`` until it answers; the seconds that took, or None past the bound."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < bound_s:
        try:
            await ask()
        except (cf.AskTimeout, cf.MemberUnreachable, TimeoutError):
            await asyncio.sleep(0.01)
        else:
            return loop.time() - started
    return None


async def cfactor_run(stop_s: float, bound_s: float) -> float | None:
    with MemberProcess(heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S) as member:
        async with cf.ActorSystem(
            listen="tcp://127.0.0.1:0", transport_options=timing(HEARTBEAT_TIMEOUT_S)
        ) as me:
            echo = me.ref("echo", at=member.address)
            assert await echo.ask("hello", timeout=5) == "hello"
            member.signal(signal.SIGSTOP)
            await asyncio.sleep(stop_s)
            member.signal(signal.SIGCONT)
            return await reach(lambda: echo.ask("ping", timeout=0.2), bound_s)


async def raw_run(stop_s: float, bound_s: float) -> float | None:
    ivl, timeout = int(HEARTBEAT_TIMEOUT_S / 4 * 1000), int(HEARTBEAT_TIMEOUT_S * 1000)
    server = subprocess.Popen(  # noqa: ASYNC220 - a child we wait for below
        [sys.executable, "-c", RAW_SERVER.format(ivl=ivl, timeout=timeout)],
        stdout=subprocess.PIPE,
        text=True,
    )
    context = zmq.asyncio.Context()
    try:
        assert server.stdout is not None
        address = server.stdout.readline().strip()
        dealer = context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.IMMEDIATE, 1)
        dealer.setsockopt(zmq.HEARTBEAT_IVL, ivl)
        dealer.setsockopt(zmq.HEARTBEAT_TIMEOUT, timeout)
        dealer.setsockopt(zmq.RECONNECT_IVL, int(RECONNECT_IVL_S * 1000))
        dealer.setsockopt(zmq.RECONNECT_IVL_MAX, int(RECONNECT_IVL_MAX_S * 1000))
        dealer.setsockopt(zmq.CONNECT_TIMEOUT, timeout)
        dealer.connect(address)
        counter = 0

        async def ask() -> None:
            nonlocal counter
            counter += 1
            token = str(counter).encode()
            try:
                await asyncio.wait_for(dealer.send(token, zmq.NOBLOCK), 0.2)
            except zmq.Again as exc:
                raise TimeoutError from exc
            deadline = asyncio.get_running_loop().time() + 0.2
            while True:  # skip late answers to earlier tries
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    raise TimeoutError
                if await asyncio.wait_for(dealer.recv(), left) == token:
                    return

        assert await reach(ask, 5.0) is not None
        server.send_signal(signal.SIGSTOP)
        await asyncio.sleep(stop_s)
        server.send_signal(signal.SIGCONT)
        return await reach(ask, bound_s)
    finally:
        server.send_signal(signal.SIGCONT)
        server.kill()
        server.wait(timeout=5)
        if server.stdout is not None:
            server.stdout.close()
        context.destroy(linger=0)


def summary(times: list[float | None]) -> dict[str, Any]:
    reached = sorted(t for t in times if t is not None)
    return {
        "runs": len(times),
        "reached": len(reached),
        "p50_s": statistics.median(reached) if reached else None,
        "max_s": reached[-1] if reached else None,
        "times_s": times,
    }


def show(name: str, figures: dict[str, Any], bound_s: float) -> str:
    def fmt(value: float | None) -> str:
        return "never" if value is None else f"{value:.2f}"

    each = " ".join(fmt(t) for t in figures["times_s"])
    return (
        f"{name:<28} reached {figures['reached']}/{figures['runs']} within {bound_s:g} s; "
        f"p50 {fmt(figures['p50_s'])} s, max {fmt(figures['max_s'])} s   [{each}]"
    )


async def run_reconnect(
    runs: int, stop_s: float | None = None, bound_s: float = 15.0, *, raw: bool = True
) -> dict[str, Any]:
    """The benchmark's figures: ``{"cfactor": {...}, "raw_pyzmq": {...}, ...}``."""
    stop = HEARTBEAT_TIMEOUT_S + 4.0 if stop_s is None else stop_s
    ours: list[float | None] = []
    baseline: list[float | None] = []
    for i in range(runs):
        ours.append(await cfactor_run(stop, bound_s))
        print(f"  run {i + 1}/{runs}: cfactor {ours[-1]}", file=sys.stderr, flush=True)
        if raw:
            baseline.append(await raw_run(stop, bound_s))
            print(f"  run {i + 1}/{runs}: raw {baseline[-1]}", file=sys.stderr, flush=True)
    return {
        "stop_s": stop,
        "bound_s": bound_s,
        "target_s": TARGET_S,
        "cfactor": summary(ours),
        "raw_pyzmq": summary(baseline) if raw else None,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--stop-s", type=float, default=None)
    parser.add_argument("--bound-s", type=float, default=15.0)
    parser.add_argument("--no-raw", action="store_true", help="skip the raw pyzmq baseline")
    args = parser.parse_args()
    started = time.monotonic()
    figures = await run_reconnect(args.runs, args.stop_s, args.bound_s, raw=not args.no_raw)
    print(
        f"SIGSTOP for {figures['stop_s']:g} s, then SIGCONT; heartbeat timeout "
        f"{HEARTBEAT_TIMEOUT_S:g} s; target: reached within {TARGET_S:g} s "
        "(heartbeat timeout + one backoff step), every time"
    )
    print(show("cfactor (old peer)", figures["cfactor"], args.bound_s))
    if figures["raw_pyzmq"] is not None:
        print(show("raw pyzmq DEALER->ROUTER", figures["raw_pyzmq"], args.bound_s))
        ours, raw = figures["cfactor"]["p50_s"], figures["raw_pyzmq"]["p50_s"]
        if ours and raw:
            print(f"p50 ratio cfactor / raw pyzmq: {ours / raw:.2f}x")
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    cf.run(main())
