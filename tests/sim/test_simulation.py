"""The deterministic simulation (cfactor.testing.sim): 200 seeds of the mixed workload hold
every invariant, a seed replays to the same trace hash (also under another
PYTHONHASHSEED), and reintroduced past bugs are found."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from cfactor.testing.sim import Ledger, SimConfig, Violation, run_seed
from cfactor.testing.sim.bugs import BUGS, reintroduce

CI_SEEDS = 200


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m cfactor.testing.sim ARGS`` in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "cfactor.testing.sim", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


@pytest.mark.timeout(600)  # ~20 s alone; the machine is shared
def test_two_hundred_seeds_of_the_mixed_workload_hold_every_invariant(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.CRITICAL, logger="cfactor")  # faults make members complain
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
        out = run_cli("--seed", str(seed), env={**os.environ, "PYTHONHASHSEED": hash_seed})
        line = next(x for x in out.stdout.splitlines() if x.startswith(f"seed {seed}: trace "))
        hashes.add(line.split()[3])
    assert len(hashes) == 1, hashes


def test_without_faults_nothing_is_lost() -> None:
    result = run_seed(1, SimConfig(faults=False))
    assert result.ok, result.violation or result.error
    assert not result.faults


#: How many seeds each reintroduced bug may take to be found (measured: stale-tells-vanish
#: at seed 11, ask-ignores-deadline at 0, orphan-claims-stay at 1, no-fencing at 40).
SEARCH = {
    "stale-tells-vanish": 30,
    "ask-ignores-deadline": 30,
    "orphan-claims-stay": 30,
    "no-fencing": 60,
}


def test_every_reintroducible_bug_has_a_search_bound() -> None:
    assert set(SEARCH) == set(BUGS)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("bug", sorted(SEARCH))
def test_a_reintroduced_bug_is_found(bug: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL, logger="cfactor")
    with reintroduce(bug):
        found = next((s for s in range(SEARCH[bug]) if not run_seed(s).ok), None)
    assert found is not None, f"{bug} ({BUGS[bug][0]}) not found in {SEARCH[bug]} seeds"
    assert run_seed(found).ok  # and it was the bug: the same seed holds without it


def test_the_ledger_reports_two_activations_serving_one_name() -> None:
    now = [1.0]
    ledger = Ledger(now=lambda: now[0], is_alive=lambda member: True)
    old = ledger.started("k", "m1")
    ledger.handle(old, ("ask", 1))
    now[0] = 2.0
    new = ledger.started("k", "m2")
    ledger.handle(new, ("ask", 2))  # the newer one serves: fine
    now[0] = 3.0
    with pytest.raises(Violation, match="one activation per name"):
        ledger.handle(old, ("ask", 3))  # the old one still serving: split brain
    ledger.stopped(old)


def test_the_ledger_reports_a_stream_out_of_order() -> None:
    ledger = Ledger(now=lambda: 1.0, is_alive=lambda member: True)
    activation = ledger.started("k", "m1")
    ledger.handle(activation, ("tell", "s0", 0, "s0-0"))
    ledger.handle(activation, ("tell", "s0", 2, "s0-2"))  # a gap is a loss, not disorder
    with pytest.raises(Violation, match="per sender-receiver order"):
        ledger.handle(activation, ("tell", "s0", 1, "s0-1"))


def test_the_command_line_refuses_bad_input_with_a_clear_message() -> None:
    for args, says in (
        (["--seeds", "0"], "--seeds must be at least 1"),
        (["--bug", "nonsense"], "invalid choice"),
        (["--seeds", "3", "--seed", "4"], "not allowed with argument"),
    ):
        out = run_cli(*args)
        assert out.returncode == 2, args
        assert says in out.stderr, out.stderr


def test_the_command_line_reports_rate_checks_and_faults() -> None:
    out = run_cli("--seeds", "3")
    assert out.returncode == 0, out.stdout + out.stderr
    summary = out.stdout.splitlines()
    assert any(line.startswith("3 seeds in ") and "seeds/s" in line for line in summary)
    assert any("invariant checks" in line for line in summary)
    assert any(line.startswith("faults injected: ") for line in summary)
    assert summary[-1] == "every invariant held"
