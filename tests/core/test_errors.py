"""The one error table (errors to and from the wire), closed versus broken, and the
deprecated ``NodeUnreachable`` name."""

from __future__ import annotations

import asyncio

import pytest

import cfactor as cf
from cfactor import errors
from cfactor._core.remote import error_from_payload, error_payload
from cfactor.cluster.messages import Refused
from cfactor.cluster.runtime import check_reply, refusal
from cfactor.flow.run import _lost
from cfactor.testing import MemoryNetwork, MemoryTransport
from tests.core.actors import Counter, KeyGate

pytestmark = pytest.mark.anyio

ANSWERING = [
    cf.ActorNotFound,
    cf.ActorStopped,
    cf.ActorStartFailed,
    cf.AskTimeout,
    cf.ConfigError,
    cf.MailboxFull,
    cf.MembershipUnavailable,
    cf.MessageNotSerializable,
    cf.NameTaken,
]


@pytest.mark.parametrize("cls", ANSWERING)
def test_a_registered_error_crosses_the_wire_as_itself(cls: type[cf.CfactorError]) -> None:
    back = error_from_payload(error_payload(cls("it went wrong")))
    assert type(back) is cls
    assert str(back) == "it went wrong"


def test_other_errors_cross_as_remote_actor_errors_with_their_type_name() -> None:
    class ActorNotFound(Exception):
        pass

    class Special(cf.ActorNotFound):
        pass

    for error in (ActorNotFound("x"), Special("x"), KeyError("x")):
        back = error_from_payload(error_payload(error))
        assert isinstance(back, cf.RemoteActorError)
        assert back.type_name.endswith(type(error).__qualname__)


def test_a_handler_raising_member_unreachable_does_not_make_it_look_unreachable() -> None:
    # The handler's own ask failed; its asker's connection is fine.
    back = error_from_payload(error_payload(cf.MemberUnreachable("member c is gone")))
    assert isinstance(back, cf.RemoteActorError)
    assert back.type_name.endswith("MemberUnreachable")


def test_the_old_wire_name_and_unknown_names_from_a_peer() -> None:
    assert errors.wire_error_type("NodeUnreachable") is cf.MemberUnreachable
    assert errors.wire_error_type("MemberUnreachable") is cf.MemberUnreachable
    back = error_from_payload(("SomethingNew", "msg", "", "tb"))
    assert isinstance(back, cf.RemoteActorError)
    assert (back.type_name, back.message) == ("SomethingNew", "msg")


def test_a_wire_name_belongs_to_one_class() -> None:
    class NameTaken(cf.CfactorError):
        pass

    with pytest.raises(cf.ConfigError, match="taken"):
        errors.register_wire_error(NameTaken)
    errors.register_wire_error(cf.NameTaken)  # registering the same class again is fine
    assert errors.wire_error_type("NameTaken") is cf.NameTaken


def test_cluster_refusals_use_the_table_and_keep_their_documented_types() -> None:
    with pytest.raises(cf.NameTaken, match="busy"):
        check_reply(refusal(cf.NameTaken("busy")))
    with pytest.raises(cf.ActorStartFailed):
        check_reply(refusal(cf.ActorStartFailed("boom")))
    # Known to the table but not a cluster refusal: reported as the store being out.
    with pytest.raises(cf.MembershipUnavailable, match="slow"):
        check_reply(refusal(cf.AskTimeout("slow")))
    with pytest.raises(cf.MembershipUnavailable):
        check_reply(Refused("NoSuchError", "?"))
    check_reply(("ok", 1))  # not a refusal: nothing to raise


def test_a_flow_reads_lost_replicas_back_by_name_through_the_table() -> None:
    assert _lost("MemberUnreachable")
    assert _lost("NodeUnreachable")  # from a member running the version before
    assert _lost("ActorStopped")
    assert _lost("ActorNotFound")
    assert not _lost("MailboxFull")
    assert not _lost("ValueError")


def test_node_unreachable_is_a_deprecated_alias_of_the_same_class() -> None:
    with pytest.warns(DeprecationWarning, match="MemberUnreachable"):
        old = errors.NodeUnreachable
    assert old is cf.MemberUnreachable
    assert cf.NodeUnreachable is cf.MemberUnreachable
    with pytest.raises(cf.NodeUnreachable):
        raise cf.MemberUnreachable("gone")
    with pytest.raises(AttributeError):
        _ = errors.NoSuchError
    assert "NodeUnreachable" not in errors.__all__
    assert issubclass(cf.MemberUnreachable, cf.DeliveryError)


async def test_closing_the_system_yourself_is_closed_not_unreachable() -> None:
    network = MemoryNetwork()
    a = cf.ActorSystem(listen="mem://", transport=MemoryTransport(network))
    b = cf.ActorSystem(listen="mem://", transport=MemoryTransport(network))
    await a.start()
    await b.start()
    try:
        events: dict[str, asyncio.Event] = {}
        await b.spawn(KeyGate, events, name="gate")
        remote = a.ref("gate", at=b.address)
        pending = asyncio.create_task(remote.ask(("wait", "forever"), timeout=30))
        while "forever" not in events:  # the ask arrived: its answer is pending
            await asyncio.sleep(0.001)
        await a.aclose()
        with pytest.raises(cf.SystemClosed):
            await pending
        with pytest.raises(cf.SystemClosed):
            await remote.ask("again", timeout=1)
        with pytest.raises(cf.SystemClosed):
            await remote.tell("again")
    finally:
        await a.aclose()
        await b.aclose()


async def test_closing_the_system_yourself_is_closed_for_local_refs_too() -> None:
    system = cf.ActorSystem(stop_timeout_s=0.1)  # the gate's handler never returns
    async with system:
        counter = await system.spawn(Counter, name="counter")
        group = await system.spawn(Counter, name="group", replicas=cf.Replicas(min=2, max=2))
        gate = await system.spawn(KeyGate, {}, name="gate")
        pending = asyncio.create_task(gate.ask(("wait", "forever"), timeout=30))
        queued = asyncio.create_task(gate.ask("behind it", timeout=30))
        await asyncio.sleep(0.01)
        assert not pending.done()
    # Asks the close cut short, and every ask and tell after it: closed, not stopped.
    for cut_short in (pending, queued):
        with pytest.raises(cf.SystemClosed):
            await cut_short
    for ref in (counter, group, gate):
        with pytest.raises(cf.SystemClosed):
            await ref.ask("get", timeout=1)
        with pytest.raises(cf.SystemClosed):
            await ref.tell(("add", 1))
        with pytest.raises(cf.SystemClosed):
            ref.tell_nowait(("add", 1))
    assert system.statistics().dead_letters == 0


async def test_an_actor_that_stopped_while_the_system_runs_is_stopped_not_closed() -> None:
    async with cf.ActorSystem() as system:
        counter = await system.spawn(Counter)
        group = await system.spawn(Counter, replicas=cf.Replicas(min=2, max=2))
        for ref in (counter, group):
            await ref.stop()
            with pytest.raises(cf.ActorStopped) as info:
                await ref.ask("get", timeout=1)
            assert not isinstance(info.value, cf.SystemClosed)
            await ref.tell(("add", 1))
            ref.tell_nowait(("add", 1))
        assert system.statistics().dead_letters == 4
