"""``cf.Replicas``: how a replicated actor is scaled, and the hook that starts it.

The configuration half of autoscaling, as ``cfactor/cluster/config.py`` is of the
cluster: ``ActorSystem.spawn(..., replicas=cf.Replicas(...))`` calls ``start``, which
loads the controller (``cfactor.autoscale.controller``, the part that runs). The
policy (``cfactor.autoscale.policy``) reads the configuration and starts nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cfactor.errors import ConfigError, check_positive

if TYPE_CHECKING:
    from collections.abc import Callable

    from cfactor.abc import ReplicaGroup


def check_int(what: str, value: object, least: int) -> None:
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
        check_int("min", self.min, 1)
        check_int("max", self.max, 1)
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
            check_int("max_step_out", self.max_step_out, 1)
        check_int("max_step_in", self.max_step_in, 1)
        check_int("in_flight", self.in_flight, 1)
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


__all__ = ["Replicas", "check_int"]
