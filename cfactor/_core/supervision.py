"""Supervision policy: Erlang/OTP's strategies, restart types and restart intensity.

This module holds the policy as data and the intensity window as a small pure class;
the cell applies them (see ``ActorCell.supervise_child``).
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass

from cfactor.errors import ConfigError


class Strategy(enum.StrEnum):
    """Which children a supervisor restarts when one of them fails."""

    #: Only the failed child.
    ONE_FOR_ONE = "one_for_one"
    #: Every child: all are stopped (in reverse start order), then all restarted.
    ONE_FOR_ALL = "one_for_all"
    #: The failed child and every child started after it.
    REST_FOR_ONE = "rest_for_one"


class Restart(enum.StrEnum):
    """When a child is restarted (a property of the child, as in OTP's child spec)."""

    #: Always: after a failure and after it stopped itself with ``Actor.stop()``.
    PERMANENT = "permanent"
    #: Only after a failure (an exception), not after it stopped itself.
    TRANSIENT = "transient"
    #: Never. A failed temporary child is removed.
    TEMPORARY = "temporary"
    #: Always, and its input can never make its supervisor give up (services behind a
    #: gateway, Akka's default of unlimited restarts): a failure while it handles a
    #: message restarts it at once and is not charged to the supervisor's intensity
    #: (each such restart consumed the message that caused it, so their rate is bounded
    #: by the input's). A failure that consumed no message (its ``on_start`` raised, or it
    #: failed or exited before handling anything) restarts it after an exponential
    #: backoff instead, so a loop that needs no input cannot spin (see ``backoff_s``).
    RESILIENT = "resilient"


@dataclass(frozen=True, slots=True)
class Supervision:
    """How an actor supervises its children (and the system its top-level actors).

    Attributes:
        strategy: Which children to restart when one fails.
        max_restarts: At most this many restarts within ``within_s`` seconds; one
            more and the supervisor gives up: it stops its children and fails itself,
            so its own supervisor decides (escalation).
        within_s: The intensity window, in seconds.

    Raises:
        ConfigError: An unknown strategy, a negative ``max_restarts`` or a window that
            is not a positive number of seconds.
    """

    strategy: Strategy | str = Strategy.ONE_FOR_ONE
    max_restarts: int = 3
    within_s: float = 5.0

    def __post_init__(self) -> None:
        try:
            strategy = Strategy(self.strategy)
        except ValueError:
            choices = ", ".join(s.value for s in Strategy)
            msg = f"unknown supervision strategy {self.strategy!r}; choose one of {choices}"
            raise ConfigError(msg) from None
        object.__setattr__(self, "strategy", strategy)
        if isinstance(self.max_restarts, bool) or not isinstance(self.max_restarts, int):
            raise ConfigError(f"max_restarts must be an int, got {self.max_restarts!r}")
        if self.max_restarts < 0:
            raise ConfigError(f"max_restarts must be >= 0, got {self.max_restarts}")
        if not (self.within_s > 0 and math.isfinite(self.within_s)):
            raise ConfigError(
                f"within_s must be a positive number of seconds, got {self.within_s!r}"
            )


#: The first and the longest delay before restarting a resilient child that failed
#: without consuming a message; the delay doubles with each such failure in a row.
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0


def backoff_s(failures: int) -> float:
    """The delay before restart number ``failures`` (1, 2, ...) of a run of idle failures."""
    return min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2.0 ** min(failures - 1, 32))


def parse_restart(value: Restart | str) -> Restart:
    """Raises: ConfigError: not a restart type."""
    try:
        return Restart(value)
    except ValueError:
        choices = ", ".join(r.value for r in Restart)
        raise ConfigError(f"unknown restart type {value!r}; choose one of {choices}") from None


class RestartIntensity:
    """Counts restarts in a sliding window (OTP's intensity and period).

    Pure: the caller passes the time, so it is tested without clocks.
    """

    __slots__ = ("_times", "max_restarts", "within_s")

    def __init__(self, max_restarts: int, within_s: float) -> None:
        self.max_restarts = max_restarts
        self.within_s = within_s
        self._times: deque[float] = deque()

    def allow(self, now: float) -> bool:
        """Record a restart at ``now``; False if it is one too many for the window."""
        times = self._times
        while times and times[0] <= now - self.within_s:
            times.popleft()
        times.append(now)
        return len(times) <= self.max_restarts
