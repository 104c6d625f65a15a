"""Ask deadlines hold whatever the queues hold, across real processes over ZeroMQ
(issue 10, items 1 and 2's per-actor half).

A member process (``tests/faults/actors_ask_deadlines.py``) hosts a hung actor next to
healthy ones. Thousands of concurrent asks to the hung one must each end by their
deadline (typed: ``AskTimeout``, or ``MailboxFull`` at once when its parking places are
taken), and its neighbours must keep answering meanwhile. Margins are generous (the
machine is shared): the figures themselves are in ``benchmarks/ask_lateness.py``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import cfactor as cf
from tests.transports.conftest import HAVE_ZMQ_TRANSPORT

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not HAVE_ZMQ_TRANSPORT, reason="no cfactor_zmq"),
]

ROOT = Path(__file__).resolve().parents[2]
FLOOD = 20_000
#: How late an ask may end on a shared 2-core machine and still pass (the promise is
#: p99 <= 20 ms; before the fix, half of the asks never ended at all).
MARGIN_S = 2.0


def start_member() -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.faults.actors_ask_deadlines"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@asynccontextmanager
async def member() -> AsyncIterator[tuple[cf.ActorSystem, str]]:
    process = start_member()
    try:
        assert process.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, process.stdout.readline)
        assert line.startswith("ADDRESS "), line
        async with cf.ActorSystem(listen="tcp://127.0.0.1:0") as me:
            yield me, line.split()[1]
    finally:
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


async def timed_ask(ref: cf.ActorRef, message: Any, timeout: float) -> tuple[float, Any]:
    """(seconds the ask took, its answer or the typed error it raised)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        outcome = await ref.ask(message, timeout=timeout)
    except cf.CfactorError as exc:
        outcome = exc
    return loop.time() - started, outcome


async def test_asks_to_a_hung_remote_actor_end_by_their_deadline() -> None:
    async with member() as (me, address):
        hung = me.ref("hung", at=address)
        healthy = me.ref("healthy", at=address)
        assert await healthy.ask("warm up", timeout=10) == "warm up"
        flood = [asyncio.ensure_future(timed_ask(hung, i, 0.1)) for i in range(FLOOD)]
        await asyncio.sleep(0)
        took, answer = await timed_ask(healthy, "ping", 10.0)
        assert answer == "ping"  # before: never answered while the flood was queued
        done, pending = await asyncio.wait(flood, timeout=30)
        assert not pending, f"{len(pending)} asks never ended"
        results = [task.result() for task in done]
        kinds = {type(outcome) for _, outcome in results}
        assert kinds <= {cf.AskTimeout, cf.MailboxFull}, kinds
        worst = max(seconds for seconds, _ in results)
        assert worst <= 0.1 + MARGIN_S, f"the latest ask ended {worst:.3f} s after it began"
        refused = sum(1 for _, o in results if isinstance(o, cf.MailboxFull))
        stats = await me.ref("busy", at=address).ask("stats", timeout=10)
        # Refused at once on the member; the asker may have timed out before the
        # refusal came back (20,000 frames take a while to go out).
        assert stats["refused_full"] >= max(refused, 1)
        assert took < 10


async def test_an_idle_actor_next_to_a_flooded_one_answers() -> None:
    async with member() as (me, address):
        hung = me.ref("hung", at=address)
        idle = me.ref("idle", at=address)
        assert await idle.ask("warm up", timeout=10) == "warm up"
        flood = [asyncio.ensure_future(timed_ask(hung, i, 2.0)) for i in range(FLOOD)]
        await asyncio.sleep(0.2)  # the flood is on the wire and at the member
        answers = [await timed_ask(idle, n, 10.0) for n in range(20)]
        assert [outcome for _, outcome in answers] == list(range(20))
        slowest = max(seconds for seconds, _ in answers)
        # "A few ms" is the promise (benchmarks/ask_lateness.py measures it); before,
        # such an ask waited 13-16 s behind the flood.
        assert slowest < 1.0, f"the idle actor took {slowest:.3f} s to answer"
        done, pending = await asyncio.wait(flood, timeout=30)
        assert not pending
        assert max(task.result()[0] for task in done) <= 2.0 + MARGIN_S


async def test_the_receiver_skips_asks_out_of_budget() -> None:
    async with member() as (me, address):
        busy = me.ref("busy", at=address)
        assert await busy.ask("handled", timeout=10) == 0  # connected
        sleeping = asyncio.ensure_future(busy.ask(("sleep", 1.0), timeout=20))
        await asyncio.sleep(0.1)
        late = await asyncio.gather(*(timed_ask(busy, ("x", i), 0.1) for i in range(50)))
        outcomes = {type(outcome).__name__ for _, outcome in late}
        assert outcomes == {"AskTimeout"}, outcomes
        assert await sleeping == 1.0
        # Their asker gave up before the actor was free: none of them was handled.
        assert await busy.ask("handled", timeout=10) == 0
        stats = await busy.ask("stats", timeout=10)
        assert stats["busy_expired"] == 50


async def test_an_idle_actor_next_to_one_flooded_with_tells_answers() -> None:
    async with member() as (me, address):
        hung = me.ref("hung", at=address)
        idle = me.ref("idle", at=address)
        assert await idle.ask("warm up", timeout=10) == "warm up"

        async def flood() -> None:
            for i in range(FLOOD * 2):
                await hung.tell(i)

        sender = asyncio.create_task(flood())
        try:
            await asyncio.sleep(0.5)
            assert not sender.done()  # held: the member asked it to wait
            answers = [await timed_ask(idle, n, 10.0) for n in range(20)]
            assert [outcome for _, outcome in answers] == list(range(20))
            slowest = max(seconds for seconds, _ in answers)
            # Before: behind the 10,000 tells queued to the member, never in time.
            assert slowest < 1.0, f"the idle actor took {slowest:.3f} s to answer"
            stats = await me.ref("busy", at=address).ask("stats", timeout=10)
            assert stats["refused_full"] == 0  # held, not dropped
        finally:
            sender.cancel()
