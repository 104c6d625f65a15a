"""What only the etcd backend has: endpoint parsing, the key layout, a hung server,
a lease revoked behind the member's back, foreign keys under the prefix."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import TYPE_CHECKING

import aetcd
import pytest

from cfactor.abc import MemberInfo
from cfactor.errors import ConfigError, MembershipError, MembershipUnavailable
from cfactor.membership import make_membership
from cfactor.membership.etcd import EtcdMembership, parse_endpoint, parse_endpoints
from tests.membership.etcd_server import free_port

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from tests.membership.etcd_server import EtcdServer

pytestmark = pytest.mark.anyio


@pytest.fixture
async def raw(etcd: EtcdServer, anyio_backend: object) -> AsyncIterator[aetcd.Client]:
    """A plain aetcd client, to look at and tamper with what the backend stored."""
    client = aetcd.Client(host="127.0.0.1", port=etcd.client_port, timeout=2)
    try:
        yield client
    finally:
        await client.close()


async def wait_for(predicate: object, within: float = 5.0) -> None:
    assert callable(predicate)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("http://127.0.0.1:2379", ("127.0.0.1", 2379)),
        ("http://localhost", ("localhost", 2379)),
        ("etcd://10.0.0.5:23790/", ("10.0.0.5", 23790)),
        ("http://[::1]:2379", ("[::1]", 2379)),
        ("https://127.0.0.1:2379", ("127.0.0.1", 2379)),
    ],
)
def test_endpoints_that_parse(endpoint: str, expected: tuple[str, int]) -> None:
    assert parse_endpoint(endpoint) == expected


@pytest.mark.parametrize(
    "endpoint",
    [
        "127.0.0.1:2379",
        "http://",
        "http://127.0.0.1:notaport",
        "http://127.0.0.1:2379/v3",
        "http://a:1,b:2",
        "tcp://127.0.0.1:2379",
    ],
)
def test_endpoints_that_do_not(endpoint: str) -> None:
    with pytest.raises(ConfigError):
        parse_endpoint(endpoint)


@pytest.mark.parametrize("cluster", ["", "a/b"])
def test_cluster_names_that_would_make_bad_prefixes(cluster: str) -> None:
    with pytest.raises(ConfigError):
        EtcdMembership("http://127.0.0.1:2379", cluster=cluster)


def test_request_timeout_must_be_positive() -> None:
    with pytest.raises(ConfigError):
        EtcdMembership("http://127.0.0.1:2379", cluster="c", request_timeout_s=0)


def test_make_membership_picks_the_backend() -> None:
    assert isinstance(make_membership("http://127.0.0.1:2379", cluster="c"), EtcdMembership)
    assert isinstance(make_membership("etcd://127.0.0.1:2379", cluster="c"), EtcdMembership)
    with pytest.raises(ConfigError):
        make_membership("zk://127.0.0.1:2181")


def test_importing_the_package_does_not_load_grpc() -> None:
    code = (
        "import sys, cfactor.membership as m; "
        "m.make_membership(None); "
        "print(sorted(x for x in ('aetcd', 'grpc') if x in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


async def test_the_key_layout(etcd: EtcdServer, raw: aetcd.Client) -> None:
    member = EtcdMembership(etcd.endpoint, cluster="layout", wall_clock=lambda: 1234.5)
    try:
        await member.join(MemberInfo("m1", "tcp://127.0.0.1:7001", labels=(("k", "v"),)))
        activation = await member.claim("counter")
        assert activation is not None
        assert await member.campaign("placement")
        stored = await raw.get(b"/cfactor/layout/members/m1")
        assert stored is not None
        assert json.loads(stored.value) == {
            "member_id": "m1",
            "address": "tcp://127.0.0.1:7001",
            "capacity": 0,
            "labels": [["k", "v"]],
            "public_key": "",
            "joined_at": 1234.5,
        }
        lease = stored.lease
        assert lease != 0
        actor = await raw.get(b"/cfactor/layout/actors/counter")
        assert actor is not None
        assert json.loads(actor.value) == {"member_id": "m1", "address": "tcp://127.0.0.1:7001"}
        assert actor.create_revision == activation.epoch
        assert actor.lease == lease
        leader = await raw.get(b"/cfactor/layout/leaders/placement")
        assert leader is not None
        assert leader.value == b"m1"
        assert leader.lease == lease
    finally:
        await member.aclose()
    assert not await raw.get_prefix(b"/cfactor/layout/")


async def test_clusters_do_not_see_each_other(etcd: EtcdServer) -> None:
    # "iso" must not watch "iso2"'s keys: the prefix ends with a slash.
    one = EtcdMembership(etcd.endpoint, cluster="iso")
    two = EtcdMembership(etcd.endpoint, cluster="iso2")
    try:
        await one.join(MemberInfo("a", "tcp://a"))
        await two.join(MemberInfo("a", "tcp://a"))  # the same id in another cluster is fine
        assert await two.claim("x") is not None
        assert await one.claim("x") is not None
        await asyncio.sleep(0.2)
        assert set(one.members()) == set(two.members()) == {"a"}
        assert one.activations()["x"].epoch != two.activations()["x"].epoch
    finally:
        await one.aclose()
        await two.aclose()


async def test_foreign_keys_under_the_prefix_are_ignored(
    etcd: EtcdServer, raw: aetcd.Client
) -> None:
    member = EtcdMembership(etcd.endpoint, cluster="foreign")
    try:
        await raw.put(b"/cfactor/foreign/members/junk", b"not json")
        await member.join(MemberInfo("a", "tcp://a"))
        await raw.put(b"/cfactor/foreign/actors/junk", b"[1, 2]")
        await raw.put(b"/cfactor/foreign/something/else", b"x")
        other = EtcdMembership(etcd.endpoint, cluster="foreign")
        try:
            await other.join(MemberInfo("b", "tcp://b"))
            await wait_for(lambda: set(member.members()) == {"a", "b"})
        finally:
            await other.aclose()
        assert member.activations() == {}
    finally:
        await member.aclose()
        await raw.delete_prefix(b"/cfactor/foreign/")


async def test_a_lease_revoked_behind_the_members_back_is_lost_once(
    etcd: EtcdServer, raw: aetcd.Client
) -> None:
    member = EtcdMembership(etcd.endpoint, cluster="revoked")
    lost: list[str] = []
    member.on_lease_lost(lambda: lost.append("lost"))
    try:
        await member.join(MemberInfo("a", "tcp://a"), ttl_s=3)
        stored = await raw.get(b"/cfactor/revoked/members/a")
        assert stored is not None
        await raw.revoke_lease(stored.lease)
        # The next write names the lease: etcd says it is gone, at once.
        with pytest.raises(MembershipError):
            await member.claim("x")
        assert lost == ["lost"]
        assert not member.joined
        await asyncio.sleep(1.2)  # a keepalive would run now, if one still did
        assert lost == ["lost"]
    finally:
        await member.aclose()


async def test_the_keepalive_notices_a_revoked_lease(etcd: EtcdServer, raw: aetcd.Client) -> None:
    member = EtcdMembership(etcd.endpoint, cluster="revoked2")
    lost: list[str] = []
    member.on_lease_lost(lambda: lost.append("lost"))
    try:
        await member.join(MemberInfo("a", "tcp://a"), ttl_s=3)  # keepalive every second
        stored = await raw.get(b"/cfactor/revoked2/members/a")
        assert stored is not None
        await raw.revoke_lease(stored.lease)
        await wait_for(lambda: lost == ["lost"], within=2.5)
    finally:
        await member.aclose()


async def test_a_hung_etcd_fails_calls_within_the_timeout(etcd: EtcdServer) -> None:
    member = EtcdMembership(etcd.endpoint, cluster="hung", request_timeout_s=0.5)
    lost: list[str] = []
    member.on_lease_lost(lambda: lost.append("lost"))
    try:
        await member.join(MemberInfo("a", "tcp://a"), ttl_s=2)
        etcd.pause()  # connections stay up; nothing answers
        try:
            loop = asyncio.get_running_loop()
            calls: list[Callable[[], Awaitable[object]]] = [
                lambda: member.lookup("x"),
                lambda: member.claim("x"),
            ]
            for call in calls:
                started = loop.time()
                with pytest.raises(MembershipUnavailable):
                    await call()
                assert loop.time() - started < 1.0
            # Cut off for longer than the TTL: the member fences itself by its own clock.
            await wait_for(lambda: lost == ["lost"], within=3.0)
            assert member.stale
        finally:
            etcd.resume()
    finally:
        await member.aclose()


async def test_nothing_listening_fails_fast_and_close_does_not_raise() -> None:
    member = EtcdMembership(f"http://127.0.0.1:{free_port()}", cluster="none")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(MembershipUnavailable) as caught:
        await member.join(MemberInfo("a", "tcp://a"))
    assert loop.time() - started < 1.5
    assert isinstance(caught.value.__cause__, aetcd.ClientError)
    await member.aclose()
    await member.aclose()


async def test_close_while_etcd_is_down_is_quick(etcd: EtcdServer) -> None:
    member = EtcdMembership(etcd.endpoint, cluster="down-close")
    await member.join(MemberInfo("a", "tcp://a"), ttl_s=5)
    await etcd.astop(kill=True)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await member.aclose()  # leave fails: logged, the lease will expire
        assert loop.time() - started < 2.5
    finally:
        await etcd.astart()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:2379", (False, "127.0.0.1:2379")),
        ("https://etcd.example:2379", (True, "etcd.example:2379")),
        ("https://10.0.0.1:2379,https://10.0.0.2:2379", (True, "ipv4:10.0.0.1:2379,10.0.0.2:2379")),
        ("http://[::1]:1, http://[::2]:2", (False, "ipv6:[::1]:1,[::2]:2")),
    ],
)
def test_several_endpoints_become_one_grpc_target(url: str, expected: tuple[bool, str]) -> None:
    assert parse_endpoints(url) == expected


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("https://10.0.0.1:2379,http://10.0.0.2:2379", "mix schemes"),
        ("http://a:1,http://b:2", "must be IP addresses"),
        ("http://10.0.0.1:1,http://[::1]:2", "one IP family"),
        (",", "no etcd endpoint"),
    ],
)
def test_several_endpoints_that_cannot_be_one_target(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_endpoints(url)
