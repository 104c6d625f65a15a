"""Two processes, one program: actors talk across a process boundary as they do locally.

Run it: ``python examples/two_processes.py``

The script starts a copy of itself as a second member (``--member``), which listens on
a free loopback port and hosts a ``Bank`` actor. This process listens too, hosts an
``Auditor``, and hands the bank a ref to it inside a message: the bank then reports to
the auditor across the wire. Errors arrive typed, with the remote traceback.

A refusal the bank expects (not enough money) is an answer, not an exception: as in
Erlang and Akka, an exception means the actor is broken, and its supervisor restarts
it with a fresh instance (its balances would start again from nothing).
"""

from __future__ import annotations

import asyncio
import sys
from asyncio.subprocess import PIPE
from typing import Any

import cfactor as cf


class Auditor(cf.Actor):
    def __init__(self) -> None:
        self.entries: list[str] = []

    async def receive(self, message: Any) -> Any:
        if message == "entries":
            return list(self.entries)
        self.entries.append(message)
        return None


class Bank(cf.Actor):
    def __init__(self) -> None:
        self.balances: dict[str, int] = {}
        self.auditor: cf.ActorRef | None = None

    async def receive(self, message: Any) -> Any:
        match message:
            case ("audit-to", cf.ActorRef() as auditor):
                self.auditor = auditor  # a ref to an actor in the other process
                return "ok"
            case ("deposit", str(who), int(amount)):
                self.balances[who] = self.balances.get(who, 0) + amount
                if self.auditor is not None:
                    await self.auditor.tell(f"deposit {who} {amount}")
                return self.balances[who]
            case ("withdraw", str(who), int(amount)):
                if self.balances.get(who, 0) < amount:
                    return ("refused", f"{who} has only {self.balances.get(who, 0)}")
                self.balances[who] -= amount
                return self.balances[who]
        raise ValueError(f"unknown message {message!r}")


async def member() -> None:
    async with cf.ActorSystem(listen="tcp://127.0.0.1:0") as system:
        await system.spawn(Bank, name="bank")
        print(system.address, flush=True)
        # Serve until the parent closes our stdin.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def main() -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--member", stdin=PIPE, stdout=PIPE
    )
    try:
        assert child.stdout is not None
        bank_address = (await child.stdout.readline()).decode().strip()
        async with cf.ActorSystem(listen="tcp://127.0.0.1:0") as system:
            auditor = await system.spawn(Auditor, name="auditor")
            bank = system.ref("bank", at=bank_address)
            print(f"this member: {system.address}; the bank lives at {bank_address}")

            await bank.ask(("audit-to", auditor), timeout=5)
            print("ann's balance:", await bank.ask(("deposit", "ann", 100), timeout=5))
            print("ann's balance:", await bank.ask(("withdraw", "ann", 30), timeout=5))
            print("withdraw 500:", await bank.ask(("withdraw", "ann", 500), timeout=5))
            try:
                await bank.ask(("transfer", "ann", "bob"), timeout=5)  # a bug: unknown message
            except cf.RemoteActorError as exc:
                print(f"error from the other process: {exc.type_name}: {exc.message}")
            await asyncio.sleep(0.1)  # the auditor's tell crosses the wire
            print("audit log:", await auditor.ask("entries"))
    finally:
        if child.stdin is not None:
            child.stdin.close()  # the member's cue to stop
        await child.wait()


if __name__ == "__main__":
    cf.run(member if "--member" in sys.argv else main)
