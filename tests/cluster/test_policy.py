"""The placement policy is a pure function: members and load in, a member id out."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import cfactor as cf
from cfactor.abc import MemberInfo
from cfactor.cluster.policy import choose_member


def member(mid: str, capacity: int = 0, **labels: str) -> MemberInfo:
    return MemberInfo(
        mid, f"tcp://127.0.0.1:{7000 + int(mid[1:])}", capacity, tuple(sorted(labels.items()))
    )


MEMBERS = {
    m.member_id: m
    for m in (member("m1", zone="a"), member("m2", zone="b"), member("m3", 2, zone="a"))
}


def test_least_loaded_wins() -> None:
    assert choose_member(MEMBERS, {"m1": 5, "m2": 1, "m3": 1}, None, random.Random(1)) in {
        "m2",
        "m3",
    }
    assert choose_member(MEMBERS, {"m1": 5, "m2": 1, "m3": 0}, None, random.Random(1)) == "m3"


def test_capacity_is_respected() -> None:
    assert choose_member(MEMBERS, {"m1": 9, "m2": 9, "m3": 2}, None, random.Random(1)) in {
        "m1",
        "m2",
    }
    only = {"m3": MEMBERS["m3"]}
    assert choose_member(only, {"m3": 2}, None, random.Random(1)) is None


def test_labels_and_pins_restrict_the_choice() -> None:
    rng = random.Random(1)
    assert choose_member(MEMBERS, {}, ("labels", (("zone", "b"),)), rng) == "m2"
    assert choose_member(MEMBERS, {}, ("labels", (("zone", "c"),)), rng) is None
    assert choose_member(MEMBERS, {"m1": 99}, ("pin", "m1"), rng) == "m1"
    assert choose_member(MEMBERS, {}, ("pin", "tcp://127.0.0.1:7002"), rng) == "m2"


def test_a_pin_to_a_gone_member_binds_only_the_first_placement() -> None:
    rng = random.Random(1)
    assert choose_member(MEMBERS, {}, ("pin", "m9"), rng) is None
    assert (
        choose_member(MEMBERS, {"m1": 3, "m2": 0, "m3": 1}, ("pin", "m9"), rng, replacing=True)
        == "m2"
    )


@given(
    st.dictionaries(st.sampled_from(["m1", "m2", "m3"]), st.integers(0, 5)), st.integers(0, 2**32)
)
def test_the_choice_is_always_an_eligible_least_loaded_member(
    load: dict[str, int], seed: int
) -> None:
    chosen = choose_member(MEMBERS, load, None, random.Random(seed))
    eligible = {
        m: load.get(m, 0)
        for m, info in MEMBERS.items()
        if not (info.capacity and load.get(m, 0) >= info.capacity)
    }
    if not eligible:
        assert chosen is None
    else:
        assert chosen is not None
        assert load.get(chosen, 0) == min(eligible.values())


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"ttl_s": "5"}, "ttl_s must be a positive finite number"),
        ({"ttl_s": True}, "ttl_s must be a positive finite number"),
        ({"request_timeout_s": math.inf}, "request_timeout_s must be a positive finite number"),
        ({"placement_timeout_s": -1}, "placement_timeout_s must be a positive finite number"),
        ({"load_report_interval_s": 0}, "load_report_interval_s must be"),
        ({"name": "a/b"}, "cluster names"),
    ],
)
def test_a_bad_cluster_setting_is_a_config_error(setting: dict[str, Any], message: str) -> None:
    with pytest.raises(cf.ConfigError, match=message):
        cf.Cluster(**setting)
