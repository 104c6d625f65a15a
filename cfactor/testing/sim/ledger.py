"""What the simulation's workload did, and the invariants checked against it.

The workload's actors write into the ``Ledger`` as they start, stop and handle
messages (through ``LEDGER``, a context variable every member inherits); the network
tells it of every workload frame it dropped or repeated; the driver tells it of every
message it sent and how every ask ended. Some invariants are checked as events happen
(a stale activation handling a message, a stream out of order), the rest at the end
(nothing vanished, every ask ended by its deadline). A broken invariant is a
``Violation``: the run stops there and the report names the seed, the invariant and the
last events of the trace.
"""

from __future__ import annotations

import contextvars
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable


class Violation(AssertionError):
    """An invariant of the system under test broke in a simulated run."""

    def __init__(self, invariant: str, detail: str) -> None:
        super().__init__(f"{invariant}: {detail}")
        self.invariant = invariant
        self.detail = detail


@dataclass
class Activation:
    """One activation of a named actor: it counts as accepted from the first message it
    handles (``serving``); ``serial`` orders activations of one name by that."""

    name: str
    member: str
    started: float
    serving: float | None = None
    serial: int = 0
    stopped: float | None = None


@dataclass
class AskRecord:
    target: str
    sent: float
    timeout: float
    ended: float | None = None
    outcome: str = ""


@dataclass
class Ledger:
    """Every fact the invariants need, in virtual time."""

    now: Callable[[], float]
    is_alive: Callable[[str], bool]
    #: ask deadlines may end this late (virtual seconds): callbacks due at one instant
    #: run over a few iterations of the loop, which take no virtual time.
    ask_slack_s: float = 0.0
    activations: dict[str, list[Activation]] = field(default_factory=lambda: defaultdict(list))
    #: per (stream, target): the last sequence number handled.
    last_seq: dict[tuple[str, str], int] = field(default_factory=dict)
    sent: dict[str, tuple[str, float]] = field(default_factory=dict)  # tell id -> (target, t)
    refused: set[str] = field(default_factory=set)
    handled: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    duplicated: Counter[str] = field(default_factory=Counter)
    dead: Counter[str] = field(default_factory=Counter)
    delivered: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    asks: list[AskRecord] = field(default_factory=list)
    crashes: list[float] = field(default_factory=list)
    checks: int = 0
    _serial: int = 0

    # -- from the actors ------------------------------------------------------------------

    def started(self, name: str, member: str) -> Activation:
        activation = Activation(name, member, self.now())
        self.activations[name].append(activation)
        return activation

    def stopped(self, activation: Activation) -> None:
        activation.stopped = self.now()

    def handle(self, activation: Activation, payload: Any) -> None:
        """``activation`` handles a workload message: check it may, and record it."""
        if not self.is_alive(activation.member):
            return  # a crashed member's leftovers: nobody can see what it does
        self.checks += 1
        if activation.serving is None:
            self._serial += 1
            activation.serving, activation.serial = self.now(), self._serial
        for other in self.activations[activation.name]:
            if (
                other.serial > activation.serial
                and other.stopped is None
                and other.member != activation.member
                and self.is_alive(other.member)
            ):
                raise Violation(
                    "one activation per name",
                    f"{activation.name!r} on {activation.member} (serving since "
                    f"{activation.serving:.3f}) handled {payload!r} at {self.now():.3f}, while a "
                    f"newer activation serves on {other.member} (since {other.serving:.3f})",
                )
        match payload:
            case ("tell", str(stream), int(seq), str(message_id)):
                self.handled[message_id] += 1
                allowed = 1 + self.duplicated[message_id]
                if self.handled[message_id] > allowed:
                    raise Violation(
                        "at most once", f"{message_id} handled {self.handled[message_id]} times"
                    )
                key = (stream, activation.name)
                last = self.last_seq.get(key, -1)
                self.checks += 1
                if seq < last or (seq == last and not self.duplicated[message_id]):
                    raise Violation(
                        "per sender-receiver order",
                        f"{activation.name!r} handled #{seq} of stream {stream} after #{last}",
                    )
                self.last_seq[key] = seq

    # -- from the driver and the network ----------------------------------------------------

    def tell_sent(self, message_id: str, target: str) -> None:
        self.sent[message_id] = (target, self.now())

    def tell_refused(self, message_id: str) -> None:
        self.refused.add(message_id)

    def network(self, event: str, where: str, payload: Any) -> None:
        match payload:
            case ("tell", str(), int(), str(message_id)):
                self.delivered[message_id].append(f"{event} {where} at {self.now():.3f}")
                if event == "duplicate":
                    self.duplicated[message_id] += 1
                elif event != "deliver":
                    self.dropped[message_id] += 1

    def dead_letter(self, message: Any) -> None:
        match message:
            case ("tell", str(), int(), str(message_id)):
                self.dead[message_id] += 1

    def ask_started(self, target: str, timeout: float) -> AskRecord:
        record = AskRecord(target, self.now(), timeout)
        self.asks.append(record)
        return record

    def ask_ended(self, record: AskRecord, outcome: str) -> None:
        record.ended = self.now()
        record.outcome = outcome
        self.checks += 1
        late = record.ended - record.sent - record.timeout
        if late > self.ask_slack_s:
            raise Violation(
                "every ask ends by its deadline",
                f"ask to {record.target!r} sent at {record.sent:.3f} "
                f"with timeout {record.timeout:g} s "
                f"ended {late:.3f} s late ({outcome})",
            )

    # -- at the end --------------------------------------------------------------------------

    def check_end(self) -> None:
        """Nothing vanished: every tell handled, refused, dead-lettered, dropped by a
        counted fault, or lost with a member that crashed after it was sent; every ask
        ended."""
        for record in self.asks:
            self.checks += 1
            if record.ended is None:
                raise Violation(
                    "every ask ends by its deadline",
                    f"ask to {record.target!r} sent at {record.sent:.3f} never ended",
                )
        for message_id, (target, sent_at) in self.sent.items():
            self.checks += 1
            if (
                self.handled[message_id]
                or message_id in self.refused
                or self.dead[message_id]
                or self.dropped[message_id]
                or any(crash >= sent_at for crash in self.crashes)
            ):
                continue
            raise Violation(
                "nothing vanishes silently",
                f"tell {message_id} to {target!r} sent at {sent_at:.3f}: not handled, refused, "
                "dead-lettered, dropped by a counted fault, nor lost in a crash (network: "
                f"{'; '.join(self.delivered[message_id]) or 'never on it'})",
            )


#: The ledger of the run in progress (members inherit it with their context).
LEDGER: contextvars.ContextVar[Ledger] = contextvars.ContextVar("cfactor_sim_ledger")
