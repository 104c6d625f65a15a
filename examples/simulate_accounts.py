"""Simulate your own actors: an account service on a 5-member cluster under faults.

Each seed starts 5 members (real cluster layer, memory transport and store, virtual
time), spawns one named ``Account`` actor, and moves money in and out of it from random
members while members crash, pause and lose the network or the store. The simulation
checks its own invariants (every ask ends by its deadline, a claimed name has an actor,
nothing left running after shutdown); this file adds the account's: the balance never
goes below zero, and a withdrawal that was refused leaves the balance as it was.

    python examples/simulate_accounts.py --seeds 50       # 50 seeds, a few seconds
    python examples/simulate_accounts.py --seed 7         # replay one (prints its trace hash)
    python examples/simulate_accounts.py --seeds 50 --overdraft   # a bug: found at once

An account keeps its balance in memory: after a crash its name comes back elsewhere
with a fresh balance of 0 (state that must survive belongs in a store), which the
invariants allow.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import cfactor as cf
from cfactor.testing.sim import MemberCrashed, Simulation, main


class Insufficient(cf.CfactorError):
    """A withdrawal larger than the balance."""


class Account(cf.Actor):
    # The bug the example can switch on. Members import this file afresh (as members of
    # a real cluster would), so the switch travels in the environment, not a class attribute.
    overdraft = os.environ.get("SIMULATE_ACCOUNTS_OVERDRAFT") == "1"

    def __init__(self) -> None:
        self.balance = 0

    async def receive(self, message: Any) -> Any:
        match message:
            case ("deposit", int(amount)):
                self.balance += amount
            case ("withdraw", int(amount)):
                if amount > self.balance and not self.overdraft:
                    raise Insufficient(f"balance {self.balance}, asked for {amount}")
                self.balance -= amount
            case "balance":
                pass
            case _:
                raise ValueError(f"unknown message {message!r}")
        return self.balance


async def workload(sim: Simulation) -> None:
    first = sim.live()[0]
    await sim.on(first, lambda system: system.spawn(Account, name="account"))
    for _ in range(40):
        await sim.sleep(sim.rng.uniform(0.0, 0.3))
        via = sim.rng.choice(sim.live())
        operation = sim.rng.choice(("deposit", "withdraw"))
        amount = sim.rng.randint(1, 50)
        try:
            before = await sim.ask(via, "account", "balance")
            after = await sim.ask(via, "account", (operation, amount))
        except Insufficient:
            continue  # refused: the next check reads the balance again
        except (cf.CfactorError, MemberCrashed):
            continue  # a fault got in the way: typed, and the simulation checked its deadline
        sim.check(after >= 0, "a balance never goes below zero", f"{after} after {operation}")
        if operation == "deposit" and before is not None:
            sim.check(
                after >= amount, "a deposit is in the balance", f"{before} + {amount} -> {after}"
            )


if __name__ == "__main__":
    argv = sys.argv[1:]
    prog = "python examples/simulate_accounts.py"
    if "--overdraft" in argv:
        argv.remove("--overdraft")
        os.environ["SIMULATE_ACCOUNTS_OVERDRAFT"] = "1"
        prog += " --overdraft"
    sys.exit(main(argv, workload=workload, prog=prog))
