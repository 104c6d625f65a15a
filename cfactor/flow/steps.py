"""Stage-gated steps: a shell command or a function, run once when the driver asks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback as tb_module
from typing import Any

from cfactor._core.actor import Actor
from cfactor.flow.context import Context, Store, endpoint_ref
from cfactor.flow.functions import is_async, resolve
from cfactor.flow.messages import Endpoint, RunStep, StepOutcome
from cfactor.flow.threads import flow_threads

step_log = logging.getLogger("cfactor.flow.step")


class StepWorker(Actor):
    """Runs one stage-gated step when asked: a shell command or a function."""

    def __init__(
        self, path: str, action: Any, store: Endpoint, services: dict[str, Endpoint]
    ) -> None:
        self.path = path
        self.action = action
        self.store_endpoint = store
        self.services = services

    async def receive(self, message: Any) -> Any:
        match message:
            case RunStep():
                started = self.system.clock.now()
                action = self.action
                if isinstance(action, tuple) and action and action[0] == "shell":
                    ok, code, out, err = await self._shell(*action[1:])
                else:
                    ok, code, out, err = await self._call()
                return StepOutcome(ok, code, out, err, self.system.clock.now() - started)
        raise ValueError(f"a step got an unknown message {message!r:.100}")

    async def _shell(
        self, command: str, cwd: str | None, env: dict[str, str] | None, timeout_s: float | None
    ) -> tuple[bool, int | None, str, str]:
        import os  # noqa: PLC0415 - only shell steps need the environment

        step_log.info("%s: $ %s", self.path, command)
        try:
            process = await asyncio.create_subprocess_shell(
                command,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=cwd,
                env={**os.environ, **env} if env else None,
                start_new_session=True,  # its own process group: a kill reaches its children
            )
        except OSError as exc:
            return (False, None, "", f"could not start: {exc}")
        try:
            stdout, stderr = await self.system.clock.wait_for(process.communicate(), timeout_s)
        except TimeoutError:
            _kill_group(process.pid)
            stdout, stderr = await process.communicate()
            out, err = stdout.decode(errors="replace"), stderr.decode(errors="replace")
            return (False, None, _tail(out), _tail(err) + f"\n(killed after {timeout_s:g} s)")
        except asyncio.CancelledError:  # the run is being stopped
            _kill_group(process.pid)
            raise
        out, err = stdout.decode(errors="replace"), stderr.decode(errors="replace")
        for line in out.splitlines():
            step_log.info("%s | %s", self.path, line)
        for line in err.splitlines():
            step_log.warning("%s ! %s", self.path, line)
        code = process.returncode
        step_log.info("%s: exit code %s", self.path, code)
        return (code == 0, code, _tail(out), _tail(err))

    async def _call(self) -> tuple[bool, int | None, str, str]:
        fn = resolve(self.action)
        store = Store(endpoint_ref(self.system, self.store_endpoint), self.system.loop)
        ctx = Context(self.system, self.path, 0, store, dict(self.services))
        try:
            if is_async(fn):
                result = await fn(ctx)
            else:
                result = await self.system.loop.run_in_executor(
                    flow_threads(self.system).pool("services"), fn, ctx
                )
        except Exception as exc:
            return (False, None, "", "".join(tb_module.format_exception(exc)))
        return (True, None, "" if result is None else str(result), "")


#: How much of a step's stdout and stderr its result keeps (all of it goes to the log):
#: the result travels in one frame, and a frame has a size limit.
OUTPUT_TAIL = 64 * 1024


def _tail(text: str) -> str:
    if len(text) <= OUTPUT_TAIL:
        return text
    return (
        f"({len(text) - OUTPUT_TAIL} characters before this are in the log)\n" + text[-OUTPUT_TAIL:]
    )


def _kill_group(pid: int) -> None:
    import os  # noqa: PLC0415
    import signal  # noqa: PLC0415

    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
