"""The autoscaling policy: depths in, replica counts out.

Sans-IO, like the wire codec: no clock, no event loop, no randomness. The runtime
reports an ``Observation`` (the backlog's depth, the replica count and the time on any
monotonic clock) every ``report_interval_s``; ``Autoscaler.observe`` answers with a
``Decision``. The same trace of observations always gives the same decisions, so the
policy is tested on hand-made and random traces without sockets or sleeps.

The rules (docs/autoscale.md explains the defaults):

- A count outside ``[min, max]`` is brought back at once.
- Scale out when the depth per replica has been above ``target_depth`` at every report
  for at least ``scale_out_window_s`` of wall-clock time, and at least that long after
  the last scale-out (so each step is judged on a window of reports of the count the
  previous step produced): to ``ceil(depth / target_depth)`` replicas, at most
  ``max_step_out`` more (default: double), at most ``max``.
- Scale in when the depth per replica has been below the low watermark at every report
  for at least ``scale_in_cooldown_s``, and at least that long after the last scale-out
  and the last scale-in: by at most ``max_step_in``, never below
  ``ceil(depth / target_depth)`` (so the smaller count is not overloaded at once), never
  below ``min``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from cfactor.autoscale.config import Replicas, check_int
from cfactor.errors import ConfigError

#: What a decision does to the replica count.
Direction = Literal["out", "in", "hold"]


@dataclass(frozen=True, slots=True)
class Observation:
    """One report of a replicated actor's load.

    Attributes:
        at: When it was measured, in seconds on any monotonic clock (only differences
            matter; observations must come in time order).
        depth: Every message accepted and not yet finished: waiting in the shared
            backlog, held in replica mailboxes (draining replicas included), in
            progress, and senders' messages queued for the group (blocked on a full
            backlog or in a member's send queue).
        replicas: Replicas running or starting, not counting those being drained.

    Raises:
        ConfigError: ``at`` is not a finite number, or ``depth`` or ``replicas`` is
            not an int ``>= 0``.
    """

    at: float
    depth: int
    replicas: int

    def __post_init__(self) -> None:
        if (
            isinstance(self.at, bool)
            or not isinstance(self.at, int | float)
            or not math.isfinite(self.at)
        ):
            raise ConfigError(f"at must be a finite number of seconds, got {self.at!r}")
        check_int("depth", self.depth, 0)
        check_int("replicas", self.replicas, 0)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy wants, and why.

    Attributes:
        replicas: The desired count (always within ``[min, max]``). For ``"hold"`` it
            is the observed count.
        direction: ``"out"`` (more replicas), ``"in"`` (fewer) or ``"hold"``.
        reason: The inputs and the rule that fired, for logs and ``cfactor status``,
            e.g. ``"depth 824 over 2 replicas = 412.0/replica > target 100 for 1.2 s
            (window 1 s), needs 9, limited by step +2: 2 -> 4"``.
        at: The observation's time.
    """

    replicas: int
    direction: Direction
    reason: str
    at: float


def _exact(value: float) -> Fraction:
    return Fraction(repr(float(value)))


def _num(value: float) -> str:
    return f"{value:g}"


def _seconds(value: float) -> str:
    return f"{round(value, 2):g} s"


class Autoscaler:
    """The policy as a state machine: feed it observations, act on its decisions.

    It keeps no list of samples, only what the rules need: when the current run of
    overloaded reports began, when the current run of underloaded reports began, and
    when it last scaled out and in. Memory is constant whatever the report rate, and
    decisions depend on the observations' times, not on how many there were.

    Args:
        config: The replica bounds and the policy's knobs.

    Raises:
        ConfigError: ``config`` is not a ``Replicas``.
    """

    __slots__ = (
        "_above_since",
        "_below_since",
        "_config",
        "_last",
        "_last_at",
        "_last_change",
        "_last_in_at",
        "_last_out_at",
        "_low",
        "_low_text",
        "_target",
        "_target_text",
    )

    def __init__(self, config: Replicas) -> None:
        if not isinstance(config, Replicas):
            raise ConfigError(f"the autoscaler needs a cf.Replicas, got {config!r}")
        self._config = config
        # Exact arithmetic on the numbers as written (0.35 is 7/20): float division makes
        # 21 messages at a target of 0.35 need 61 replicas, not 60. And the overload test
        # and ceil(depth / target) must agree, or a scale-in could land on a count the
        # next report calls overloaded.
        self._target = _exact(config.target_depth)
        self._low = _exact(config.effective_low_watermark)
        self._target_text = f"target {_num(config.target_depth)}"
        self._low_text = f"low watermark {_num(config.effective_low_watermark)}"
        self._last_at: float | None = None
        self._above_since: float | None = None
        self._below_since: float | None = None
        self._last_out_at: float | None = None
        self._last_in_at: float | None = None
        self._last: Decision | None = None
        self._last_change: Decision | None = None

    def __repr__(self) -> str:
        last = self._last
        shown = f"{last.direction} {last.replicas}" if last else "none"
        return (
            f"<Autoscaler min={self._config.min} max={self._config.max} "
            f"target={_num(self._config.target_depth)} last={shown}>"
        )

    @property
    def config(self) -> Replicas:
        """The configuration it decides by."""
        return self._config

    @property
    def last(self) -> Decision | None:
        """The latest decision (holds included), or None before the first observation."""
        return self._last

    @property
    def last_change(self) -> Decision | None:
        """The latest decision that changed the count (``"out"`` or ``"in"``), or None."""
        return self._last_change

    def observe(self, obs: Observation) -> Decision:
        """Take one report and decide the replica count.

        Args:
            obs: The latest load report.

        Returns:
            The decision; its ``replicas`` is what the group should be scaled to.

        Raises:
            ConfigError: ``obs`` is not an ``Observation``, or it is older than the
                previous one (time went backwards).
        """
        if not isinstance(obs, Observation):
            raise ConfigError(f"observe needs an Observation, got {obs!r}")
        if self._last_at is not None and obs.at < self._last_at:
            raise ConfigError(
                f"observations must come in time order: {obs.at!r} after {self._last_at!r}"
            )
        self._last_at = obs.at
        decision = self._decide(obs)
        self._last = decision
        if decision.direction != "hold":
            self._last_change = decision
            if decision.direction == "out":
                self._last_out_at = obs.at
            else:
                self._last_in_at = obs.at
        return decision

    def _decide(self, obs: Observation) -> Decision:
        cfg = self._config
        at, depth, n = obs.at, obs.depth, obs.replicas
        if n:
            overloaded = depth > self._target * n
            underloaded = depth < self._low * n
            per = f"{depth / n:.1f}"
        else:  # no replica: any backlog is an infinite depth per replica
            overloaded = depth > 0
            underloaded = depth == 0
            per = "inf" if depth else "0.0"
        # The runs of overloaded and underloaded reports: when each began, or None.
        above_since = self._above_since if self._above_since is not None else at
        below_since = self._below_since if self._below_since is not None else at
        self._above_since = above_since if overloaded else None
        self._below_since = below_since if underloaded else None
        need = math.ceil(Fraction(depth) / self._target)

        if n < cfg.min:
            to, why = cfg.min, f"({self._target_text}), below min {cfg.min}"
        elif n > cfg.max:
            to, why = cfg.max, f"({self._target_text}), above max {cfg.max}"
        elif overloaded:
            to, why = self._scale_out(n, need, at, at - above_since)
        elif underloaded:
            to, why = self._scale_in(n, need, at, at - below_since)
        else:
            to, why = n, f"is within [{self._low_text}, {self._target_text}]"

        direction: Direction = "out" if to > n else "in" if to < n else "hold"
        what = f"depth {depth} over {n} replica{'' if n == 1 else 's'} = {per}/replica"
        change = f"hold at {n}" if to == n else f"{n} -> {to}"
        return Decision(to, direction, f"{what} {why}: {change}", at)

    def _scale_out(self, n: int, need: int, at: float, held_for: float) -> tuple[int, str]:
        """Overloaded at every report for ``held_for`` seconds: the count, and why."""
        cfg = self._config
        window = cfg.scale_out_window_s
        above = f"> {self._target_text} for {_seconds(held_for)}"
        if n >= cfg.max:
            return n, f"{above}, already at max {cfg.max}"
        if held_for < window:
            return n, f"{above} of the {_seconds(window)} window"
        if self._last_out_at is not None and at - self._last_out_at < window:
            # Pace the steps: the next one is judged on a window of reports of the count
            # the last one produced.
            since = _seconds(at - self._last_out_at)
            return n, f"{above}, but the last scale-out was {since} ago (window {_seconds(window)})"
        step = cfg.step_out_limit(n)
        to = min(cfg.max, n + step, need)
        why = f"{above} (window {_seconds(window)}), needs {need}"
        if to < need:
            why += f", limited by max {cfg.max}" if to == cfg.max else f", limited by step +{step}"
        return to, why

    def _scale_in(self, n: int, need: int, at: float, held_for: float) -> tuple[int, str]:
        """Underloaded at every report for ``held_for`` seconds: the count, and why."""
        cfg = self._config
        cooldown = cfg.scale_in_cooldown_s
        below = f"< {self._low_text} ({self._target_text}) for {_seconds(held_for)}"
        if n <= cfg.min:
            return n, f"{below}, already at min {cfg.min}"
        to = max(cfg.min, n - cfg.max_step_in, need)
        if to >= n:
            return n, f"{below}, but {need} replicas are needed at the target"
        if held_for < cooldown:
            return n, f"{below} of the {_seconds(cooldown)} cooldown"
        for kind, when in (("scale-out", self._last_out_at), ("scale-in", self._last_in_at)):
            if when is not None and at - when < cooldown:
                return n, (
                    f"{below}, but the last {kind} was {_seconds(at - when)} ago "
                    f"(cooldown {_seconds(cooldown)})"
                )
        return to, f"{below} (cooldown {_seconds(cooldown)})"


__all__ = ["Autoscaler", "Decision", "Direction", "Observation"]
