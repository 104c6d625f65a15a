"""The live per-Node display on a terminal: items in and out, rate, replicas."""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from cfactor.flow.run import NodeStats


def _count(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def render(nodes: Mapping[str, NodeStats], paths: Sequence[str], elapsed: float) -> list[str]:
    """One line per Node, in flow order."""
    width = max((len(p.rpartition(".")[2]) for p in paths), default=4)
    rows = []
    for path in paths:
        stats = nodes.get(path)
        if stats is None:
            continue
        rate = stats.items_out / elapsed if elapsed > 0 else 0.0
        state = "done" if stats.replicas and stats.finished >= stats.replicas else "running"
        if stats.kind == "auto":
            state = "running" if stats.finished == 0 else "done"
        rows.append(
            f"{path.rpartition('.')[2]:<{width}}  in {_count(stats.items_in):>7}  "
            f"out {_count(stats.items_out):>7}  {_count(rate):>7}/s  "
            f"replicas {stats.replicas:>2}  {state}"
            + (f"  dropped {stats.dropped}" if stats.dropped else "")
        )
    rows.append(f"{elapsed:.1f} s")
    return rows


class Display:
    """Redraws its lines in place (ANSI cursor movement)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lines = 0

    def show(self, rows: Sequence[str]) -> None:
        out = self.stream
        if self.lines:
            out.write(f"\x1b[{self.lines}F")
        for row in rows:
            out.write("\x1b[2K" + row + "\n")
        self.lines = len(rows)
        out.flush()
