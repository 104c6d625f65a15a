"""Real member processes talking over real ZeroMQ sockets on loopback.

Each member is ``python -m tests.transports.member``: it listens, spawns a few named
actors, prints its address, and serves until its stdin closes. The test process is a
member too (it listens), so refs and answers travel in every direction.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack
import pytest
import zmq

import cfactor as cf
from cfactor.cli import main as cli_main
from tests.transports.conftest import HAVE_ZMQ_TRANSPORT

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not HAVE_ZMQ_TRANSPORT, reason="no cfactor_zmq"),
]

ROOT = Path(__file__).resolve().parents[2]
HEARTBEAT_TIMEOUT_S = 1.0
OPTIONS = {
    "heartbeat_interval_s": HEARTBEAT_TIMEOUT_S / 5,
    "heartbeat_timeout_s": HEARTBEAT_TIMEOUT_S,
}


class Member:
    """A member process and the address it printed."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.transports.member", *args],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.err = ""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # blocks until the member is up
        if not line.startswith("ADDRESS "):
            self.stop()
            raise AssertionError(f"member did not start: {line!r} {self.stderr()}")
        self.address = line.split()[1]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.stop()

    def stop(self) -> str:
        """Close stdin (the member's cue to exit), reap it, and return its stderr."""
        if self.process.returncode is None:
            try:
                _, self.err = self.process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                _, self.err = self.process.communicate()
        return self.err

    def stderr(self) -> str:
        return self.stop() if self.process.poll() is not None else ""


@asynccontextmanager
async def cluster(count: int, *args: str) -> AsyncIterator[tuple[cf.ActorSystem, list[Member]]]:
    loop = asyncio.get_running_loop()
    started = await asyncio.gather(
        *(
            loop.run_in_executor(
                None, Member, "--heartbeat-timeout", str(HEARTBEAT_TIMEOUT_S), *args
            )
            for _ in range(count)
        )
    )
    try:
        async with cf.ActorSystem(listen="tcp://127.0.0.1:0", transport_options=OPTIONS) as me:
            yield me, list(started)
    finally:
        for member in started:
            member.stop()


class Local(cf.Actor):
    def __init__(self) -> None:
        self.notes: list[Any] = []

    async def receive(self, message: Any) -> Any:
        if message == "notes":
            return list(self.notes)
        self.notes.append(message)
        return f"local got {message!r}"


async def test_tell_and_ask_between_processes() -> None:
    async with cluster(1) as (me, (b,)):
        counter = me.ref("counter", at=b.address)
        for _ in range(100):
            await counter.tell(("add", 1))
        counter.tell_nowait(("add", 10))
        assert await counter.ask("get", timeout=5) == 110
        with pytest.raises(cf.RemoteActorError) as info:
            await counter.ask(("fail", "bad"), timeout=5)
        assert info.value.type_name == "ValueError"
        assert "raise ValueError(text)" in info.value.traceback
        with pytest.raises(cf.ActorNotFound):
            await me.ref("nobody", at=b.address).ask("?", timeout=5)


async def test_order_holds_across_processes() -> None:
    async with cluster(1) as (me, (b,)):
        recorder = me.ref("recorder", at=b.address)
        for i in range(10_000):
            await recorder.tell(i)
        assert await recorder.ask("log", timeout=10) == list(range(10_000))


async def test_refs_travel_between_three_processes() -> None:
    async with cluster(2) as (me, (b, c)):
        mine = await me.spawn(Local, name="local")
        forwarder_b = me.ref("forwarder", at=b.address)
        counter_c = me.ref("counter", at=c.address)
        # b asks c on our behalf, with a ref we pass; the answer comes back through b.
        await counter_c.tell(("add", 5))
        assert await forwarder_b.ask(("ask", counter_c, "get"), timeout=5) == 5
        # b asks an actor in this process through a ref we passed it.
        assert await forwarder_b.ask(("ask", mine, "hello"), timeout=5) == "local got 'hello'"
        assert await forwarder_b.ask(("tell", mine, "note"), timeout=5) == "told"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while len(await mine.ask("notes")) < 2 and loop.time() < deadline:
            await asyncio.sleep(0.02)  # polling another process
        assert await mine.ask("notes") == ["hello", "note"]


async def test_a_killed_member_fails_asks_with_a_typed_error_within_the_bound() -> None:
    async with cluster(2) as (me, (b, c)):
        echo_b = me.ref("echo", at=b.address)
        assert await echo_b.ask("ping", timeout=5) == "ping"
        slow = asyncio.create_task(echo_b.ask(("sleep", 60.0), timeout=30))
        await asyncio.sleep(0.2)
        loop = asyncio.get_running_loop()
        killed_at = loop.time()
        b.kill()
        with pytest.raises(cf.MemberUnreachable):
            await asyncio.wait_for(slow, HEARTBEAT_TIMEOUT_S + 3)
        assert loop.time() - killed_at < HEARTBEAT_TIMEOUT_S + 2
        with pytest.raises(cf.MemberUnreachable):
            await asyncio.wait_for(echo_b.ask("ping", timeout=30), HEARTBEAT_TIMEOUT_S + 3)
        # The survivor is unaffected.
        assert await me.ref("echo", at=c.address).ask("still here", timeout=5) == "still here"


def hostile_frames(address: str, count: int, seed: int) -> Iterator[list[bytes]]:
    """Multipart messages a broken or malicious peer might send."""
    rng = random.Random(seed)
    good = b"\x01" + msgpack.packb([1, "echo", None, 0, None, "hi"])
    for i in range(count):
        match i % 8:
            case 0:
                yield [rng.randbytes(rng.randrange(1, 64))]
            case 1:
                yield [b"D", rng.randbytes(rng.randrange(0, 200))]
            case 2:
                yield [b"D", b"\x09" + good[1:]]  # unknown version
            case 3:
                yield [b"D", good[: rng.randrange(1, len(good))]]  # truncated
            case 4:
                yield [b"D", b"\x01" + b"\x91" * 5000]  # deep nesting
            case 5:
                yield [b"D", b"\x01\xdd\xff\xff\xff\xff"]  # claims 4 G items
            case 6:
                yield [rng.randbytes(3), good, good, b""]  # bad header, odd parts
            case _:
                yield [b"D", b"\x01" + msgpack.packb({"not": "an envelope"})]
    del address


async def test_a_member_survives_ten_thousand_hostile_frames_and_keeps_answering() -> None:
    async with cluster(1) as (me, (b,)):
        stats = me.ref("stats", at=b.address)
        before = await stats.ask("stats", timeout=5)
        context = zmq.Context()
        raw = context.socket(zmq.DEALER)
        raw.setsockopt(zmq.LINGER, 0)
        # Claims an address (routing id: address, NUL, an 8-byte nonce).
        raw.setsockopt(zmq.ROUTING_ID, b"tcp://127.0.0.1:1\x00" + b"n" * 8)
        raw.connect(b.address)
        try:
            sent = 0
            for parts in hostile_frames(b.address, 10_000, seed=7):
                raw.send_multipart(parts)
                sent += 1
                if sent % 500 == 0:
                    await asyncio.sleep(0.01)  # bounded pace: let the member drain
            assert sent == 10_000
            echo = me.ref("echo", at=b.address)
            assert await echo.ask("still serving", timeout=10) == "still serving"
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while True:
                after = await stats.ask("stats", timeout=5)
                if (
                    after["frames_rejected"] - before["frames_rejected"] >= 9_000
                    or loop.time() > deadline
                ):
                    break
                await asyncio.sleep(0.1)
            # Every hostile message was rejected and counted (a message may hold several
            # bad frames, so the count can exceed the messages sent).
            assert after["frames_rejected"] - before["frames_rejected"] >= 10_000 * 7 // 8
            assert b.process.poll() is None
        finally:
            raw.close()
            context.term()


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    for name in ("alpha", "beta", "mallory"):
        assert cli_main(["keys", "generate", str(tmp_path / name)]) == 0
    return {name: tmp_path / f"{name}.key" for name in ("alpha", "beta", "mallory")}


async def test_curve_lets_allowed_members_in_and_keeps_others_out(keys: dict[str, Path]) -> None:
    alpha, beta, mallory = keys["alpha"], keys["beta"], keys["mallory"]
    pub = {name: path.with_suffix(".pub") for name, path in keys.items()}
    loop = asyncio.get_running_loop()
    member = await loop.run_in_executor(
        None,
        lambda: Member(
            "--heartbeat-timeout",
            str(HEARTBEAT_TIMEOUT_S),
            "--key",
            str(beta),
            "--allow",
            str(pub["alpha"]),
            "--allow",
            str(pub["beta"]),
        ),
    )
    beta_public = pub["beta"].read_text().strip()
    try:
        # An allowed key that knows the member's server key gets through, encrypted.
        good = cf.Curve.from_files(alpha, [pub["beta"]], {member.address: beta_public})
        async with cf.ActorSystem(
            listen="tcp://127.0.0.1:0", security=good, transport_options=OPTIONS
        ) as me:
            assert await me.ref("echo", at=member.address).ask("secret", timeout=5) == "secret"
        # An unknown key, a peer without CURVE, a wrong server key: nothing gets through.
        unknown = cf.Curve.from_files(mallory, [pub["beta"]], {member.address: beta_public})
        wrong_server = cf.Curve.from_files(
            alpha, [pub["beta"]], {member.address: pub["mallory"].read_text().strip()}
        )
        for security in (unknown, None, wrong_server):
            async with cf.ActorSystem(
                listen="tcp://127.0.0.1:0", security=security, transport_options=OPTIONS
            ) as me:
                with pytest.raises((cf.MemberUnreachable, cf.AskTimeout)):
                    await me.ref("counter", at=member.address).ask(
                        ("add", 1000), timeout=HEARTBEAT_TIMEOUT_S + 2
                    )
        # None of them delivered anything.
        async with cf.ActorSystem(
            listen="tcp://127.0.0.1:0", security=good, transport_options=OPTIONS
        ) as me:
            assert await me.ref("counter", at=member.address).ask("get", timeout=5) == 0
            stats = await me.ref("stats", at=member.address).ask("stats", timeout=5)
            assert stats["frames_rejected"] >= 1  # the rejected handshakes were counted
        assert member.process.poll() is None
    finally:
        member.stop()


def test_member_processes_leave_no_orphans() -> None:
    # Guard for this file: every member started above was stopped.
    out = subprocess.run(
        ["pgrep", "-f", "tests.transports.member"], capture_output=True, text=True, check=False
    )
    mine = [pid for pid in out.stdout.split() if int(pid) != os.getpid()]
    assert mine == []
