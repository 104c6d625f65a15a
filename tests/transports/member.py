"""A member process for multi-process tests: ``python -m tests.transports.member``.

It listens, spawns a few named actors, prints ``ADDRESS <url>`` on one line, and
serves until it is killed or its stdin closes (so a crashed test leaves no orphans).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import cfactor as cf


class Counter(cf.Actor):
    def __init__(self) -> None:
        self.n = 0

    async def receive(self, message: Any) -> Any:
        match message:
            case ("add", int(k)):
                self.n += k
                return None
            case "get":
                return self.n
            case ("fail", str(text)):
                raise ValueError(text)
        return message


class Echo(cf.Actor):
    async def receive(self, message: Any) -> Any:
        match message:
            case ("sleep", float(seconds)):
                await asyncio.sleep(seconds)
                return seconds
        return message


class Forwarder(cf.Actor):
    """Asks the ref it is given: refs must work on the far side of the wire."""

    async def receive(self, message: Any) -> Any:
        match message:
            case ("ask", cf.ActorRef() as ref, question):
                return await ref.ask(question, timeout=5)
            case ("tell", cf.ActorRef() as ref, note):
                await ref.tell(note)
                return "told"
        return None


class Recorder(cf.Actor):
    def __init__(self) -> None:
        self.seen: list[Any] = []

    async def receive(self, message: Any) -> Any:
        if message == "log":
            return list(self.seen)
        if message == "count":
            return len(self.seen)
        self.seen.append(message)
        return None


class Stats(cf.Actor):
    """Reports this member's statistics, so tests can see rejected frames."""

    async def receive(self, message: Any) -> Any:
        stats = self.system.statistics()
        transport = stats.transport
        return {
            "dead_letters": stats.dead_letters,
            "frames_rejected": transport.frames_rejected if transport else -1,
            "frames_received": transport.frames_received if transport else -1,
            "replies_dropped": stats.replies_dropped,
        }


ACTORS: dict[str, type[cf.Actor]] = {
    "counter": Counter,
    "echo": Echo,
    "forwarder": Forwarder,
    "recorder": Recorder,
    "stats": Stats,
}


async def serve(listen: str, security: cf.Curve | None, options: dict[str, float]) -> None:
    async with cf.ActorSystem(
        listen=listen, security=security, transport_options=options
    ) as system:
        for name, cls in ACTORS.items():
            await system.spawn(cls, name=name)
        print(f"ADDRESS {system.address}", flush=True)
        loop = asyncio.get_running_loop()
        # Serve until stdin closes: the parent test ended or died.
        await loop.run_in_executor(None, sys.stdin.read)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", default="tcp://127.0.0.1:0")
    parser.add_argument("--key", help="secret key file (NAME.key) for CURVE")
    parser.add_argument("--allow", action="append", default=[], help="allowed public key file")
    parser.add_argument("--server-key", action="append", default=[], help="ADDRESS=PUBLICKEY")
    parser.add_argument("--heartbeat-timeout", type=float, default=1.0)
    args = parser.parse_args()
    options = {
        "heartbeat_interval_s": args.heartbeat_timeout / 5,
        "heartbeat_timeout_s": args.heartbeat_timeout,
    }
    security = None
    if args.key:
        server_keys = dict(item.split("=", 1) for item in args.server_key)
        security = cf.Curve.from_files(args.key, args.allow, server_keys)
    cf.run(serve(args.listen, security, options))


if __name__ == "__main__":
    main()
