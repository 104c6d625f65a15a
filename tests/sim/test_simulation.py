"""The deterministic simulation (cfactor.testing.sim): 200 seeds of the mixed workload hold
every invariant, a seed replays to the same trace hash (also under another
PYTHONHASHSEED), and reintroduced past bugs are found."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cfactor.testing.sim import SimConfig, run_seed
from cfactor.testing.sim.bugs import BUGS, reintroduce

CI_SEEDS = 200


def test_two_hundred_seeds_of_the_mixed_workload_hold_every_invariant() -> None:
    failed = []
    faults = 0
    for seed in range(CI_SEEDS):
        result = run_seed(seed)
        faults += sum(result.faults.values())
        if not result.ok:
            failed.append(
                f"seed {seed}: {result.violation or result.error!r} "
                f"(replay: python -m cfactor.testing.sim --seed {seed} --verbose)"
            )
    assert not failed, "\n".join(failed)
    assert faults > CI_SEEDS  # the seeds did inject faults


def test_a_seed_replays_to_the_same_trace_and_another_seed_does_not() -> None:
    first, again, other = run_seed(7), run_seed(7), run_seed(8)
    assert first.trace_hash == again.trace_hash
    assert first.events == again.events
    assert other.trace_hash != first.trace_hash


@pytest.mark.parametrize("seed", [3, 26])
def test_the_trace_does_not_follow_pythonhashseed(seed: int) -> None:
    hashes = set()
    for hash_seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-m", "cfactor.testing.sim", "--seed", str(seed)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            check=False,
        )
        line = next(x for x in out.stdout.splitlines() if x.startswith(f"seed {seed}: trace "))
        hashes.add(line.split()[3])
    assert len(hashes) == 1, hashes


def test_without_faults_nothing_is_lost() -> None:
    result = run_seed(1, SimConfig(faults=False))
    assert result.ok, result.violation or result.error
    assert not result.faults


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_a_reintroduced_bug_is_found_within_twenty_seeds(bug: str) -> None:
    with reintroduce(bug):
        found = next((s for s in range(20) if not run_seed(s).ok), None)
    assert found is not None, f"{bug} ({BUGS[bug][0]}) not found in 20 seeds"
    assert run_seed(found).ok  # and it was the bug: the same seed holds without it
