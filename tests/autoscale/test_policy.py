"""The autoscaling policy on hand-made and random traces: no clock, no event loop.

Times are plain floats: a trace says when each report was taken, and the policy must
decide by those times alone (wall-clock based), never by how many reports it saw.
"""

from __future__ import annotations

import math
from dataclasses import replace
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from cfactor.autoscale import Autoscaler, Decision, Observation, Replicas
from cfactor.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterable


def feed(scaler: Autoscaler, reports: Iterable[tuple[float, int]], replicas: int) -> list[Decision]:
    """Feed ``(at, depth)`` reports, each reporting the count the previous one decided."""
    decisions = []
    for at, depth in reports:
        decision = scaler.observe(Observation(at, depth, replicas))
        replicas = decision.replicas
        decisions.append(decision)
    return decisions


def every(step: float, start: float, stop: float) -> list[float]:
    """Report times from ``start`` to ``stop`` (inclusive) every ``step`` seconds."""
    return [start + i * step for i in range(round((stop - start) / step) + 1)]


def changes(decisions: list[Decision]) -> list[tuple[float, str, int]]:
    return [(d.at, d.direction, d.replicas) for d in decisions if d.direction != "hold"]


# -- scale-out -------------------------------------------------------------------------------


def test_overload_holds_until_the_window_is_covered() -> None:
    scaler = Autoscaler(Replicas(target_depth=100, scale_out_window_s=1.0))
    decisions = feed(scaler, [(t, 500) for t in every(0.25, 10.0, 11.0)], replicas=2)
    assert [d.direction for d in decisions] == ["hold"] * 4 + ["out"]
    assert decisions[-1].replicas == 4
    assert decisions[-1].at == 11.0
    assert "of the 1 s window: hold at 2" in decisions[2].reason


def test_a_burst_of_reports_within_one_window_does_not_scale_out() -> None:
    scaler = Autoscaler(Replicas(target_depth=100, scale_out_window_s=1.0))
    burst = [(i * 0.001, 10_000) for i in range(100)]  # 100 reports in 0.1 s
    assert {d.direction for d in feed(scaler, burst, replicas=1)} == {"hold"}
    # The same overload, still going when the window is covered, does scale out.
    assert scaler.observe(Observation(1.0, 10_000, 1)).direction == "out"


def test_sparse_reports_still_scale_out() -> None:
    scaler = Autoscaler(Replicas(target_depth=100, scale_out_window_s=1.0))
    decisions = feed(scaler, [(0.0, 900), (3.0, 900)], replicas=1)
    assert changes(decisions) == [(3.0, "out", 2)]


def test_one_report_within_the_target_restarts_the_window() -> None:
    scaler = Autoscaler(Replicas(target_depth=100, scale_out_window_s=1.0))
    trace = [(0.0, 300), (0.5, 300), (0.9, 150), (1.0, 300), (1.5, 300), (1.9, 300), (2.0, 300)]
    decisions = feed(scaler, trace, replicas=2)
    assert changes(decisions) == [(2.0, "out", 3)]


def test_at_the_target_is_not_overloaded() -> None:
    scaler = Autoscaler(Replicas(target_depth=100))
    decisions = feed(scaler, [(t, 200) for t in every(0.5, 0.0, 30.0)], replicas=2)
    assert changes(decisions) == []
    assert "is within [low watermark 1, target 100]" in decisions[-1].reason


@pytest.mark.parametrize(
    ("replicas", "depth", "options", "expected"),
    [
        (2, 450, {}, 4),  # needs 5; doubling allows 4
        (4, 450, {}, 5),  # needs 5; doubling would allow 8
        (2, 10_000, {"max": 3}, 3),  # needs 100; max 3
        (2, 10_000, {"max_step_out": 1}, 3),  # needs 100; one at a time
        (3, 10_000, {"max_step_out": 10, "max": 20}, 13),
        (1, 101, {}, 2),  # just above the target: needs 2
        (3, 31, {"target_depth": 10}, 4),
        (1, 3, {"target_depth": 0.1, "max": 100}, 2),  # needs 30; doubling allows 2
        # Exact decimal arithmetic: 3 / 0.3 needs 10, not 11 (as Fraction(0.3) would say);
        # 21 / 0.35 needs 60, not 61 (as float division would say).
        (9, 3, {"target_depth": 0.3, "max": 100}, 10),
        (40, 21, {"target_depth": 0.35, "max": 100}, 60),
    ],
)
def test_scale_out_goes_to_what_the_depth_needs_within_the_step_and_max(
    replicas: int, depth: int, options: dict[str, Any], expected: int
) -> None:
    scaler = Autoscaler(Replicas(**options))
    decisions = feed(scaler, [(0.0, depth), (1.0, depth)], replicas=replicas)
    assert changes(decisions) == [(1.0, "out", expected)]
    assert decisions[-1].reason.endswith(f": {replicas} -> {expected}")


def test_the_reason_names_the_inputs() -> None:
    scaler = Autoscaler(Replicas(target_depth=100))
    decision = feed(scaler, [(0.0, 824), (1.2, 824)], replicas=2)[-1]
    assert decision.reason == (
        "depth 824 over 2 replicas = 412.0/replica > target 100 for 1.2 s (window 1 s), "
        "needs 9, limited by step +2: 2 -> 4"
    )
    capped = Autoscaler(Replicas(max=3)).observe(Observation(0.0, 824, 2))
    assert capped.direction == "hold"
    capped = feed(Autoscaler(Replicas(max=3)), [(0.0, 824), (1.0, 824)], replicas=2)[-1]
    assert capped.reason.endswith("needs 9, limited by max 3: 2 -> 3")


def test_each_scale_out_waits_a_window_after_the_last_one() -> None:
    scaler = Autoscaler(Replicas(max=16, target_depth=100, scale_out_window_s=1.0))
    decisions = feed(scaler, [(t, 100_000) for t in every(0.25, 0.0, 10.0)], replicas=1)
    # 1 -> 16 in four doublings, one window apart: window * log2(max / min).
    assert changes(decisions) == [
        (1.0, "out", 2),
        (2.0, "out", 4),
        (3.0, "out", 8),
        (4.0, "out", 16),
    ]
    assert decisions[5].reason.endswith(
        "> target 100 for 1.25 s, but the last scale-out was 0.25 s ago (window 1 s): hold at 2"
    )


def test_overload_at_max_holds() -> None:
    scaler = Autoscaler(Replicas(max=4))
    decisions = feed(scaler, [(t, 100_000) for t in every(0.5, 0.0, 5.0)], replicas=4)
    assert changes(decisions) == []
    assert "already at max 4: hold at 4" in decisions[-1].reason


# -- scale-in --------------------------------------------------------------------------------


def test_scale_in_waits_for_a_cooldown_of_underload_one_replica_at_a_time() -> None:
    scaler = Autoscaler(Replicas(min=1, scale_in_cooldown_s=10.0))
    decisions = feed(scaler, [(t, 0) for t in every(0.5, 0.0, 40.0)], replicas=4)
    assert changes(decisions) == [(10.0, "in", 3), (20.0, "in", 2), (30.0, "in", 1)]
    assert decisions[-1].reason.endswith("already at min 1: hold at 1")
    assert decisions[19].reason == (
        "depth 0 over 4 replicas = 0.0/replica < low watermark 1 (target 100) for 9.5 s "
        "of the 10 s cooldown: hold at 4"
    )
    assert decisions[21].reason == (
        "depth 0 over 3 replicas = 0.0/replica < low watermark 1 (target 100) for 10.5 s, "
        "but the last scale-in was 0.5 s ago (cooldown 10 s): hold at 3"
    )


def test_one_report_above_the_low_watermark_restarts_the_cooldown() -> None:
    scaler = Autoscaler(Replicas(scale_in_cooldown_s=10.0))
    trace = [(t, 0) for t in every(0.5, 0.0, 9.5)] + [(9.7, 50)]
    trace += [(t, 0) for t in every(0.5, 10.0, 20.0)]
    assert changes(feed(scaler, trace, replicas=3)) == [(20.0, "in", 2)]


def test_no_scale_in_within_a_cooldown_of_a_scale_out() -> None:
    scaler = Autoscaler(Replicas(scale_out_window_s=1.0, scale_in_cooldown_s=10.0))
    trace = [(0.0, 500), (1.0, 500)] + [(t, 0) for t in every(0.5, 1.5, 15.0)]
    decisions = feed(scaler, trace, replicas=2)
    # Out at 1.0; idle from 1.5 on; the first scale-in is a cooldown of idle reports
    # after it (11.5), not a cooldown after the scale-out (11.0).
    assert changes(decisions) == [(1.0, "out", 4), (11.5, "in", 3)]


def test_no_scale_in_within_a_cooldown_of_a_scale_out_on_sparse_reports() -> None:
    scaler = Autoscaler(Replicas(scale_out_window_s=1.0, scale_in_cooldown_s=10.0))
    trace = [(0.0, 500), (1.0, 500), (1.1, 0), (11.05, 0), (11.2, 0)]
    decisions = feed(scaler, trace, replicas=2)
    assert changes(decisions) == [(1.0, "out", 4), (11.2, "in", 3)]
    assert decisions[3].reason.endswith("for 9.95 s of the 10 s cooldown: hold at 4")


def test_no_scale_in_within_a_cooldown_of_bringing_the_count_up_to_min() -> None:
    # Idle all along; the count fell below min at 5 s (say replicas crashed) and was
    # brought back; reports then show 3 replicas again (say restarted ones).
    scaler = Autoscaler(Replicas(min=1, scale_in_cooldown_s=10.0))
    trace = [(0.0, 0, 3), (5.0, 0, 0), (10.0, 0, 3), (15.0, 0, 3)]
    decisions = [scaler.observe(Observation(*report)) for report in trace]
    assert changes(decisions) == [(5.0, "out", 1), (15.0, "in", 2)]
    assert decisions[2].reason.endswith(
        "but the last scale-out was 5 s ago (cooldown 10 s): hold at 3"
    )


def test_scale_in_never_goes_below_what_the_depth_needs() -> None:
    config = Replicas(target_depth=100, low_watermark=80, max_step_in=3)
    # 250 over 4 = 62.5 < 80: underloaded; but 250 needs 3 replicas, not 1.
    decisions = feed(Autoscaler(config), [(t, 250) for t in every(1.0, 0.0, 10.0)], replicas=4)
    assert changes(decisions) == [(10.0, "in", 3)]
    # 310 over 4 = 77.5 < 80, but 310 needs 4 replicas: no scale-in at all.
    decisions = feed(Autoscaler(config), [(t, 310) for t in every(1.0, 0.0, 30.0)], replicas=4)
    assert changes(decisions) == []
    assert "but 4 replicas are needed at the target: hold at 4" in decisions[-1].reason


def test_scale_in_step_and_min() -> None:
    config = Replicas(min=2, max=10, max_step_in=3, scale_in_cooldown_s=5.0)
    decisions = feed(Autoscaler(config), [(t, 0) for t in every(1.0, 0.0, 30.0)], replicas=10)
    assert changes(decisions) == [(5.0, "in", 7), (10.0, "in", 4), (15.0, "in", 2)]


# -- bounds ----------------------------------------------------------------------------------


def test_a_count_outside_the_bounds_is_brought_back_at_once() -> None:
    config = Replicas(min=2, max=5)
    low = Autoscaler(config).observe(Observation(0.0, 0, 1))
    assert (low.direction, low.replicas) == ("out", 2)
    assert low.reason == "depth 0 over 1 replica = 0.0/replica (target 100), below min 2: 1 -> 2"
    high = Autoscaler(config).observe(Observation(0.0, 100_000, 9))
    assert (high.direction, high.replicas) == ("in", 5)
    assert high.reason.endswith("above max 5: 9 -> 5")


def test_no_replica_with_a_backlog_is_an_infinite_depth_per_replica() -> None:
    scaler = Autoscaler(Replicas(min=1))
    decision = scaler.observe(Observation(0.0, 7, 0))
    assert (decision.direction, decision.replicas) == ("out", 1)
    assert decision.reason.startswith("depth 7 over 0 replicas = inf/replica")
    assert Autoscaler(Replicas()).observe(Observation(0.0, 0, 0)).replicas == 1


def test_last_and_last_change() -> None:
    scaler = Autoscaler(Replicas())
    assert (scaler.last, scaler.last_change) == (None, None)
    out = feed(scaler, [(0.0, 500), (1.0, 500)], replicas=1)[-1]
    held = scaler.observe(Observation(1.5, 0, 2))
    assert scaler.last == held
    assert scaler.last_change == out
    assert repr(scaler) == "<Autoscaler min=1 max=8 target=100 last=hold 2>"
    assert scaler.config == Replicas()


# -- configuration ---------------------------------------------------------------------------


def test_the_defaults() -> None:
    config = Replicas()
    assert (config.min, config.max, config.target_depth) == (1, 8, 100.0)
    assert (config.scale_out_window_s, config.scale_in_cooldown_s) == (1.0, 10.0)
    assert (config.report_interval_s, config.in_flight, config.max_step_in) == (0.5, 4, 1)
    assert config.effective_low_watermark == 1.0
    assert Replicas(target_depth=1).effective_low_watermark == 0.5
    assert Replicas(low_watermark=30).effective_low_watermark == 30.0
    assert [config.step_out_limit(n) for n in (1, 3)] == [1, 3]
    assert Replicas(max_step_out=2).step_out_limit(7) == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min": 0}, "min must be >= 1, got 0"),
        ({"min": 1.5}, "min must be an int"),
        ({"min": True}, "min must be an int"),
        ({"min": 5, "max": 4}, "max must be >= min, got min=5 max=4"),
        ({"target_depth": 0}, "target_depth must be a positive finite number"),
        ({"target_depth": math.inf}, "target_depth must be a positive finite number"),
        ({"target_depth": math.nan}, "target_depth must be a positive finite number"),
        ({"target_depth": "100"}, "target_depth must be a positive finite number"),
        ({"scale_out_window_s": 0.0}, "scale_out_window_s must be a positive finite number"),
        ({"scale_in_cooldown_s": -1.0}, "scale_in_cooldown_s must be a positive finite number"),
        ({"report_interval_s": math.inf}, "report_interval_s must be a positive finite"),
        ({"low_watermark": 0}, "low_watermark must be a positive finite number"),
        ({"low_watermark": 101}, "low_watermark must be <= target_depth, got 101 > 100.0"),
        ({"max_step_out": 0}, "max_step_out must be >= 1"),
        ({"max_step_in": 0}, "max_step_in must be >= 1"),
        ({"in_flight": 0}, "in_flight must be >= 1"),
        ({"in_flight": 2.0}, "in_flight must be an int"),
    ],
)
def test_bad_settings_raise_config_error(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace("+", r"\+")):
        Replicas(**options)


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="max must be >= min"):
        replace(Replicas(), min=9)


@pytest.mark.parametrize(
    ("at", "depth", "replicas", "message"),
    [
        (math.nan, 0, 1, "at must be a finite number"),
        (math.inf, 0, 1, "at must be a finite number"),
        (0.0, -1, 1, "depth must be >= 0"),
        (0.0, 1.5, 1, "depth must be an int"),
        (0.0, 0, -1, "replicas must be >= 0"),
    ],
)
def test_bad_observations_raise_config_error(
    at: float, depth: Any, replicas: int, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Observation(at, depth, replicas)


def test_time_must_not_go_backwards() -> None:
    scaler = Autoscaler(Replicas())
    scaler.observe(Observation(5.0, 0, 1))
    scaler.observe(Observation(5.0, 0, 1))  # the same instant is fine
    with pytest.raises(ConfigError, match=r"time order: 4\.0 after 5\.0"):
        scaler.observe(Observation(4.0, 0, 1))
    with pytest.raises(ConfigError, match=r"needs a cf\.Replicas"):
        Autoscaler({"min": 1})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs an Observation"):
        scaler.observe((6.0, 0, 1))  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(
    reports=st.lists(
        st.tuples(st.floats(0, 3), st.integers(0, 2_000), st.integers(0, 10)), max_size=40
    )
)
def test_the_same_trace_gives_the_same_decisions(reports: list[tuple[float, int, int]]) -> None:
    def decide() -> list[Decision]:
        scaler = Autoscaler(Replicas(max=6, target_depth=50, scale_in_cooldown_s=2.0))
        at = 0.0
        decisions = []
        for dt, depth, replicas in reports:
            at += dt
            decisions.append(scaler.observe(Observation(at, depth, replicas)))
        return decisions

    assert decide() == decide()


# -- the state machine -----------------------------------------------------------------------

#: The largest gap between two reports the machine makes (the liveness bounds use it).
GAP = 2.0
#: The most reports one rule makes.
MOST_REPORTS = 50


@st.composite
def configs(draw: st.DrawFn) -> Replicas:
    low = draw(st.integers(1, 4))
    high = draw(st.integers(low, low + 12))
    target = draw(st.sampled_from([1.0, 2.5, 10.0, 100.0]))
    return Replicas(
        min=low,
        max=high,
        target_depth=target,
        scale_out_window_s=draw(st.sampled_from([0.1, 0.5, 1.0, 3.0])),
        scale_in_cooldown_s=draw(st.sampled_from([0.5, 2.0, 10.0, 20.0])),
        low_watermark=draw(
            st.none()
            | st.sampled_from([0.5, 0.9, 1.0]).map(lambda f: f * target)
            | st.floats(0.01, 1.0).map(lambda f: f * target)
        ),
        max_step_out=draw(st.none() | st.integers(1, 4)),
        max_step_in=draw(st.integers(1, 3)),
    )


#: A load level, resolved against the config and the count when the report is made.
LEVELS = st.one_of(
    st.integers(0, 3_000),
    st.sampled_from(["idle", "flood", "at_target", "just_above", "low", "between"]),
)


class AutoscalerMachine(RuleBasedStateMachine):
    """Random depth traces at random times, the decided count fed back as the next
    report's count; every report is checked against the rules and the bounds."""

    def __init__(self) -> None:
        super().__init__()
        self.reports: list[tuple[float, int, int, Decision]] = []  # (at, depth, count, decision)
        self.turns: list[tuple[float, int]] = []  # direction changes: (at, report index)

    @initialize(config=configs(), replicas=st.integers(0, 20), start=st.floats(0, 1e6))
    def start(self, config: Replicas, replicas: int, start: float) -> None:
        self.config = config
        self.scaler = Autoscaler(config)
        self.at = start
        self.count = replicas
        # The policy computes on the numbers as written (0.9 is 9/10), so does the model.
        self.target = Fraction(repr(config.target_depth))
        self.low = Fraction(repr(config.effective_low_watermark))
        # The model's own view of the rules' clocks.
        self.last_change: tuple[float, str, int] | None = None  # (at, direction, index)
        self.last_out: float | None = None
        self.last_in: float | None = None
        self.over_since: float | None = None  # the current run of overloaded reports
        self.under_since: float | None = None  # the current run of underloaded reports
        # The liveness stretches: (first report's time, count before it).
        self.flood: tuple[float, int] | None = None
        self.idle: tuple[float, int] | None = None

    # -- rules ---------------------------------------------------------------------------------

    @rule(level=LEVELS, dt=st.floats(0, GAP))
    def one_report(self, level: int | str, dt: float) -> None:
        self.report(dt, level)

    @rule(level=LEVELS, dt=st.floats(0.01, GAP), duration=st.floats(0, 60))
    def steady(self, level: int | str, dt: float, duration: float) -> None:
        """A constant depth for a while, reported every ``dt`` (or sparser, to bound the
        number of reports)."""
        dt = min(GAP, max(dt, duration / MOST_REPORTS))
        depth = self.depth_of(level)
        for _ in range(max(1, math.ceil(duration / dt))):
            self.report(dt, depth)

    @rule(level=LEVELS, n=st.integers(2, MOST_REPORTS), span=st.sampled_from([0.0, 0.01, 0.1]))
    def burst(self, level: int | str, n: int, span: float) -> None:
        """Many reports within a fraction of any window."""
        depth = self.depth_of(level)
        for _ in range(n):
            self.report(span / n, depth)

    @rule(dt=st.sampled_from([0.1, 0.5, GAP]))
    def flood_until_max(self, dt: float) -> None:
        """A flood (twice what max replicas take), kept up until its bound has passed."""
        self.report(dt, "flood")
        assert self.flood is not None
        deadline = self.flood[0] + self.bound_out(self.flood[1])
        dt = min(GAP, max(dt, (deadline - self.at) / MOST_REPORTS))
        while self.at <= deadline:
            self.report(dt, "flood")

    @rule(dt=st.sampled_from([0.1, 0.5, GAP]))
    def idle_until_min(self, dt: float) -> None:
        """No load at all, kept up until its bound has passed."""
        self.report(dt, "idle")
        assert self.idle is not None
        deadline = self.idle[0] + self.bound_in(self.idle[1])
        dt = min(GAP, max(dt, (deadline - self.at) / MOST_REPORTS))
        while self.at <= deadline:
            self.report(dt, "idle")

    # -- the model -----------------------------------------------------------------------------

    def depth_of(self, level: int | str) -> int:
        if isinstance(level, int):
            return level
        n, target, low = max(self.count, 1), self.target, self.low
        depth = {
            "idle": Fraction(0),
            "flood": 2 * target * self.config.max,
            "at_target": target * n,
            "just_above": Fraction(math.floor(target * n) + 1),
            "low": low * n - 1,
            "between": (low + target) / 2 * n,
        }[level]
        return max(0, -(-depth // 1))  # the ceiling, as an int

    def steps_out(self, count: int) -> int:
        """Scale-outs from ``count`` to max when every report is a flood."""
        steps = 0
        count = max(count, self.config.min)
        while count < self.config.max:
            count = min(self.config.max, count + self.config.step_out_limit(count))
            steps += 1
        return steps

    def bound_out(self, count: int) -> float:
        # Each step comes with the first report a window after the flood began or after
        # the previous step: within one gap of it.
        return self.steps_out(count) * (self.config.scale_out_window_s + GAP)

    def bound_in(self, count: int) -> float:
        steps = math.ceil(max(0, count - self.config.min) / self.config.max_step_in)
        return steps * (self.config.scale_in_cooldown_s + GAP)

    def report(self, dt: float, level: int | str) -> None:
        depth = self.depth_of(level)
        self.at += dt
        at, n, cfg = self.at, self.count, self.config
        decision = self.scaler.observe(Observation(at, depth, n))
        self.reports.append((at, depth, n, decision))
        to = decision.replicas

        overloaded = depth > self.target * n if n else depth > 0
        underloaded = depth < self.low * n if n else depth == 0
        if overloaded and self.over_since is None:
            self.over_since = at
        if not overloaded:
            self.over_since = None
        if underloaded and self.under_since is None:
            self.under_since = at
        if not underloaded:
            self.under_since = None

        # Never outside the bounds; the decision says what it does.
        assert cfg.min <= to <= cfg.max, decision
        assert decision.at == at
        assert decision.direction == ("out" if to > n else "in" if to < n else "hold")
        self.check_reason(decision, depth, n)

        need = math.ceil(Fraction(depth) / self.target)
        in_bounds = cfg.min <= n <= cfg.max
        if not in_bounds:
            assert to == (cfg.min if n < cfg.min else cfg.max), decision
        elif decision.direction == "out":
            # Only on an overload that lasted a whole window, measured after the last
            # change; never past what the depth needs, nor more than a step.
            assert overloaded, decision
            assert self.over_since is not None
            assert at - self.over_since >= cfg.scale_out_window_s, decision
            assert self.last_out is None or at - self.last_out >= cfg.scale_out_window_s
            assert to <= max(need, n + 1), decision
            assert to <= n + cfg.step_out_limit(n), decision
        elif decision.direction == "in":
            assert underloaded, decision
            assert self.under_since is not None
            assert at - self.under_since >= cfg.scale_in_cooldown_s, decision
            for when in (self.last_out, self.last_in):
                assert when is None or at - when >= cfg.scale_in_cooldown_s, decision
            assert to >= max(need, n - cfg.max_step_in), decision
        else:
            # And it does act once the rule's conditions hold (the model's clocks).
            if (
                overloaded
                and n < cfg.max
                and self.over_since is not None
                and at - self.over_since >= cfg.scale_out_window_s
            ):
                assert self.last_out is not None, decision
                assert at - self.last_out < cfg.scale_out_window_s, decision
            if (
                underloaded
                and n > max(cfg.min, need)
                and self.under_since is not None
                and at - self.under_since >= cfg.scale_in_cooldown_s
            ):
                waited = [w for w in (self.last_out, self.last_in) if w is not None]
                assert any(at - w < cfg.scale_in_cooldown_s for w in waited), decision

        if decision.direction != "hold":
            self.record_change(decision)
        self.check_liveness(at, depth, n, to)
        self.count = to

    def check_reason(self, decision: Decision, depth: int, n: int) -> None:
        reason = decision.reason
        assert reason.startswith(f"depth {depth} over {n} replica"), reason
        assert f"target {self.config.target_depth:g}" in reason, reason
        if decision.direction == "hold":
            assert reason.endswith(f": hold at {n}"), reason
        else:
            assert reason.endswith(f": {n} -> {decision.replicas}"), reason

    def record_change(self, decision: Decision) -> None:
        at, index, direction = decision.at, len(self.reports) - 1, decision.direction
        if self.last_change is not None and self.last_change[1] != direction:
            if self.turns:
                # Two changes of direction within one cooldown only when the load changed
                # between them; under a constant depth the count does not oscillate.
                before, first = self.turns[-1]
                if at - before < self.config.scale_in_cooldown_s:
                    depths = {d for _, d, _, _ in self.reports[first : index + 1]}
                    assert len(depths) > 1, (self.reports[first:], decision)
                    event("two turns within a cooldown, the depth changed between")
            if direction == "out":
                # A scale-in lands on a count the depth does not overload, so a scale-out
                # right after one needs a different depth, however late it comes.
                depths = {d for _, d, _, _ in self.reports[self.last_change[2] : index + 1]}
                assert len(depths) > 1, (self.reports[self.last_change[2] :], decision)
            self.turns.append((at, index))
            event(f"a turn to {direction}")
        self.last_change = (at, direction, index)
        if direction == "out":
            self.last_out = at
        else:
            self.last_in = at

    def check_liveness(self, at: float, depth: int, n: int, to: int) -> None:
        cfg = self.config
        if depth >= 2 * self.target * cfg.max:
            if self.flood is None:
                self.flood = (at, n)
            if at - self.flood[0] >= self.bound_out(self.flood[1]):
                assert to == cfg.max, (self.flood, at, self.reports[-1])
                event("a flood lasted its bound")
        else:
            self.flood = None
        if depth == 0:
            if self.idle is None:
                self.idle = (at, n)
            if at - self.idle[0] >= self.bound_in(self.idle[1]):
                assert to == cfg.min, (self.idle, at, self.reports[-1])
                event("an idle stretch lasted its bound")
        else:
            self.idle = None


AutoscalerMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=30, deadline=None
)
TestAutoscalerMachine = AutoscalerMachine.TestCase
