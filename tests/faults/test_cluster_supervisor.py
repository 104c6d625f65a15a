"""The ``cfactor cluster start`` supervisor under faults (issue 10, item 8).

Real processes: the supervisor runs as ``python -m cfactor.cli cluster start``, with its
own etcd and member processes on loopback. The supervisor dies by SIGKILL, a member
dies by SIGKILL, etcd dies by SIGKILL, and processes of an earlier run are left behind;
each time, what ``cluster start``, the supervisor and ``cluster stop`` do is checked,
and nothing may be left afterwards: no process, no etcd data, no state file.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cfactor.tools import processes
from cfactor.tools.etcd_server import EtcdServer
from cfactor.tools.local_cluster import Backoff, _Supervisor, etcd_dir, state_file

ROOT = Path(__file__).resolve().parents[2]
TTL_S = 2.0
START = [sys.executable, "-m", "cfactor.cli", "cluster", "start"]


def cfactor(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cfactor.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


class Supervisor:
    """A ``cfactor cluster start`` process; its output is read line by line."""

    def __init__(self, name: str, members: int = 2) -> None:
        self.name = name
        self.process = subprocess.Popen(
            [*START, "--members", str(members), "--name", name, "--ttl", str(TTL_S)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 60) -> str:
        """The next line that holds ``text``."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                break
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} within {timeout} s: {self.seen}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        # EOF comes when the members (which share the supervisor's stderr) are gone too.
        self._reader.join(10)
        assert self.process.stdout is not None
        self.process.stdout.close()


def recorded(name: str) -> dict[str, processes.Recorded]:
    """The processes the state file of cluster ``name`` names, by role."""
    state = json.loads(state_file(name).read_text())
    entries = [processes.Recorded.from_json(entry) for entry in state["processes"]]
    return {entry.role: entry for entry in entries if entry is not None}


def wait_gone(pids: list[int], timeout: float = 5.0) -> float:
    """Seconds until none of ``pids`` runs (a zombie has exited); fails after ``timeout``."""
    started = time.monotonic()
    while any(processes.alive(pid) for pid in pids):
        elapsed = time.monotonic() - started
        assert elapsed < timeout, [pid for pid in pids if processes.alive(pid)]
        time.sleep(0.005)
    return time.monotonic() - started


def assert_nothing_left(name: str, pids: list[int]) -> None:
    wait_gone(pids, timeout=10)
    data = etcd_dir(name)
    assert not state_file(name).exists()
    assert not data.exists()
    assert not data.with_name(data.name + ".log").exists()


def cluster_name() -> str:
    return "sup" + os.urandom(3).hex()


@pytest.mark.timeout(90)
def test_sigkill_of_the_supervisor_takes_its_members_and_etcd_with_it() -> None:
    name = cluster_name()
    first = Supervisor(name)
    second: Supervisor | None = None
    try:
        first.wait_for("is up: 2 members")
        children = [r.pid for role, r in recorded(name).items() if role != "supervisor"]
        assert len(children) == 3  # etcd and two members
        assert all(processes.alive(pid) for pid in children)

        first.process.kill()
        gone_s = wait_gone(children, timeout=5.0)
        print(f"members and etcd gone {gone_s * 1000:.1f} ms after SIGKILL of the supervisor")
        first.process.wait(10)
        assert state_file(name).exists()  # nobody cleaned up: the next start reports it

        second = Supervisor(name)
        line = second.wait_for("earlier run")
        assert "none of the processes of an earlier run is left" in line
        assert str(etcd_dir(name)) in line
        second.wait_for("is up: 2 members")
        pids = [r.pid for r in recorded(name).values()]
        stopped = cfactor("cluster", "stop", "--name", name)
        assert stopped.returncode == 0, stopped.stderr
        assert second.process.wait(30) == 0
        assert_nothing_left(name, pids)
    finally:
        for supervisor in (first, second):
            if supervisor is not None:
                supervisor.close()
        cfactor("cluster", "stop", "--name", name)


def members_in_status(name: str) -> dict[str, bool]:
    """What ``cfactor status`` says: each registered member's address, and if it answers."""
    out = cfactor("status", "--name", name, "--json")
    assert out.returncode == 0, out.stderr
    report: dict[str, Any] = json.loads(out.stdout)
    return {m["address"]: m["reachable"] for m in report["members"]}


def eventually_members(name: str, expected: list[str], timeout: float = 30) -> None:
    """Until the cluster's members are exactly ``expected``, each answering."""
    want = dict.fromkeys(expected, True)
    deadline = time.monotonic() + timeout
    while (found := members_in_status(name)) != want:
        assert time.monotonic() < deadline, (found, want)
        time.sleep(0.5)


@pytest.mark.timeout(120)
def test_a_killed_member_or_etcd_is_reported_and_restarted() -> None:
    name = cluster_name()
    supervisor = Supervisor(name)
    try:
        supervisor.wait_for("is up: 2 members")
        again = cfactor("cluster", "start", "--name", name)
        assert again.returncode == 2
        assert len(again.stderr.strip().splitlines()) == 1
        assert "is already running here" in again.stderr
        assert f"cfactor cluster stop --name {name}" in again.stderr

        before = recorded(name)
        victim = before["member 1"].pid
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        line = supervisor.wait_for(f"member 1 (pid {victim})", timeout=10)
        assert "killed by SIGKILL" in line
        assert "restarting it in 0.5 s" in line
        line = supervisor.wait_for("member 1 rejoined", timeout=30)
        print(f"member rejoined {time.monotonic() - killed_at:.2f} s after its SIGKILL: {line}")
        after = recorded(name)
        assert after["member 1"].pid != victim
        assert after["member 2"].pid == before["member 2"].pid
        # The killed member's registration lasts until its lease expires (TTL_S).
        addresses = json.loads(state_file(name).read_text())["addresses"]
        assert len(addresses) == 2
        eventually_members(name, addresses)

        etcd = after["etcd"].pid
        os.kill(etcd, signal.SIGKILL)
        killed_at = time.monotonic()
        line = supervisor.wait_for("etcd killed by SIGKILL", timeout=10)
        assert "restarting it in 0.5 s" in line
        supervisor.wait_for("etcd restarted", timeout=30)
        print(f"etcd restarted {time.monotonic() - killed_at:.2f} s after its SIGKILL")
        assert recorded(name)["etcd"].pid != etcd
        eventually_members(name, addresses)

        pids = [r.pid for r in recorded(name).values()]
        stopped = cfactor("cluster", "stop", "--name", name)
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout.strip() == f"cluster {name!r} stopped"
        assert supervisor.process.wait(30) == 0
        assert_nothing_left(name, pids)
    finally:
        supervisor.close()
        cfactor("cluster", "stop", "--name", name)


@pytest.mark.timeout(60)
def test_leftover_processes_are_named_by_start_and_removed_by_stop() -> None:
    name = cluster_name()
    data = etcd_dir(name)
    data.mkdir(parents=True)
    # An etcd the way a dead supervisor would have left it, and a process that has the
    # pid the state file names for a member but is another process (a reused pid).
    leftover = EtcdServer(data)
    bystander = subprocess.Popen(["sleep", "60"])
    gone = subprocess.Popen(["true"])  # its pid plays the dead supervisor
    gone.wait()
    try:
        leftover.start()
        assert leftover.pid is not None
        entries = [
            processes.Recorded("supervisor", gone.pid, None, "cluster"),
            processes.Recorded.of("etcd", leftover.pid, f"--data-dir={data}"),
            processes.Recorded("member 1", bystander.pid, 1, "join"),
        ]
        state = {"name": name, "processes": [e.to_json() for e in entries]}
        state_file(name).write_text(json.dumps(state))

        refused = cfactor("cluster", "start", "--name", name)
        assert refused.returncode == 2
        assert len(refused.stderr.strip().splitlines()) == 1
        assert f"etcd (pid {leftover.pid})" in refused.stderr
        assert str(bystander.pid) not in refused.stderr
        assert f"cfactor cluster stop --name {name}" in refused.stderr
        assert leftover.running  # refused, not taken over

        stopped = cfactor("cluster", "stop", "--name", name)
        assert stopped.returncode == 0, stopped.stderr
        assert f"etcd (pid {leftover.pid})" in stopped.stdout
        assert leftover.returncode is not None
        assert bystander.poll() is None  # not ours: left alone
        assert_nothing_left(name, [leftover.pid])

        nothing = cfactor("cluster", "stop", "--name", name)
        assert nothing.returncode == 2
        assert "no local cluster named" in nothing.stderr
    finally:
        leftover.close()
        bystander.kill()
        bystander.wait()
        state_file(name).unlink(missing_ok=True)
        shutil.rmtree(data, ignore_errors=True)
        data.with_name(data.name + ".log").unlink(missing_ok=True)


@pytest.mark.timeout(10)
def test_backoff_doubles_resets_after_a_stable_run_and_gives_up() -> None:
    backoff = Backoff(initial_s=0.5, max_s=4.0, stable_s=30.0, window_s=60.0, max_restarts=5)
    delays = [backoff.died(now=t, up_s=1.0) for t in (0.0, 2.0, 4.0, 8.0, 14.0)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert backoff.died(now=20.0, up_s=1.0) is None  # a sixth death within 60 s
    # Later, once the early restarts are out of the window: restarts again, and a
    # process that stayed up 30 s starts again from the first delay.
    assert backoff.died(now=62.0, up_s=1.0) == 4.0
    assert backoff.died(now=100.0, up_s=35.0) == 0.5


@pytest.mark.timeout(10)
def test_a_bad_name_is_one_line_and_exit_code_2() -> None:
    for args in (["cluster", "start", "--name", "../x"], ["cluster", "stop", "--name", "a/b"]):
        out = cfactor(*args)
        assert out.returncode == 2
        assert len(out.stderr.strip().splitlines()) == 1
        assert "--name must be" in out.stderr


@pytest.mark.timeout(30)
def test_a_member_that_keeps_dying_is_given_up_and_the_supervisor_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = cluster_name()
    supervisor = _Supervisor(name, "http://127.0.0.1:1", members=1, ttl_s=TTL_S)
    member = supervisor.members[0]
    member.command = [sys.executable, "-c", "import sys; sys.exit(3)"]
    member.backoff = Backoff(initial_s=0.05, max_s=0.1, max_restarts=2)
    member.spawn()
    try:
        started = time.monotonic()
        assert supervisor.supervise(lambda: time.monotonic() - started > 20) == 1
    finally:
        supervisor.stop_all()
        state_file(name).unlink(missing_ok=True)
    out = capsys.readouterr().out.splitlines()
    deaths = [line for line in out if line.startswith("member 1 (pid ")]
    assert len(deaths) == 3, out
    assert all("exited with code 3" in line for line in deaths)
    assert deaths[0].endswith("restarting it in 0.05 s")
    assert deaths[1].endswith("restarting it in 0.1 s")
    assert "died 3 times within 60 s: not restarting it (0 of 1 members left)" in deaths[2]
    assert out[-1] == f"cluster {name!r}: every member died too often; stopping it"
