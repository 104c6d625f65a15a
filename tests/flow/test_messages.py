"""The dataflow layer's typed protocol (cfactor/flow/messages.py) crosses the wire
intact, a peer's message with a wrong field type is a ProtocolError, not a crash, and a
replica's plan survives its spawn arguments on a member that has not loaded the flow
layer."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
from typing import Any

import pytest

from cfactor.errors import MalformedFrame, ProtocolError
from cfactor.flow import messages as m
from cfactor.wire import MsgpackCodec, default_registry
from tests.cluster.test_messages import message_frame

EDGES = (
    m.EdgePlan(
        "spread", (("tcp://127.0.0.1:7001", "f.count.0-abc"), (None, "f.count.1")), None, None
    ),
    m.EdgePlan("part", ((None, "f.reduce.0"),), None, ("fn", "apps.words", "part", "/a/words.py")),
    m.EdgePlan("auto", (("tcp://127.0.0.1:7001", "$12"),), (None, "f.auto-abc"), None),
)
PLAN = m.NodePlan(
    kind="map",
    node="app.s.f.count",
    index=1,
    replicas=2,
    fn=("fn", "apps.words", "count", "/a/words.py"),
    arg=None,
    retries=2,
    expected=3,
    edges=EDGES,
    monitor=("tcp://127.0.0.1:7000", "app.run-abc"),
    store=("tcp://127.0.0.1:7000", "app.s.store-abc"),
    services={"prices": (None, "app.prices")},
    batch=256,
)

SAMPLES: list[Any] = [
    m.Start(),
    m.Batch(("app.s.f.read", 0), [1, "two", (3, 4), {"k": [5]}]),
    m.Batch(("app.s.f.read", -1), []),
    m.EndOfStream(("app.s.f.read", 0)),
    m.Where(),
    m.Progress("app.s.f.count", 1, 512, 500, finished=False, dropped=0),
    m.Failed("app.s.f.count", 1, "'x'", "ValueError", "bad x", "Traceback ...", delivery=False),
    m.Failed("app.s.f.count", 1, "(sending downstream)", "ActorStopped", "gone", "", delivery=True),
    m.ReplicaCount("app.s.f.auto", 3),
    m.StoreGet("seen", 0),
    m.StorePut(("a", 1), {"nested": [1.5, None]}),
    m.StoreAdd("total", 2.5),
    m.StoreItems(),
    m.Call((1, "two", [3])),
    m.RunStep(),
    m.StepOutcome(ok=True, exit_code=0, stdout="done\n", stderr="", seconds=0.25),
    m.StepOutcome(ok=False, exit_code=None, stdout="", stderr="Traceback ...", seconds=1),
    *EDGES,
    PLAN,
    dataclasses.replace(PLAN, kind="source", arg=[1, 2], auto_replica=True, edges=()),
]


def test_every_flow_message_is_registered_and_sampled() -> None:
    declared = [
        cls for _, cls in inspect.getmembers(m, inspect.isclass) if cls.__module__ == m.__name__
    ]
    assert sorted(c.__name__ for c in declared) == sorted({type(s).__name__ for s in SAMPLES})
    names = [default_registry.name_of(cls) for cls in declared]
    assert names == [f"cfactor.flow.{cls.__name__}" for cls in declared]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: type(s).__name__)
def test_a_flow_message_round_trips(sample: Any) -> None:
    codec = MsgpackCodec()
    assert codec.decode_payload(codec.encode_payload(sample)) == sample


def test_a_hand_written_message_frame_decodes() -> None:
    frame = message_frame("cfactor.flow.ReplicaCount", {"path": "a.s.f.n", "count": 4})
    assert MsgpackCodec().decode_payload(frame) == m.ReplicaCount("a.s.f.n", 4)


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("cfactor.flow.Batch", {"sender": ["a.s.f.n", 0], "items": []}),  # a list, no tuple
        ("cfactor.flow.Batch", {"sender": None, "items": [1]}),
        ("cfactor.flow.EndOfStream", {"sender": "a.s.f.n"}),
        ("cfactor.flow.Progress", {"path": "p", "index": 0, "n_in": 1, "n_out": 1}),
        (
            "cfactor.flow.Progress",
            {"path": "p", "index": True, "n_in": 1, "n_out": 1, "finished": 0, "dropped": 0},
        ),
        (
            "cfactor.flow.Failed",
            {
                "path": "p",
                "index": 0,
                "item": "(sending downstream)",
                "type_name": "ActorStopped",
                "message": "gone",
                "traceback": "",
                "delivery": "yes",
            },
        ),
        ("cfactor.flow.ReplicaCount", {"path": "p", "count": 2.5}),
        ("cfactor.flow.Call", {"args": [1, 2]}),  # a list, no tuple
        (
            "cfactor.flow.StepOutcome",
            {"ok": 1, "exit_code": 0, "stdout": "", "stderr": "", "seconds": 0.1},
        ),
        (
            "cfactor.flow.EdgePlan",
            {"mode": "sideways", "targets": [], "gate": None, "partition": None},
        ),
    ],
)
def test_a_peers_message_with_bad_fields_is_a_protocol_error(
    name: str, fields: dict[str, Any]
) -> None:
    # MalformedFrame is the ProtocolError a member answers bad bytes with.
    assert issubclass(MalformedFrame, ProtocolError)
    with pytest.raises(MalformedFrame, match=f"message '{name}' rejected its fields"):
        MsgpackCodec().decode_payload(message_frame(name, fields))


def test_a_failure_says_its_kind_in_a_field_not_in_its_text() -> None:
    # Protocol 1 told a delivery failure by a "(" at the start of the item's text.
    function = m.Failed("p", 0, "(1, 2)", "ValueError", "bad", "tb", delivery=False)
    delivery = m.Failed("p", 0, "(end of stream)", "ActorStopped", "gone", "", delivery=True)
    assert not function.delivery
    assert delivery.delivery


def test_a_plan_survives_its_spawn_arguments() -> None:
    codec = MsgpackCodec()
    args = PLAN.to_args()
    assert m.NodePlan.from_args(args) == PLAN
    assert m.NodePlan.from_args(codec.decode_payload(codec.encode_payload(args))) == PLAN


def test_a_plan_in_spawn_arguments_decodes_without_the_flow_layer() -> None:
    # The placement leader and the hosting member decode a spawn before they load
    # the flow layer: the plan's spawn form holds no registered class.
    payload = MsgpackCodec().encode_payload(PLAN.to_args())
    script = (
        "import sys\n"
        "from cfactor.wire import MsgpackCodec\n"
        "value = MsgpackCodec().decode_payload(bytes.fromhex(sys.argv[1]))\n"
        "assert not [m for m in sys.modules if m.startswith('cfactor.flow')]\n"
        "print(value['node'], len(value['edges']))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, payload.hex()],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.split() == ["app.s.f.count", "3"]


@pytest.mark.parametrize(
    "change",
    [
        {"edges": "none"},
        {"edges": [("spread", [], None, None)]},
        {"kind": "sink"},
        {"monitor": "app.run-abc"},
        {"index": "1"},
        {"unknown": 1},
    ],
    ids=str,
)
def test_a_bad_plan_is_refused_when_the_replica_is_built(change: dict[str, Any]) -> None:
    with pytest.raises((TypeError, ValueError)):
        m.NodePlan.from_args({**PLAN.to_args(), **change})
