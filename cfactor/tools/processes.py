"""Child processes that die with their parent, and pids that are still ours.

``cfactor cluster start`` starts etcd and member processes. If the supervisor dies
without cleaning up (SIGKILL, the OOM killer, a crash), its children must not run on:
on Linux each child asks the kernel for a signal when its parent dies
(``prctl(PR_SET_PDEATHSIG)``), which works for the Go etcd binary as well as for
Python members, with no cooperation from the child's code.

A pid in a state file may belong to another process by the time someone reads it (pids
are reused). ``is_ours`` accepts a pid only if the process still has the start time
recorded when it was started, and its command line still holds an expected marker.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive ``sig`` when this process dies.

    The kernel sends the signal when the *thread* that forked the child exits, not the
    process: fork such children from a thread that lives as long as the process (the
    supervisor forks from its main thread). If this process died between the fork and
    the ``prctl``, the child signals itself at once.

    Returns:
        The function to pass as ``preexec_fn``; None where ``prctl`` does not exist
        (not Linux), where children cannot follow their parent this way.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Any = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    # Resolved in the parent: the child, forked from a threaded process, only calls it.
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()

    def arm() -> None:
        if prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before the prctl: no signal will come
            os.kill(os.getpid(), sig)

    return arm


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3 on), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces or ')'.
    return stat.rpartition(")")[2].split()


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (/proc/PID/stat field 22).

    Two processes with the same pid never have the same start time, so (pid, start
    ticks) names one process for good. None if there is no such process (or no /proc).
    """
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    with contextlib.suppress(ValueError):
        return int(fields[19])
    return None


def alive(pid: int) -> bool:
    """True if ``pid`` runs; an exited process nobody has reaped yet (a zombie) is gone."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat_fields(pid)
    return fields is None or fields[0] != "Z"


def command_line(pid: int) -> list[str]:
    """The arguments of ``pid`` (empty if it is gone or unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


@dataclass(frozen=True)
class Recorded:
    """A process as a state file records it.

    Attributes:
        role: What it is: ``supervisor``, ``etcd`` or ``member N``.
        pid: Its pid.
        ticks: Its start time (``start_ticks``), None if it could not be read.
        marker: An argument its command line holds (e.g. etcd's ``--data-dir=...``).
    """

    role: str
    pid: int
    ticks: int | None
    marker: str

    @classmethod
    def of(cls, role: str, pid: int, marker: str) -> Recorded:
        """Record ``pid`` now, while it is known to be ours."""
        return cls(role, pid, start_ticks(pid), marker)

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "pid": self.pid, "ticks": self.ticks, "marker": self.marker}

    @classmethod
    def from_json(cls, data: Any) -> Recorded | None:
        """Parse one entry; None for an entry that is not one (a damaged state file)."""
        if not isinstance(data, dict):
            return None
        pid, ticks = data.get("pid"), data.get("ticks")
        role, marker = data.get("role"), data.get("marker")
        if not isinstance(pid, int) or not isinstance(role, str) or not isinstance(marker, str):
            return None
        return cls(role, pid, ticks if isinstance(ticks, int) else None, marker)

    def is_ours(self) -> bool:
        """True if the recorded process still runs (and is not another one with its pid)."""
        if not alive(self.pid):
            return False
        if self.ticks is not None and start_ticks(self.pid) != self.ticks:
            return False
        return any(self.marker in arg for arg in command_line(self.pid))


def describe_exit(returncode: int) -> str:
    """``killed by SIGKILL`` or ``exited with code 1``, from a Popen return code."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exited with code {returncode}"


def terminate(processes: Iterable[Recorded], grace_s: float = 5.0) -> list[Recorded]:
    """SIGTERM the processes that are still ours, SIGKILL those left after ``grace_s``.

    They are not our children (their parent is gone), so nobody here can wait for them:
    this polls until they are gone.

    Returns:
        The processes that were signalled.
    """
    signalled = [p for p in processes if p.is_ours()]
    for process in signalled:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
            os.kill(process.pid, signal.SIGCONT)  # a stopped process handles SIGTERM only awake
    deadline = time.monotonic() + grace_s
    while any(p.is_ours() for p in signalled) and time.monotonic() < deadline:
        time.sleep(0.05)
    for process in signalled:
        if process.is_ours():
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
    deadline = time.monotonic() + grace_s
    while any(p.is_ours() for p in signalled) and time.monotonic() < deadline:
        time.sleep(0.05)
    return signalled
