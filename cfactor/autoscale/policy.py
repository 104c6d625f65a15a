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
from typing import TYPE_CHECKING, Any, Literal

from cfactor.errors import ConfigError, check_positive

if TYPE_CHECKING:
    from collections.abc import Callable

    from cfactor.abc import ReplicaGroup

#: What a decision does to the replica count.
Direction = Literal["out", "in", "hold"]


def _check_int(what: str, value: object, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{what} must be an int, got {value!r}")
    if value < least:
        raise ConfigError(f"{what} must be >= {least}, got {value}")


@dataclass(frozen=True, slots=True)
class Replicas:
    """Run an actor as replicas behind one ref, scaled on the depth of its backlog.

    ``await system.spawn(Worker, name="w", replicas=cf.Replicas(min=1, max=8))``.

    Attributes:
        min: The fewest replicas, at least 1: a replicated actor always has a replica
            to drain its backlog (no scale-to-zero, so no cold start on the first
            message).
        max: The most replicas (``>= min``).
        target_depth: The depth per replica the policy steers toward: messages
            waiting for or held by the group, per replica (see ``Observation.depth``).
        scale_out_window_s: How long the depth per replica must stay above
            ``target_depth`` before a scale-out, and the least time from one
            scale-out to the next.
        scale_in_cooldown_s: How long the depth per replica must stay below the low
            watermark before a scale-in, and the least time from any scale-out or
            scale-in to the next scale-in.
        low_watermark: The depth per replica below which replicas count as
            underloaded (``0 < low_watermark <= target_depth``). ``None`` means
            ``min(target_depth / 2, 1.0)``: a replica works on one message at a time,
            so a depth below one message per replica means replicas sat idle.
        max_step_out: The most replicas one decision adds; ``None`` means as many as
            there are (the count at most doubles per step).
        max_step_in: The most replicas one decision removes.
        report_interval_s: How often the runtime reports the depth to the policy.
        in_flight: How many backlog messages one replica holds at a time (the rest
            stay in the shared backlog, where a new replica can take them).
        key: Route by key: a function of the message returning a str, bytes or int.
            Messages with the same key go to the same replica while the replica set
            is stable, and are handled in the order they entered the backlog (also
            across scale-out and scale-in). ``None``: any replica takes any message.
            A key function that raises or returns another type makes the send raise
            ``ConfigError`` (the group keeps serving).

    Raises:
        ConfigError: A setting of the wrong type or out of range (``min < 1``,
            ``max < min``, a duration or depth that is not a positive finite number,
            a low watermark above the target, a step or ``in_flight`` below 1,
            a ``key`` that is not callable).
    """

    min: int = 1
    max: int = 8
    target_depth: float = 100.0
    scale_out_window_s: float = 1.0
    scale_in_cooldown_s: float = 10.0
    low_watermark: float | None = None
    max_step_out: int | None = None
    max_step_in: int = 1
    report_interval_s: float = 0.5
    in_flight: int = 4
    key: Callable[[Any], str | bytes | int] | None = None

    def __post_init__(self) -> None:
        _check_int("min", self.min, 1)
        _check_int("max", self.max, 1)
        if self.max < self.min:
            raise ConfigError(f"max must be >= min, got min={self.min} max={self.max}")
        check_positive("target_depth", self.target_depth, " of messages per replica")
        for what, value in (
            ("scale_out_window_s", self.scale_out_window_s),
            ("scale_in_cooldown_s", self.scale_in_cooldown_s),
            ("report_interval_s", self.report_interval_s),
        ):
            check_positive(what, value, " of seconds")
        if self.low_watermark is not None:
            check_positive("low_watermark", self.low_watermark, " of messages per replica")
            if self.low_watermark > self.target_depth:
                raise ConfigError(
                    f"low_watermark must be <= target_depth, got {self.low_watermark!r} > "
                    f"{self.target_depth!r}"
                )
        if self.max_step_out is not None:
            _check_int("max_step_out", self.max_step_out, 1)
        _check_int("max_step_in", self.max_step_in, 1)
        _check_int("in_flight", self.in_flight, 1)
        if self.key is not None and not callable(self.key):
            raise ConfigError(f"key must be a function of the message, got {self.key!r}")

    async def start(self, group: ReplicaGroup, system: Any) -> Any:
        """Attach the autoscaler to a replicated actor (``ActorSystem.spawn`` calls
        this); returns the running controller, which the group closes when it stops."""
        from cfactor.autoscale.controller import start_controller  # noqa: PLC0415 - runtime side

        return await start_controller(self, group, system.clock)

    @property
    def effective_low_watermark(self) -> float:
        """The low watermark in force: the one given, or ``min(target_depth / 2, 1.0)``."""
        if self.low_watermark is not None:
            return float(self.low_watermark)
        return min(self.target_depth / 2, 1.0)

    def step_out_limit(self, current: int) -> int:
        """The most replicas one scale-out may add to ``current`` (at least 1)."""
        if self.max_step_out is not None:
            return self.max_step_out
        return max(current, 1)


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
        _check_int("depth", self.depth, 0)
        _check_int("replicas", self.replicas, 0)


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


__all__ = ["Autoscaler", "Decision", "Direction", "Observation", "Replicas"]
