"""Peer churn benchmark: short-lived peers, one after another, against one member.

Run it as ``.venv/bin/python benchmarks/peer_churn.py --peers 100000`` (``--nofile`` the
member's open-file limit, soft and hard, default 1,024 as ``ulimit -n 1024``;
``--max-failures`` stops the run after that many failed peers, default 50). The member
is a real process (``tests/faults/member_process.py``); each peer is a whole
``ActorSystem`` in this process (as every ``cfactor status`` is) that asks the member's
``echo`` actor once (timeout 2 s) and closes. It prints peers tried, succeeded and failed
(with the first failure's peer number and error), the member's open files
(``/proc/<pid>/fd``) after a warm-up and at the end and their peak, its resident memory,
and peers per second.
The target: every peer succeeds and the open files stay flat. ``run_churn(peers, ...)``
returns the figures as a dict (for ``benchmarks/faults.py``). Bounded by its counts.

``--concurrent N`` instead opens N raw peers at once (DEALERs claiming addresses where
nothing listens, each sending one tell) against a member started with a soft open-file
limit of 1,024 (it raises its own), then one real peer that asks, then one peer more: it
prints how many peers the member holds and its open-file limit (``--concurrent 4095``
reaches ``MAX_PEERS``).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import zmq  # noqa: E402 - after the path set-up
from cfactor_zmq._transport import MAX_PEERS  # noqa: E402

import cfactor as cf  # noqa: E402
from tests.faults.member_process import MemberProcess, raw_peers, timing  # noqa: E402

HEARTBEAT_TIMEOUT_S = 2.0  # ZmqTransport's default (interval 0.5 s)
WARM_UP = 20


async def one_peer(member: str, i: int) -> None:
    async with cf.ActorSystem(
        listen="tcp://127.0.0.1:0", transport_options=timing(HEARTBEAT_TIMEOUT_S)
    ) as peer:
        answer = await peer.ref("echo", at=member).ask(i, timeout=2.0)
        if answer != i:
            raise cf.ProtocolError(f"asked {i}, got {answer!r}")


async def run_churn(peers: int, nofile: int = 1024, max_failures: int = 50) -> dict[str, Any]:
    """The benchmark's figures as a dict (see the module's docstring)."""
    with MemberProcess(heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S, nofile=nofile) as member:
        for i in range(WARM_UP):
            await one_peer(member.address, i)
        fds_before = member.open_files()
        rss_before = member.rss_mib()
        peak = fds_before
        ok = failed = 0
        first_failure: str | None = None
        started = time.monotonic()
        for i in range(peers):
            try:
                await one_peer(member.address, i)
            except cf.CfactorError as exc:
                failed += 1
                if first_failure is None:
                    first_failure = f"peer {i + 1}: {type(exc).__name__}: {exc}"
                if failed >= max_failures:
                    break
            else:
                ok += 1
            if i % 100 == 0:
                peak = max(peak, member.open_files())
                if i % 5000 == 0:
                    print(
                        f"  {i}/{peers} peers, {failed} failed, fds {member.open_files()}, "
                        f"RSS {member.rss_mib():.1f} MiB",
                        file=sys.stderr,
                        flush=True,
                    )
        elapsed = time.monotonic() - started
        fds_after = member.open_files()
        return {
            "nofile": nofile,
            "peers": peers,
            "tried": ok + failed,
            "ok": ok,
            "failed": failed,
            "first_failure": first_failure,
            "fds_before": fds_before,
            "fds_peak": max(peak, fds_after),
            "fds_after": fds_after,
            "rss_before_mib": rss_before,
            "rss_after_mib": member.rss_mib(),
            "member_alive": member.alive(),
            "seconds": elapsed,
            "peers_per_s": (ok + failed) / elapsed if elapsed else 0.0,
        }


async def run_concurrent(count: int) -> dict[str, Any]:
    """``count`` raw peers at once, then one real peer that asks; then one peer more."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 3 * count + 256)), hard))
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    context.set(zmq.MAX_SOCKETS, count + 32)
    sockets: list[zmq.Socket[bytes]] = []
    try:
        with MemberProcess(heartbeat_timeout_s=60.0, soft_nofile=1024) as member:
            started = time.monotonic()
            sockets = raw_peers(context, member.address, count)
            async with cf.ActorSystem(
                listen="tcp://127.0.0.1:0", transport_options=timing(60.0)
            ) as me:
                stats = me.ref("stats", at=member.address)
                deadline = time.monotonic() + 120
                figures = await stats.ask("stats", timeout=30)
                while figures["peers"] < count + 1 and time.monotonic() < deadline:
                    await asyncio.sleep(0.5)
                    figures = await stats.ask("stats", timeout=30)
                reached = time.monotonic() - started
                echo = await me.ref("echo", at=member.address).ask("hi", timeout=30)
                fds = member.open_files()
                # One more peer than the limit: refused, counted, logged by the member.
                rejected = figures["frames_rejected"]
                extra = raw_peers(context, member.address, 1, first=count)
                sockets += extra
                await asyncio.sleep(1.0)
                after = await stats.ask("stats", timeout=30)
            return {
                "count": count,
                "peers": figures["peers"],
                "seconds": reached,
                "echo": echo,
                "nofile": figures["nofile"],
                "fds": fds,
                "alive": member.alive(),
                "peers_after_one_more": after["peers"],
                "rejected_after_one_more": after["frames_rejected"] - rejected,
            }
    finally:
        for sock in sockets:
            sock.close(linger=0)
        context.term()


async def main_concurrent(count: int) -> None:
    f = await run_concurrent(count)
    print(
        f"{count:,} raw peers at once plus one real one against a member started "
        f"with a soft open-file limit of 1,024 (MAX_PEERS {MAX_PEERS:,}); target: all reach it"
    )
    print(
        f"member peers {f['peers']:,} after {f['seconds']:.1f} s; the real peer's ask "
        f"answered: {f['echo'] == 'hi'}; member soft open-file limit {f['nofile']:,}, "
        f"open fds {f['fds']:,}; alive {f['alive']}"
    )
    print(
        f"one peer more: member peers {f['peers_after_one_more']:,}, messages refused "
        f"{f['rejected_after_one_more']} (a 'too many peers' line in its log when over)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=100_000)
    parser.add_argument("--nofile", type=int, default=1024)
    parser.add_argument("--max-failures", type=int, default=50)
    parser.add_argument(
        "--concurrent",
        type=int,
        default=0,
        help="instead: this many raw peers at once plus one real one (4095: MAX_PEERS)",
    )
    args = parser.parse_args()
    if args.concurrent:
        await main_concurrent(args.concurrent)
        return
    f = await run_churn(args.peers, args.nofile, args.max_failures)
    print(
        f"member under ulimit -n {f['nofile']}; {f['peers']:,} short-lived peers one after "
        "another (an ActorSystem each: one ask, then aclose); target: all succeed, fds flat"
    )
    print(
        f"peers tried {f['tried']:,}, succeeded {f['ok']:,}, failed {f['failed']:,}"
        + (f" (stopped after {args.max_failures})" if f["failed"] >= args.max_failures else "")
    )
    if f["first_failure"]:
        print(f"first failure: {f['first_failure'][:300]}")
    print(
        f"member open fds: {f['fds_before']} after warm-up -> {f['fds_after']} at the end "
        f"(peak {f['fds_peak']}); member alive: {f['member_alive']}"
    )
    print(f"member RSS: {f['rss_before_mib']:.1f} MiB -> {f['rss_after_mib']:.1f} MiB")
    print(f"{f['peers_per_s']:.0f} peers/s over {f['seconds']:.0f} s")


if __name__ == "__main__":
    cf.run(main())
