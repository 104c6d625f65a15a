"""``cfactor cluster start|join|stop`` and ``cfactor status``: the work behind the CLI.

A local cluster is an etcd (started from the installed binary unless one is given)
and N member processes, each ``cfactor cluster join``. ``cluster start`` supervises
them and writes a state file, so ``cluster stop`` and ``status`` find them by the
cluster's name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cfactor as cf
from cfactor.cluster.messages import Stats
from cfactor.errors import CfactorError
from cfactor.tools import processes
from cfactor.tools.etcd_server import EtcdServer

if TYPE_CHECKING:
    from collections.abc import Callable

JOIN_TIMEOUT_S = 20.0


class ToolError(Exception):
    """A problem the user can fix; the CLI prints it as one line."""


def state_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"cfactor-{os.getuid()}"


def state_file(name: str) -> Path:
    return state_dir() / f"cluster-{name}.json"


def parse_labels(items: list[str]) -> dict[str, str]:
    labels = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ToolError(f"labels look like key=value, got {item!r}")
        labels[key] = value
    return labels


def check_url(what: str, url: str, schemes: tuple[str, ...]) -> None:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in schemes or not rest:
        raise ToolError(f"{what} must look like {schemes[0]}://HOST:PORT, got {url!r}")


# -- join -------------------------------------------------------------------------------------

#: The GIL switch interval of the processes cfactor's CLI runs (members, `cfactor run`).
#: Sync Node functions run in worker threads; at Python's default 5 ms, the threads of a
#: busy member hand the GIL to each other 200 times a second; benchmarks/switch_interval.py
#: ran an embedded wordcount at 22.8 MB/s at 5 ms and 25.9 MB/s at 50 ms (5 runs each;
#: docs/flow.md). The event loop then waits at most 50 ms for the GIL behind a busy
#: thread: far inside the 2 s heartbeat timeout.
SWITCH_INTERVAL_S = 0.05


def run_node_functions_well() -> None:
    """Set this process's GIL switch interval for running Node functions in threads."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)


async def _serve_member(
    etcd: str, listen: str, name: str, labels: dict[str, str], ttl_s: float
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    cluster = cf.Cluster(etcd=etcd, name=name, labels=labels, ttl_s=ttl_s)
    async with cf.ActorSystem(listen=listen, cluster=cluster) as system:
        runtime: Any = system.cluster
        print(
            f"member {runtime.member_id} listening on {system.address} in cluster {name!r}",
            flush=True,
        )
        await stop.wait()
        print(f"member {runtime.member_id} leaving", flush=True)


def join(etcd: str, listen: str, name: str, labels: list[str], ttl_s: float) -> int:
    """Run one member until SIGTERM or Ctrl-C; leave the cluster cleanly.

    Raises:
        ToolError: Bad arguments, or etcd cannot be reached.
    """
    check_url("--etcd", etcd, ("http", "etcd"))
    check_url("--listen", listen, ("tcp", "ipc"))
    parsed = parse_labels(labels)
    run_node_functions_well()
    try:
        cf.run(_serve_member(etcd, listen, name, parsed, ttl_s))
    except cf.MembershipUnavailable as exc:
        raise ToolError(f"cannot reach etcd at {etcd}: {exc}") from exc
    except cf.ConfigError as exc:
        raise ToolError(str(exc)) from exc
    return 0


# -- start / stop -----------------------------------------------------------------------------

#: How often the supervisor looks at its processes: a death is reported within this.
POLL_S = 0.1
#: How long ``cluster stop`` waits for the supervisor to stop everything it started.
STOP_TIMEOUT_S = 30.0
_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "._-")


def check_name(name: str) -> None:
    """A cluster's name becomes part of file names in the state directory.

    Raises:
        ToolError: It holds other characters than letters, digits, '.', '_', '-'.
    """
    if not name or name.startswith(".") or not set(name) <= _NAME_CHARS:
        raise ToolError(f"--name must be letters, digits, '.', '_' or '-', got {name!r}")


def etcd_dir(name: str) -> Path:
    """Where the etcd of ``cluster start --name NAME`` keeps its data.

    Fixed by the name (not a random temporary directory) so that ``cluster stop`` and
    the next ``cluster start`` find it even when the supervisor died before writing
    its state file.
    """
    return state_dir() / f"etcd-{name}"


def join_command(
    etcd: str,
    name: str,
    ttl_s: float,
    labels: tuple[str, ...] = (),
    listen: str = "tcp://127.0.0.1:0",
) -> list[str]:
    """The command line of one ``cfactor cluster join`` member process."""
    command = [sys.executable, "-m", "cfactor.cli", "cluster", "join", "--etcd", etcd]
    command += ["--listen", listen, "--name", name, "--ttl", str(ttl_s)]
    for label in labels:
        command += ["--label", label]
    return command


@dataclass
class Backoff:
    """When to restart a process that died, and when to stop trying. Pure: no clock.

    The first restart waits ``initial_s``, each next one twice as long, at most
    ``max_s``; a process that stayed up ``stable_s`` starts again from ``initial_s``.
    A process that already had ``max_restarts`` restarts within ``window_s`` will not
    stay up (a bad argument, a broken install): it is not restarted again.
    """

    initial_s: float = 0.5
    max_s: float = 10.0
    stable_s: float = 30.0
    window_s: float = 60.0
    max_restarts: int = 5
    _next_s: float = field(default=0.0, init=False)
    _restarts: deque[float] = field(default_factory=deque, init=False)

    def died(self, now: float, up_s: float) -> float | None:
        """It died at ``now`` after ``up_s`` up: the delay before its restart, or None."""
        if up_s >= self.stable_s or self._next_s == 0.0:
            self._next_s = self.initial_s
        while self._restarts and now - self._restarts[0] > self.window_s:
            self._restarts.popleft()
        if len(self._restarts) >= self.max_restarts:
            return None
        delay = self._next_s
        self._next_s = min(delay * 2, self.max_s)
        self._restarts.append(now)
        return delay


class _Run:
    """One process of a member slot, and the thread that reads its output.

    The thread reads the member's stdout for as long as it runs: a member whose output
    nobody read would block on a full pipe and stop answering. Its first line gives
    its address; later lines are copied to ours.
    """

    def __init__(self, index: int, command: list[str]) -> None:
        self.index = index
        self.process = subprocess.Popen(  # noqa: S603 - this interpreter running this package
            command,
            stdout=subprocess.PIPE,
            stderr=None,  # members' warnings reach the terminal of `cluster start`
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # Ctrl-C reaches the supervisor, which stops members in order
            preexec_fn=processes.die_with_parent(),  # noqa: PLW1509 - only a prctl
        )
        self.started_at = time.monotonic()
        self.address: str | None = None
        self.joined = threading.Event()
        threading.Thread(target=self._read, name=f"member-{index}-stdout", daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if not self.joined.is_set() and " listening on " in line:
                self.address = line.split(" listening on ")[1].split()[0]
                self.joined.set()
            else:
                print(f"[member {self.index}] {line}", end="", flush=True)
        self.process.stdout.close()  # a member restarted for days must not leak a pipe each time


class _Member:
    """Member N of a local cluster: its current process, restarts and backoff."""

    def __init__(self, index: int, command: list[str]) -> None:
        self.index = index
        self.command = command
        self.backoff = Backoff()
        self.run: _Run | None = None
        self.up = False  # its address was reported
        self.died_at: float | None = None
        self.restart_at: float | None = None
        self.gave_up = False

    def spawn(self) -> None:
        # Forked from the supervisor's main thread: PR_SET_PDEATHSIG fires when the thread
        # that forked the child exits, and the main thread lives as long as the process.
        self.run = _Run(self.index, self.command)
        self.up = False
        self.restart_at = None

    @property
    def pid(self) -> int | None:
        return None if self.run is None else self.run.process.pid


class _Supervisor:
    """The processes of one ``cluster start``: etcd (unless given) and the members."""

    def __init__(self, name: str, etcd: str | None, members: int, ttl_s: float) -> None:
        self.name = name
        self.endpoint = etcd or ""
        self.ttl_s = ttl_s
        self.etcd: EtcdServer | None = None
        self.etcd_backoff = Backoff()
        self.etcd_started_at = 0.0
        self.etcd_died_at: float | None = None
        self.etcd_restart_at: float | None = None
        self.members = [_Member(i, []) for i in range(1, members + 1)]
        self.failed = ""

    # -- state file

    def write_state(self) -> None:
        recorded = [processes.Recorded.of("supervisor", os.getpid(), "cluster")]
        etcd = self.etcd
        if etcd is not None and etcd.running and etcd.pid is not None:
            marker = f"--data-dir={etcd.data_dir}"
            recorded.append(processes.Recorded.of("etcd", etcd.pid, marker))
        live = [m for m in self.members if m.run is not None and m.run.process.poll() is None]
        for m in live:
            assert m.run is not None
            recorded.append(processes.Recorded.of(f"member {m.index}", m.run.process.pid, "join"))
        _write_state(
            self.name,
            {
                "name": self.name,
                "etcd": self.endpoint,
                "supervisor": os.getpid(),
                "members": [m.pid for m in live],
                "addresses": [m.run.address for m in live if m.run is not None and m.up],
                "processes": [r.to_json() for r in recorded],
            },
        )

    # -- start

    def start(self, stopping: Callable[[], bool]) -> bool:
        """Start etcd and the members; False if asked to stop meanwhile.

        Raises:
            ToolError: etcd did not start, or a member did not join.
        """
        if self.endpoint == "":
            print("starting etcd ...", flush=True)
            data = etcd_dir(self.name)
            data.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                self.etcd = EtcdServer(data, fast=False, die_with_parent=True)
                self.etcd.start()
            except (RuntimeError, FileNotFoundError) as exc:
                raise ToolError(f"cannot start etcd: {exc}") from exc
            self.etcd_started_at = time.monotonic()
            self.endpoint = self.etcd.endpoint
            print(
                f"etcd          {self.endpoint}  (pid {self.etcd.pid}, data in {data})", flush=True
            )
        for member in self.members:
            member.command = join_command(self.endpoint, self.name, self.ttl_s)
            member.spawn()
        self.write_state()
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        runs = [m.run for m in self.members if m.run is not None]
        while not all(run.joined.is_set() for run in runs):
            if stopping():
                return False
            for run in runs:
                if (code := run.process.poll()) is not None:
                    raise ToolError(
                        f"member {run.index} {processes.describe_exit(code)} before it joined"
                    )
            if time.monotonic() > deadline:
                raise ToolError(f"a member did not join within {JOIN_TIMEOUT_S:g} s")
            time.sleep(0.05)
        for member in self.members:
            assert member.run is not None
            member.up = True
            print(
                f"member {member.index}      {member.run.address}  (pid {member.pid})", flush=True
            )
        self.write_state()
        return True

    # -- supervise

    def supervise(self, stopping: Callable[[], bool]) -> int:
        """Watch etcd and the members until asked to stop: report deaths, restart.

        Returns:
            0 when asked to stop; 1 when the cluster cannot go on (every member, or
            etcd, died too often).
        """
        while not stopping():
            now = time.monotonic()
            changed = self._watch_etcd(now)
            for member in self.members:
                changed = self._watch_member(member, now) or changed
            if changed:
                self.write_state()
            if self.failed:
                print(f"cluster {self.name!r}: {self.failed}; stopping it", flush=True)
                return 1
            time.sleep(POLL_S)
        return 0

    def _watch_member(self, m: _Member, now: float) -> bool:
        """Look at member ``m`` once; True if its process or address changed."""
        if m.gave_up:
            return False
        if m.run is None:
            due = m.restart_at is not None and now >= m.restart_at
            if due:
                m.spawn()
            return due
        run = m.run
        code = run.process.poll()
        if code is None and not m.up:
            if run.joined.is_set():
                m.up = True
                self.write_state()  # a reader that saw the line below finds the address
                since = f", {now - m.died_at:.1f} s after it died" if m.died_at else ""
                print(f"member {m.index} rejoined: {run.address} (pid {m.pid}){since}", flush=True)
                return True
            if now - run.started_at <= JOIN_TIMEOUT_S:
                return False
            print(f"member {m.index} (pid {m.pid}) did not join within {JOIN_TIMEOUT_S:g} s")
            run.process.kill()
            code = run.process.wait()
        if code is None:
            return False
        self._member_died(m, code, now)
        return True

    def _member_died(self, m: _Member, code: int, now: float) -> None:
        assert m.run is not None
        up_s = now - m.run.started_at
        what = f"member {m.index} (pid {m.pid}) {processes.describe_exit(code)} after {up_s:.1f} s"
        if m.up:
            m.died_at = now
        m.run, m.up = None, False
        delay = m.backoff.died(now, up_s)
        if delay is None:
            m.gave_up = True
            left = sum(not other.gave_up for other in self.members)
            print(
                f"{what}; it died {m.backoff.max_restarts + 1} times within "
                f"{m.backoff.window_s:g} s: not restarting it "
                f"({left} of {len(self.members)} members left)",
                flush=True,
            )
            if left == 0:
                self.failed = "every member died too often"
        else:
            m.restart_at = now + delay
            print(f"{what}; restarting it in {delay:g} s", flush=True)

    def _watch_etcd(self, now: float) -> bool:
        """Look at etcd once; restart it (same ports, same data) if it died."""
        etcd = self.etcd
        if etcd is None:
            return False
        if self.etcd_restart_at is None:
            code = etcd.returncode
            if code is None:
                return False
            self.etcd_died_at = now
            return self._etcd_died(now, processes.describe_exit(code))
        if now < self.etcd_restart_at:
            return False
        self.etcd_restart_at = None
        try:
            # Same ports and data: members reconnect, and keep their leases if etcd is
            # back within their TTL.
            etcd.start()
        except RuntimeError as exc:
            etcd.stop()
            return self._etcd_died(now, f"did not restart ({exc})")
        self.etcd_started_at = time.monotonic()
        self.write_state()  # a reader that saw the line below finds the new pid
        since = now - self.etcd_died_at if self.etcd_died_at is not None else 0.0
        print(
            f"etcd restarted: {etcd.endpoint} (pid {etcd.pid}), {since:.1f} s after it died",
            flush=True,
        )
        return True

    def _etcd_died(self, now: float, how: str) -> bool:
        assert self.etcd is not None
        up_s = now - self.etcd_started_at
        self.etcd.stop()  # forget the dead process: returncode is None until it restarts
        delay = self.etcd_backoff.died(now, up_s)
        if delay is None:
            self.failed = f"etcd {how}, and died too often"
        else:
            self.etcd_restart_at = now + delay
            print(f"etcd {how} after {up_s:.1f} s; restarting it in {delay:g} s", flush=True)
        return True

    # -- stop

    def stop_all(self) -> None:
        for member in self.members:
            if member.run is not None and member.run.process.poll() is None:
                # Members leave the cluster on SIGTERM: their leases are revoked.
                member.run.process.send_signal(signal.SIGTERM)
        for member in self.members:
            if member.run is None:
                continue
            try:
                member.run.process.wait(10)
            except subprocess.TimeoutExpired:
                member.run.process.kill()
                member.run.process.wait(5)
        if self.etcd is not None:
            self.etcd.close()


def start(members: int, etcd: str | None, name: str, ttl_s: float) -> int:
    """Start etcd (unless given) and ``members`` member processes; supervise them.

    A member that dies is reported and restarted (see ``Backoff``); etcd too. If the
    supervisor itself dies, however it dies, its members and etcd die with it (Linux:
    ``PR_SET_PDEATHSIG``); ``cluster stop`` or the next ``cluster start`` then removes
    its files.

    Returns:
        0 when stopped (Ctrl-C, SIGTERM, ``cluster stop``); 1 when the cluster could not
        go on.

    Raises:
        ToolError: Bad arguments, a cluster of that name already running here (or
            processes it left running), or a process that did not start.
    """
    if members < 1:
        raise ToolError(f"--members must be at least 1, got {members}")
    check_name(name)
    if etcd is not None:
        check_url("--etcd", etcd, ("http", "etcd"))
    _claim(name)
    stopping = False

    def request_stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        if signal.getsignal(sig) is not signal.SIG_IGN:  # under nohup, a hangup stays ignored
            signal.signal(sig, request_stop)
    supervisor = _Supervisor(name, etcd, members, ttl_s)
    code = 0
    try:
        if supervisor.start(lambda: stopping):
            print(
                f"cluster {name!r} is up: {members} members. "
                f"`cfactor status --name {name}` shows it; "
                f"Ctrl-C or `cfactor cluster stop --name {name}` stops it.",
                flush=True,
            )
            code = supervisor.supervise(lambda: stopping)
    finally:
        supervisor.stop_all()
        _remove_files(name)
        state_file(name).unlink(missing_ok=True)
    print(f"cluster {name!r} stopped", flush=True)
    return code


# -- the state file and leftovers -------------------------------------------------------------


def _write_state(name: str, state: dict[str, Any]) -> None:
    """Replace the state file at once: a reader never sees half of it."""
    path = state_file(name)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps(state))
    temporary.replace(path)


def _read_state(name: str) -> dict[str, Any]:
    """The state file's content; {} if it is gone or damaged."""
    try:
        state = json.loads(state_file(name).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _recorded(state: dict[str, Any]) -> list[processes.Recorded]:
    """The processes a state file names (members first, then etcd, then the supervisor)."""
    found = [processes.Recorded.from_json(entry) for entry in state.get("processes", [])]
    recorded = [r for r in found if r is not None]
    if not recorded and isinstance(state.get("supervisor"), int):  # a state file of 0.x
        recorded.append(processes.Recorded("supervisor", state["supervisor"], None, "cluster"))
        pids = [pid for pid in state.get("members", []) if isinstance(pid, int)]
        recorded += [processes.Recorded("member", pid, None, "join") for pid in pids]
    order = {"etcd": 1, "supervisor": 2}
    return sorted(recorded, key=lambda r: order.get(r.role, 0))


def _remove_files(name: str) -> list[str]:
    """Remove the etcd data dir and log of cluster ``name``; the paths that existed.

    Only the paths derived from the name: never a path read from a state file, which
    anyone who can write to the state directory could point anywhere.
    """
    data = etcd_dir(name)
    log = data.with_name(data.name + ".log")
    removed = [str(path) for path in (data, log) if path.exists()]
    shutil.rmtree(data, ignore_errors=True)
    log.unlink(missing_ok=True)
    return removed


def _remove_temporaries(name: str) -> None:
    """State files half written by a supervisor killed while it wrote one."""
    path = state_file(name)
    for temporary in path.parent.glob(f".{path.name}.*"):
        temporary.unlink(missing_ok=True)


def _describe(recorded: list[processes.Recorded]) -> str:
    return ", ".join(f"{r.role} (pid {r.pid})" for r in recorded)


def _claim(name: str) -> None:
    """Write the state file of a new ``cluster start --name NAME``, or refuse.

    Leftovers of an earlier run whose processes are all gone (its state file, its etcd
    data) are removed and reported. Processes still running are never taken over or
    killed here: the user may be looking at them; ``cluster stop`` removes them.

    Raises:
        ToolError: A cluster of that name runs here, or processes of an earlier one do.
    """
    path = state_file(name)
    mine = processes.Recorded.of("supervisor", os.getpid(), "cluster")
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary.write_text(json.dumps({"name": name, "processes": [mine.to_json()]}))
    except OSError as exc:
        raise ToolError(f"cannot write the state file {path}: {exc}") from exc
    try:
        for _ in range(3):
            try:
                os.link(temporary, path)  # fails if it exists: two starts never both claim
            except FileExistsError:
                pass
            except OSError as exc:
                raise ToolError(f"cannot write the state file {path}: {exc}") from exc
            else:
                break
            recorded = _recorded(_read_state(name))
            live = [r for r in recorded if r.is_ours()]
            supervisor = [r for r in live if r.role == "supervisor"]
            if supervisor:
                raise ToolError(
                    f"cluster {name!r} is already running here (supervisor pid "
                    f"{supervisor[0].pid}); stop it with: cfactor cluster stop --name {name}"
                )
            if live:
                raise ToolError(
                    f"cluster {name!r} left processes running when its supervisor died: "
                    f"{_describe(live)}; remove them with: cfactor cluster stop --name {name}"
                )
            path.unlink(missing_ok=True)
            removed = [str(path), *_remove_files(name)]
            print(
                f"cluster {name!r}: none of the processes of an earlier run is left; "
                f"removed {', '.join(removed)}",
                flush=True,
            )
        else:
            raise ToolError(f"cluster {name!r}: another `cluster start` keeps claiming {path}")
    finally:
        temporary.unlink(missing_ok=True)
    if removed := _remove_files(name):  # a run that died before it wrote its state file
        print(
            f"cluster {name!r}: removed the etcd data of an earlier run: {', '.join(removed)}",
            flush=True,
        )


def stop(name: str) -> int:
    """Stop the local cluster started by ``cluster start --name NAME``; remove its files.

    With its supervisor running, the supervisor stops its members and etcd. Processes
    left by a supervisor that died are signalled (SIGTERM, SIGKILL after 5 s) if they
    are still the ones it started. Then the etcd data dir, its log and the state file
    are removed.

    Raises:
        ToolError: No such cluster is running here (and none left files), or its
            supervisor did not stop within 30 s.
    """
    check_name(name)
    path = state_file(name)
    if not path.exists():
        if removed := _remove_files(name):
            print(f"cluster {name!r} was not running; removed {', '.join(removed)}")
            return 0
        raise ToolError(f"no local cluster named {name!r} is running (no {path})")
    recorded = _recorded(_read_state(name))
    supervisor = next((r for r in recorded if r.role == "supervisor" and r.is_ours()), None)
    if supervisor is not None:
        with contextlib.suppress(ProcessLookupError):  # it may have just exited
            os.kill(supervisor.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while supervisor.is_ours() and time.monotonic() < deadline:
            time.sleep(0.1)
        if supervisor.is_ours():
            raise ToolError(
                f"cluster {name!r} did not stop within {STOP_TIMEOUT_S:g} s "
                f"(supervisor pid {supervisor.pid})"
            )
        # It stops what it started; anything left (it was killed meanwhile) goes below.
        recorded = _recorded(_read_state(name)) or recorded
    others = [r for r in recorded if r.role != "supervisor"]
    signalled = processes.terminate([r for r in others if r.role != "etcd"])
    signalled += processes.terminate([r for r in others if r.role == "etcd"])
    removed = _remove_files(name)
    path.unlink(missing_ok=True)
    _remove_temporaries(name)
    if supervisor is not None and not signalled:
        print(f"cluster {name!r} stopped")
        return 0
    gone = "its supervisor was gone" if supervisor is None else "its supervisor stopped"
    parts = [f"stopped {_describe(signalled)}"] if signalled else []
    parts += [f"removed {', '.join([str(path), *removed])}"]
    print(f"cluster {name!r}: {gone}; {'; '.join(parts)}")
    return 0


# -- status -----------------------------------------------------------------------------------


async def _status(etcd: str, name: str, timeout_s: float) -> dict[str, Any]:
    from cfactor.membership.etcd import EtcdMembership  # noqa: PLC0415 - loads grpc

    membership = EtcdMembership(etcd, cluster=name, request_timeout_s=timeout_s)
    try:
        await membership.observe()
        members = membership.members()
        activations = membership.activations()
        leader = membership.leader("placement")
    finally:
        await membership.aclose()
    now = time.time()
    report: dict[str, Any] = {
        "cluster": name,
        "etcd": etcd,
        "members": [],
        "actors": [],
        "groups": [],
        "leader": None,
    }
    async with cf.ActorSystem(listen="tcp://127.0.0.1:0", ask_timeout_s=timeout_s) as probe:

        async def stats_of(address: str) -> dict[str, Any] | None:
            try:
                reply: dict[str, Any] = await probe.ref("$cluster", at=address).ask(Stats())
            except CfactorError:
                return None
            return reply

        replies = await asyncio.gather(*(stats_of(m.address) for m in members.values()))
    by_member: dict[str, dict[str, Any]] = {}
    for member, stats in zip(members.values(), replies, strict=True):
        entry = {
            "id": member.member_id,
            "address": member.address,
            "uptime_s": round(now - member.joined_at, 1) if member.joined_at else None,
            "labels": dict(member.labels),
            "reachable": stats is not None,
            "actors": stats["actors"] if stats else None,
            "depth": stats["depth"] if stats else None,
        }
        report["members"].append(entry)
        for named in (stats or {}).get("named", []):
            by_member[named["name"]] = named
        for group in (stats or {}).get("groups", []):
            report["groups"].append(
                {**group, "member": member.member_id, "address": member.address}
            )
    for act_name, activation in sorted(activations.items()):
        named = by_member.get(act_name, {})
        report["actors"].append(
            {
                "name": act_name,
                "member": activation.member_id,
                "address": activation.address,
                "epoch": activation.epoch,
                "depth": named.get("depth"),
                "restarts": named.get("restarts"),
            }
        )
    if leader is not None and leader in members:
        report["leader"] = {"id": leader, "address": members[leader].address}
    return report


def status(etcd: str | None, name: str, as_json: bool, timeout_s: float = 1.0) -> int:
    """Print the cluster's members, actors, replicated actors (with their autoscaler's
    last decision) and placement leader.

    Raises:
        ToolError: No etcd given and no local cluster of that name, or etcd unreachable.
    """
    if etcd is None:
        path = state_file(name)
        if not path.exists():
            raise ToolError(f"no --etcd given and no local cluster named {name!r} is running")
        etcd = str(json.loads(path.read_text())["etcd"])
    check_url("--etcd", etcd, ("http", "etcd"))
    try:
        report = cf.run(_status(etcd, name, timeout_s))
    except cf.MembershipUnavailable as exc:
        raise ToolError(f"cannot reach etcd at {etcd}: {exc}") from exc
    if as_json:
        print(json.dumps(report))
        return 0
    leader = report["leader"]
    where = leader["address"] if leader else "none"
    print(f"cluster {name!r} on {etcd}: {len(report['members'])} members, placement leader {where}")
    print(f"{'MEMBER':<24} {'ADDRESS':<24} {'UPTIME':>8} {'ACTORS':>7} {'DEPTH':>6}")
    for m in report["members"]:
        uptime = f"{m['uptime_s']:.0f}s" if m["uptime_s"] is not None else "-"
        actors = m["actors"] if m["reachable"] else "unreachable"
        depth = m["depth"] if m["reachable"] else "-"
        print(f"{m['id']:<24} {m['address']:<24} {uptime:>8} {actors!s:>7} {depth!s:>6}")
    if report["actors"]:
        print(f"\n{'ACTOR':<24} {'MEMBER':<24} {'EPOCH':>6} {'DEPTH':>6} {'RESTARTS':>9}")
        for a in report["actors"]:
            depth, restarts = a["depth"], a["restarts"]
            print(f"{a['name']:<24} {a['member']:<24} {a['epoch']:>6} {depth!s:>6} {restarts!s:>9}")
    if report["groups"]:
        print(f"\n{'GROUP':<24} {'MEMBER':<24} {'REPLICAS':>8} {'BACKLOG':>8} {'DEPTH':>6}  LAST")
        for g in report["groups"]:
            replicas = f"{g['replicas']}" + (f"+{g['draining']}d" if g["draining"] else "")
            print(
                f"{g['name']:<24} {g['member']:<24} {replicas:>8} {g['backlog']:>8} "
                f"{g['depth']:>6}  {describe_decision(g['last'])}"
            )
            where = g.get("where") or {}
            if set(where) - {g["address"]}:  # some replicas run on other members
                spread = ", ".join(f"{address} x{n}" for address, n in sorted(where.items()))
                print(f"{'':<24} replicas on {spread}")
            change = g["last_change"]
            if change is not None and change != g["last"]:
                print(f"{'':<24} last change: {describe_decision(change)}")
    return 0


def describe_decision(decision: dict[str, Any] | None) -> str:
    """One autoscaler decision as a line: what, to how many, how long ago, why."""
    if decision is None:
        return "-"
    return (
        f"{decision['direction']} -> {decision['replicas']} "
        f"({decision['age_s']:.1f}s ago): {decision['reason']}"
    )
