"""The cluster's typed protocol (cfactor/cluster/messages.py) crosses the wire intact,
and a peer's message with a wrong field type is a ProtocolError, not a crash."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from cfactor.cluster import messages as m
from cfactor.errors import MalformedFrame, ProtocolError
from cfactor.wire import MsgpackCodec, default_registry

SAMPLES: list[Any] = [
    m.Activate(b"spec", 1.5),
    m.Deactivate("counter"),
    m.HostReplica(b"spec", 4, "tcp://127.0.0.1:7001"),
    m.Stats(),
    m.StoreQuery(),
    m.Reserve(b"spec"),
    m.Confirm(b"spec", 7),
    m.Unreserve("counter", "token"),
    m.Forget("counter"),
    m.Leaving("demo-0a"),
    m.Reconcile(),
    m.LoadReport("demo-0a", 3, {"work": [5, 2]}),
    m.ChooseReplica(("pin", "demo-0a")),
    m.ChooseReplica(None),
    m.Loads(),
    m.Placed("demo-0a", "tcp://127.0.0.1:7001"),
    m.AlreadyPlaced(),
    m.Activated("demo-0a", "tcp://127.0.0.1:7001", 7),
    m.ReplicaHosted("tcp://127.0.0.1:7001", "$12"),
    m.Refused("NameTaken", "cluster actor 'counter' is already running"),
    m.StoreDown(),
    m.StoreUp(2.5),
]


def test_every_cluster_message_is_registered_and_sampled() -> None:
    classes = {
        obj
        for obj in vars(m).values()
        if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == m.__name__
    }
    assert classes == {type(sample) for sample in SAMPLES}
    for cls in classes:
        assert default_registry.name_of(cls) == f"cfactor.cluster.{cls.__name__}"


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: type(s).__name__)
def test_a_cluster_message_round_trips(sample: Any) -> None:
    codec = MsgpackCodec()
    assert codec.decode_payload(codec.encode_payload(sample)) == sample


def message_frame(name: str, fields: dict[str, Any]) -> bytes:
    """A payload as a peer writes it: the codec's ext 3, ``[name, {field: value}]``."""
    import msgpack

    body = msgpack.packb([name, fields], use_bin_type=True)
    frame: bytes = msgpack.packb(msgpack.ExtType(3, body), use_bin_type=True)
    return frame


def test_a_hand_written_message_frame_decodes() -> None:
    frame = message_frame("cfactor.cluster.Confirm", {"spec": b"s", "epoch": 7})
    assert MsgpackCodec().decode_payload(frame) == m.Confirm(b"s", 7)


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("cfactor.cluster.Activate", {"spec": "not bytes", "budget_s": 1.0}),
        ("cfactor.cluster.Confirm", {"spec": b"s", "epoch": True}),
        ("cfactor.cluster.LoadReport", {"member_id": "a", "hosted": 1, "groups": [1]}),
        ("cfactor.cluster.Deactivate", {"name": 3}),
        ("cfactor.cluster.StoreUp", {"back_for_s": "soon"}),
        ("cfactor.cluster.Placed", {"member_id": "a"}),
    ],
)
def test_a_peers_message_with_bad_fields_is_a_protocol_error(
    name: str, fields: dict[str, Any]
) -> None:
    with pytest.raises(ProtocolError) as info:
        MsgpackCodec().decode_payload(message_frame(name, fields))
    assert isinstance(info.value, MalformedFrame)
    assert "rejected its fields" in str(info.value)
