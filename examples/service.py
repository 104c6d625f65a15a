"""A replicated service used from an ordinary asyncio program.

The app runs ``PriceBook`` as a service with three replicas behind one ref, and
registers a plain function, ``with_tax``, as a callable service (CloudFlow's
``app.Reg``). The program starts the services inside its own actor system, asks
them concurrently, and prints which replicas answered.

    python examples/service.py
    python examples/service.py --cluster http://127.0.0.1:2379   # replicas on the members
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import cfactor as cf

PRICES = {"apple": 0.5, "pear": 0.75, "plum": 0.3, "fig": 1.2}


class PriceBook(cf.Actor):
    """Looks prices up (slowly, as if from a database)."""

    async def on_start(self) -> None:
        self.name = f"replica-{id(self) % 10_000:04d}"

    async def receive(self, message: Any) -> Any:
        match message:
            case ("price", str(item), int(quantity)):
                await asyncio.sleep(0.01)  # the lookup
                if item not in PRICES:
                    raise KeyError(f"no price for {item!r}")
                return (round(PRICES[item] * quantity, 2), self.name)
        raise ValueError(f"unknown request {message!r}")


def with_tax(amount: float, rate: float = 0.2) -> float:
    """The amount with sales tax added."""
    return round(amount * (1 + rate), 2)


app = cf.App("shop")
app.service(PriceBook, "prices", replicas=3)
app.reg(with_tax, "the amount with sales tax added")


async def main(cluster: cf.Cluster | None) -> None:
    order = [("apple", 4), ("pear", 2), ("plum", 10), ("fig", 1)] * 6
    # Embedded by default; with a cluster, the replicas are spread over its members.
    system = (
        cf.ActorSystem(listen="tcp://127.0.0.1:0", cluster=cluster) if cluster else cf.ActorSystem()
    )
    async with system, app.start(system) as running:
        prices = running.service("prices")
        answers = await asyncio.gather(*(prices.ask(("price", i, q)) for i, q in order))
        subtotal = round(sum(price for price, _ in answers), 2)
        print(f"{len(answers)} lookups answered by {len({who for _, who in answers})} replicas")
        print(f"subtotal {subtotal}, with tax {await running.call('with_tax', subtotal)}")
        try:
            await prices.ask(("price", "durian", 1))
        except cf.RemoteActorError as exc:
            print(f"asking for durian: {exc.type_name}: {exc.message}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cluster", metavar="ETCD_URL", help="run the services on this cluster")
    parser.add_argument("--name", default="local", help="the cluster's name (default: local)")
    args = parser.parse_args()
    cf.run(main(cf.Cluster(etcd=args.cluster, name=args.name) if args.cluster else None))
