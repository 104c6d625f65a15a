"""``python -m cfactor.testing.sim``: run seeds of the simulated cluster; replay one.

``main(workload=...)`` gives a user's own workload the same command line (see
examples/simulate_accounts.py).

python -m cfactor.testing.sim --seeds 200            # seeds 0..199, the CI mix
python -m cfactor.testing.sim --seeds 10000 --start 5000
python -m cfactor.testing.sim --seed 17 --verbose    # replay one, with the runtime's log
python -m cfactor.testing.sim --seeds 500 --bug no-fencing   # a reintroduced bug
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter

from cfactor.testing.sim.bugs import BUGS, reintroduce
from cfactor.testing.sim.core import SeedResult, SimConfig, Workload, run_seed


def replay_command(seed: int, args: argparse.Namespace) -> str:
    extra = ""
    extra += f" --bug {args.bug}" if args.bug else ""
    extra += " --no-faults" if args.no_faults else ""
    extra += " --silent-drops" if args.silent_drops else ""
    extra += " --duplicates" if args.duplicates else ""
    return f"{args.prog} --seed {seed}{extra} --verbose"


def report(result: SeedResult, args: argparse.Namespace) -> None:
    what = (
        result.violation
        if result.violation is not None
        else f"{type(result.error).__name__}: {result.error}"
    )
    print(f"\nseed {result.seed} FAILED at {result.virtual_s:.3f} virtual s: {what}")
    print("last events:")
    for line in result.recent[-12:]:
        print(f"    {line}")
    if args.verbose and result.traceback:
        print(result.traceback)
    print(f"replay: {replay_command(result.seed, args)}")


def main(
    argv: list[str] | None = None,
    *,
    workload: Workload | None = None,
    prog: str = "python -m cfactor.testing.sim",
) -> int:
    """Run seeds (of the built-in mix, or of ``workload``); 0 if every one held."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a simulated cluster (5 members, real cluster/autoscale/flow layers, "
        "virtual time, seeded faults) under many seeds and check its invariants.",
        epilog="Exit status: 0 if every seed held, 1 if one broke an invariant, 2 on bad "
        "arguments.",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--seeds", type=int, default=200, metavar="N", help="run N seeds (default 200)"
    )
    which.add_argument(
        "--seed", type=int, metavar="S", help="replay one seed and print its trace hash"
    )
    parser.add_argument(
        "--start", type=int, default=0, metavar="S", help="first seed of --seeds (default 0)"
    )
    parser.add_argument(
        "--bug",
        choices=sorted(BUGS),
        help="reintroduce one of the project's past bugs (to see it found)",
    )
    parser.add_argument(
        "--no-faults", action="store_true", help="the workload without injected faults"
    )
    parser.add_argument(
        "--silent-drops",
        action="store_true",
        help="also lose single frames on live links (the flow layer does not survive it yet)",
    )
    parser.add_argument(
        "--duplicates",
        action="store_true",
        help="also repeat single frames on live links (a flow's reduce counts a repeat twice)",
    )
    parser.add_argument(
        "--keep-going", action="store_true", help="do not stop at the first failing seed"
    )
    parser.add_argument("--verbose", action="store_true", help="show the runtime's warnings")
    args = parser.parse_args(argv)
    args.prog = prog
    if args.seeds is not None and args.seeds < 1:
        parser.error(f"--seeds must be at least 1, not {args.seeds}")
    logging.basicConfig(
        level=logging.WARNING if args.verbose else logging.CRITICAL, format="%(name)s: %(message)s"
    )
    config = SimConfig(faults=not args.no_faults, silent_drops=args.silent_drops, workload=workload)
    seeds = [args.seed] if args.seed is not None else range(args.start, args.start + args.seeds)
    failed: list[int] = []
    faults: Counter[str] = Counter()
    known: Counter[str] = Counter()
    checks = events = 0
    virtual = 0.0
    started = time.perf_counter()
    with reintroduce(args.bug):
        for done, seed in enumerate(seeds, 1):
            result = run_seed(seed, config)
            faults.update(result.faults)
            known.update(result.known)
            checks += result.checks
            events += result.events
            virtual += result.virtual_s
            if args.seed is not None:
                print(
                    f"seed {seed}: trace {result.trace_hash} "
                    f"({result.events} events, {result.virtual_s:.1f} virtual s)"
                )
            if not result.ok:
                failed.append(seed)
                report(result, args)
                if not args.keep_going:
                    break
            if args.seed is None and (done % 50 == 0 or done == len(seeds)):
                rate = done / (time.perf_counter() - started)
                print(
                    f"  {done}/{len(seeds)} seeds, {rate:.1f} seeds/s, {len(failed)} failed",
                    file=sys.stderr,
                )
    wall = time.perf_counter() - started
    ran = done
    print(
        f"{ran} seeds in {wall:.1f} s ({ran / wall:.1f} seeds/s; {virtual:.0f} virtual s, "
        f"{virtual / wall:.0f}x real time): {checks:,} invariant checks, {events:,} events traced"
    )
    print(
        "faults injected: " + (", ".join(f"{k} {v:,}" for k, v in sorted(faults.items())) or "none")
    )
    if failed:
        print(
            f"FAILED: seed {failed[0]}"
            + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else "")
        )
        print(f"replay: {replay_command(failed[0], args)}")
        return 1
    print("every invariant held")
    return 0
