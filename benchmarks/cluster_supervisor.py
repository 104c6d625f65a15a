"""How fast ``cfactor cluster start``'s processes follow a fault (issue 10, item 8).

Two figures, each the median of ``--runs`` fresh local clusters (2 members):

- after SIGKILL of the supervisor, the time until its etcd and members have exited
  (target: within 1 s; gives up waiting after 10 s and counts the run as "never");
- after SIGKILL of a member, the time until the supervisor prints that it rejoined
  (gives up after 30 s).

The supervisor's children are found through /proc (their parent pid), not the state
file, so the script measures any version of cfactor: ``PYTHONPATH=<checkout>`` picks one.
It kills whatever the runs leave behind.

    .venv/bin/python benchmarks/cluster_supervisor.py            # 3 runs
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

KILL_TARGET_S = 1.0
GIVE_UP_S = 10.0
REJOIN_GIVE_UP_S = 30.0


def children(pid: int) -> dict[int, list[str]]:
    """The processes whose parent is ``pid``, with their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found[int(entry.name)] = [part.decode(errors="replace") for part in cmdline if part]
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


class Cluster:
    def __init__(self, name: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cfactor.cli", "cluster", "start", "--name", name],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for("is up", 60)
        self.kids = children(self.process.pid)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                if text in self.lines.get(timeout=remaining):
                    return True
            except queue.Empty:
                break
        return False

    def members(self) -> list[int]:
        return [pid for pid, cmd in self.kids.items() if "join" in cmd]

    def cleanup(self, name: str) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        for pid in self.kids:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(
            [sys.executable, "-m", "cfactor.cli", "cluster", "stop", "--name", name],
            capture_output=True,
            check=False,
        )


def after_supervisor_kill(name: str) -> float | None:
    cluster = Cluster(name)
    try:
        cluster.process.kill()
        started = time.monotonic()
        while any(running(pid) for pid in cluster.kids):
            if time.monotonic() - started > GIVE_UP_S:
                return None
            time.sleep(0.001)
        return time.monotonic() - started
    finally:
        cluster.cleanup(name)


def after_member_kill(name: str) -> float | None:
    cluster = Cluster(name)
    try:
        os.kill(cluster.members()[0], signal.SIGKILL)
        started = time.monotonic()
        if not cluster.wait_for("rejoined", REJOIN_GIVE_UP_S):
            return None
        return time.monotonic() - started
    finally:
        cluster.cleanup(name)


def show(what: str, figures: list[float | None], target: str) -> None:
    done = [f for f in figures if f is not None]
    runs = ", ".join("never" if f is None else f"{f * 1000:.1f}" for f in figures)
    median = f"{statistics.median(done) * 1000:.1f} ms" if len(done) == len(figures) else "never"
    print(f"{what:<52} {median:>10}   runs (ms): {runs}   target: {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    name = f"bench{os.getpid()}"
    show(
        "etcd + members gone after SIGKILL of the supervisor",
        [after_supervisor_kill(name) for _ in range(args.runs)],
        f"< {KILL_TARGET_S * 1000:.0f} ms",
    )
    show(
        "a SIGKILLed member rejoined",
        [after_member_kill(name) for _ in range(args.runs)],
        "restarted (0.5 s backoff + start)",
    )


if __name__ == "__main__":
    main()
