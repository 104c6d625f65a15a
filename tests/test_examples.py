"""The examples are programs people copy: they must run and print the right things."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_the_embedded_example_keeps_the_books_straight_through_a_restart() -> None:
    out = run_example("embedded.py")
    # 10 apples and 5 pears; ann buys 3+2, bob 4+4 (pears run out), cid 5 (apples do).
    assert "stock left: {'apple': 3, 'pear': 3}" in out
    assert "orders recorded: 3" in out
    assert "restarts: 1" in out
    assert "price feed failed (ConnectionError), retrying" in out


def test_the_two_process_example_crosses_the_wire_both_ways() -> None:
    out = run_example("two_processes.py")
    assert "the bank lives at tcp://127.0.0.1:" in out
    assert "ann's balance: 70" in out
    assert "withdraw 500: ('refused', 'ann has only 70')" in out
    assert "error from the other process: ValueError: unknown message" in out
    # The bank told the auditor in this process through a ref it got in a message.
    assert "audit log: ['deposit ann 100']" in out


def test_wordcount_matches_collections_counter() -> None:
    out = run_example("wordcount.py", "--words", "50000")
    assert "50000 words, " in out
    assert "matches collections.Counter: True" in out


def test_gigasort_output_is_sorted_complete_and_checksummed(tmp_path: Path) -> None:
    out = run_example("gigasort.py", "--records", "20000", "--out", str(tmp_path))
    assert "sorted 20000 records into 4 partitions" in out
    assert "sorted and complete: yes" in out
    parts = sorted(tmp_path.glob("part-*"))
    assert len(parts) == 4
    assert sum(p.stat().st_size for p in parts) == 20000 * 100


def test_pipeline_runs_its_steps_in_order() -> None:
    out = run_example("pipeline.py")
    lines = [line.split()[:2] for line in out.splitlines()]
    assert lines == [
        ["prepare", "ok"],
        ["build", "ok"],
        ["test", "ok"],
        ["package", "ok"],
        ["lint", "ok"],
    ]


def test_pipeline_with_a_failing_step_names_it_and_skips_what_follows() -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "pipeline.py"), "--fail"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1
    assert "run failed: step pipeline.ci.chain.test failed (exit code 3)" in out.stdout
    assert "expected 4 lines, got 3" in out.stdout
    assert "package  skipped" in out.stdout
    assert "lint     ok" in out.stdout


def test_service_example_spreads_lookups_over_replicas() -> None:
    out = run_example("service.py")
    assert "24 lookups answered by 3 replicas" in out
    assert "subtotal 46.2, with tax 55.44" in out
    assert "asking for durian: KeyError" in out


def test_simulating_your_own_actors_holds_and_finds_a_reintroduced_overdraft() -> None:
    out = run_example("simulate_accounts.py", "--seeds", "20")
    assert "20 seeds in" in out
    assert "every invariant held" in out
    assert "faults injected: " in out
    assert "faults injected: none" not in out
    broken = subprocess.run(
        [sys.executable, str(EXAMPLES / "simulate_accounts.py"), "--seeds", "20", "--overdraft"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert broken.returncode == 1
    assert "a balance never goes below zero" in broken.stdout
    replay = "python examples/simulate_accounts.py --overdraft --seed "
    assert replay in broken.stdout
    # The replay command replays: the same seed fails the same way, with a trace hash.
    seed = broken.stdout.split(replay)[1].split()[0]
    again = subprocess.run(
        [sys.executable, str(EXAMPLES / "simulate_accounts.py"), "--overdraft", "--seed", seed],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 1
    assert f"seed {seed}: trace " in again.stdout
    assert "a balance never goes below zero" in again.stdout
