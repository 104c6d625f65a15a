"""cfactor embedded in an ordinary asyncio program: no server, no network.

An asyncio program (here: a few "client" coroutines placing orders) keeps its own
tasks and uses actors where one-message-at-a-time state helps:

- ``Inventory`` owns the stock; no lock is needed because an actor handles one
  message at a time.
- ``Auditor`` is a child of ``Inventory`` and records every order.
- A flaky ``PriceFeed`` fails now and then; its supervisor restarts it with a fresh
  instance and the clients never see a hang, only a typed error they can retry.

Run it: ``python examples/embedded.py``
"""

from __future__ import annotations

import asyncio
from typing import Any

import cfactor as cf


class Auditor(cf.Actor):
    def __init__(self) -> None:
        self.log: list[tuple[str, str, int]] = []

    async def receive(self, message: Any) -> Any:
        match message:
            case ("record", client, item, qty):
                self.log.append((client, item, qty))
                return None
            case "count":
                return len(self.log)
        raise ValueError(f"unknown message {message!r}")


class Inventory(cf.Actor):
    def __init__(self, stock: dict[str, int]) -> None:
        self.stock = dict(stock)
        self.auditor: cf.ActorRef | None = None

    async def on_start(self) -> None:
        # Spawned from inside an actor: the auditor is this actor's child.
        self.auditor = await self.system.spawn(Auditor, name="auditor")

    async def receive(self, message: Any) -> Any:
        assert self.auditor is not None
        match message:
            case ("order", client, item, qty):
                if self.stock.get(item, 0) < qty:
                    return False
                self.stock[item] -= qty
                await self.auditor.tell(("record", client, item, qty))
                return True
            case "stock":
                return dict(self.stock)
        raise ValueError(f"unknown message {message!r}")


class PriceFeed(cf.Actor):
    """Fails on every fifth request, like a flaky upstream."""

    def __init__(self, prices: dict[str, float]) -> None:
        self.prices = prices
        self.served = 0

    async def receive(self, message: Any) -> Any:
        self.served += 1
        if self.served % 5 == 0:
            raise ConnectionError("upstream price service hiccup")
        return self.prices[message]


async def client(name: str, system: cf.ActorSystem, orders: list[tuple[str, int]]) -> float:
    inventory = system.ref("inventory")
    feed = system.ref("prices")
    spent = 0.0
    for item, qty in orders:
        for _attempt in range(3):
            try:
                price = await feed.ask(item, timeout=1.0)
                break
            except cf.RemoteActorError as exc:  # the feed failed; it is restarted for us
                print(f"  {name}: price feed failed ({exc.type_name}), retrying")
        else:
            continue
        if await inventory.ask(("order", name, item, qty), timeout=1.0):
            spent += price * qty
        await asyncio.sleep(0)  # an ordinary asyncio program does other work too
    return spent


async def main() -> None:
    async with cf.ActorSystem() as system:
        await system.spawn(Inventory, {"apple": 10, "pear": 5}, name="inventory")
        await system.spawn(PriceFeed, {"apple": 0.5, "pear": 0.8}, name="prices")

        spent = await asyncio.gather(
            client("ann", system, [("apple", 3), ("pear", 2)]),
            client("bob", system, [("apple", 4), ("pear", 4)]),
            client("cid", system, [("apple", 5)]),
        )
        stock = await system.ref("inventory").ask("stock")
        orders = await system.ref("auditor").ask("count")
        print(f"spent per client: {dict(zip(['ann', 'bob', 'cid'], spent, strict=True))}")
        print(f"stock left: {stock}")
        print(f"orders recorded: {orders}")
        print(f"restarts: {system.statistics().restarts}")


if __name__ == "__main__":
    cf.run(main)
