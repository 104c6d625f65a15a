"""The examples are programs people copy: they must run and print the right things."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str) -> str:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
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
