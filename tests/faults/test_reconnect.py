"""Issue 10 item 3: an old peer reaches a member that was stopped (SIGSTOP, a gray
failure) and resumed, or that restarted on its address, within one heartbeat timeout
plus one backoff step, every time.

A real member process (``tests/faults/member_process.py``), real ZeroMQ on 127.0.0.1.
The cause and the fix (per-socket routing ids and ROUTER_HANDOVER): docs/transport.md,
"Reconnecting after a gray failure".
"""

from __future__ import annotations

import asyncio
import signal

import pytest
from cfactor_zmq._transport import RECONNECT_IVL_MAX_S

import cfactor as cf
from tests.faults.member_process import MemberProcess, free_port, timing

pytestmark = pytest.mark.anyio

HEARTBEAT_TIMEOUT_S = 1.0
BACKOFF_STEP_S = min(RECONNECT_IVL_MAX_S, HEARTBEAT_TIMEOUT_S)
BOUND_S = HEARTBEAT_TIMEOUT_S + BACKOFF_STEP_S
"""What issue 10 asks: reached again within one heartbeat timeout plus one backoff step."""

STOPPED_S = HEARTBEAT_TIMEOUT_S + 4.0
"""Long enough for both sides' zmq heartbeats and ours to give up on each other."""


async def time_to_reach(ref: cf.ActorRef, bound_s: float) -> float:
    """Ask ``ref`` until it answers; how long that took. Fails past ``bound_s``."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    errors: list[str] = []
    while True:
        try:
            assert await ref.ask("ping", timeout=0.2) == "ping"
        except (cf.AskTimeout, cf.MemberUnreachable) as exc:
            errors.append(type(exc).__name__)
            elapsed = loop.time() - started
            assert elapsed <= bound_s, f"not reached in {elapsed:.2f} s: {errors[-5:]}"
            await asyncio.sleep(0.01)
        else:
            return loop.time() - started


async def test_an_old_peer_reaches_a_member_resumed_after_sigstop() -> None:
    with MemberProcess(heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S) as member:
        async with cf.ActorSystem(
            listen="tcp://127.0.0.1:0", transport_options=timing(HEARTBEAT_TIMEOUT_S)
        ) as me:
            echo = me.ref("echo", at=member.address)
            assert await echo.ask("hello", timeout=5) == "hello"
            for _ in range(2):
                member.signal(signal.SIGSTOP)
                await asyncio.sleep(STOPPED_S)
                # Stopped: asks fail typed (the member is lost, or does not answer).
                with pytest.raises((cf.MemberUnreachable, cf.AskTimeout)):
                    await echo.ask("anyone?", timeout=0.5)
                member.signal(signal.SIGCONT)
                await time_to_reach(echo, BOUND_S)
                # And it stays reached: a burst of asks all answered.
                answers = await asyncio.gather(*(echo.ask(i, timeout=5) for i in range(200)))
                assert answers == list(range(200))


async def test_an_old_peer_reaches_a_member_restarted_on_its_address() -> None:
    listen = f"tcp://127.0.0.1:{free_port()}"
    async with cf.ActorSystem(
        listen="tcp://127.0.0.1:0", transport_options=timing(HEARTBEAT_TIMEOUT_S)
    ) as me:
        echo = me.ref("echo", at=listen)
        with MemberProcess(listen, heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S):
            assert await echo.ask("hello", timeout=5) == "hello"
        # It closed (it said BYE); now a new process on the same address.
        with MemberProcess(listen, heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S) as second:
            await time_to_reach(echo, BOUND_S)
            second.kill()  # and killed: no BYE, so this peer redials on its own
        with MemberProcess(listen, heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S):
            await time_to_reach(echo, BOUND_S)
            assert await echo.ask("still", timeout=5) == "still"
