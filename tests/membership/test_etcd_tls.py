"""etcd over TLS with client certificates, and with user/password auth: a real etcd,
certificates made here (a CA, a server certificate for 127.0.0.1, a client one)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import subprocess
from typing import TYPE_CHECKING

import pytest

import cfactor as cf
from cfactor.abc import MemberInfo
from cfactor.membership import make_membership
from cfactor.tools.etcd_server import EtcdServer

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

pytestmark = pytest.mark.anyio


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def make_pki(where: Path, name: str) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1, a client certificate; their paths."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": where / f"{name}-ca.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for role, usage in (
        ("server", ExtendedKeyUsageOID.SERVER_AUTH),
        ("client", ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} {role}")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        paths[role] = where / f"{name}-{role}.pem"
        paths[role].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths[f"{role}-key"] = where / f"{name}-{role}-key.pem"
        _write_key(key, paths[f"{role}-key"])
    return paths


@pytest.fixture(scope="module")
def tls_etcd(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[EtcdServer, dict[str, Path]]]:
    where = tmp_path_factory.mktemp("pki")
    pki = make_pki(where, "good")
    pki.update({f"other-{k}": v for k, v in make_pki(where, "other").items()})
    with EtcdServer(tls=(pki["ca"], pki["server"], pki["server-key"])) as server:
        yield server, pki


def info(member_id: str) -> MemberInfo:
    return MemberInfo(member_id, "tcp://127.0.0.1:1")


async def test_a_member_joins_an_etcd_over_tls_with_its_client_certificate(
    tls_etcd: tuple[EtcdServer, dict[str, Path]],
) -> None:
    server, pki = tls_etcd
    assert server.endpoint.startswith("https://")
    tls = cf.EtcdTLS(ca=str(pki["ca"]), cert=str(pki["client"]), key=str(pki["client-key"]))
    membership = make_membership(server.endpoint, cluster="tls", etcd_tls=tls)
    try:
        await membership.join(info("m1"), ttl_s=5)
        claimed = await membership.claim("a")
        assert claimed is not None
        assert claimed.member_id == "m1"
        assert (await membership.lookup("a")) == claimed
    finally:
        await membership.aclose()


@pytest.mark.parametrize(
    "wrong",
    ["no client certificate", "a client certificate of another CA", "another CA", "plain text"],
)
async def test_without_the_right_certificates_etcd_is_unavailable_and_says_so(
    tls_etcd: tuple[EtcdServer, dict[str, Path]], wrong: str
) -> None:
    server, pki = tls_etcd
    url, tls = server.endpoint, None
    match wrong:
        case "no client certificate":
            tls = cf.EtcdTLS(ca=str(pki["ca"]))
        case "a client certificate of another CA":
            tls = cf.EtcdTLS(
                ca=str(pki["ca"]), cert=str(pki["other-client"]), key=str(pki["other-client-key"])
            )
        case "another CA":
            tls = cf.EtcdTLS(
                ca=str(pki["other-ca"]), cert=str(pki["client"]), key=str(pki["client-key"])
            )
        case "plain text":
            url = url.replace("https://", "http://")
    membership = make_membership(url, cluster="tls", etcd_tls=tls, request_timeout_s=2.0)
    try:
        with pytest.raises(cf.MembershipUnavailable, match=r"etcd at .* did not"):
            await membership.join(info("m2"), ttl_s=5)
    finally:
        await membership.aclose()


def test_tls_settings_are_checked_where_they_are_given(tmp_path: Path) -> None:
    with pytest.raises(cf.ConfigError, match="does not exist"):
        cf.EtcdTLS(ca=str(tmp_path / "missing.pem"))
    with pytest.raises(cf.ConfigError, match="together"):
        cf.EtcdTLS(cert=str(tmp_path))
    (tmp_path / "ca.pem").write_text("x")
    with pytest.raises(cf.ConfigError, match="not https"):
        make_membership("http://127.0.0.1:2379", etcd_tls=cf.EtcdTLS(ca=str(tmp_path / "ca.pem")))
    with pytest.raises(cf.ConfigError, match="for an etcd URL"):
        make_membership(None, etcd_user="root", etcd_password="pw")


async def test_user_and_password_auth(tmp_path: Path) -> None:
    with EtcdServer() as server:
        etcdctl = server.binary.with_name("etcdctl")
        if not etcdctl.exists():
            pytest.skip(f"no etcdctl beside {server.binary} to turn authentication on")

        def ctl(*args: str) -> None:
            subprocess.run(
                [str(etcdctl), f"--endpoints={server.endpoint}", *args],
                check=True,
                capture_output=True,
                timeout=30,
            )

        ctl("user", "add", "root:rootpw")
        ctl("user", "add", "member:secret")
        ctl("role", "add", "cfactor")
        ctl("role", "grant-permission", "cfactor", "--prefix=true", "readwrite", "/cfactor/")
        ctl("user", "grant-role", "member", "cfactor")
        ctl("auth", "enable")
        good = make_membership(
            server.endpoint, cluster="auth", etcd_user="member", etcd_password="secret"
        )
        try:
            await good.join(info("m1"), ttl_s=5)
            assert await good.claim("a") is not None
        finally:
            await good.aclose()
        for user, password in (("member", "wrong"), (None, None)):
            bad = make_membership(
                server.endpoint, cluster="auth", etcd_user=user, etcd_password=password
            )
            try:
                with pytest.raises(cf.MembershipUnavailable):
                    await bad.join(info("m2"), ttl_s=5)
            finally:
                await bad.aclose()
        await asyncio.sleep(0)


async def test_several_endpoints_one_of_them_down() -> None:
    with EtcdServer() as server:
        from cfactor.tools.etcd_server import free_port

        dead = f"http://127.0.0.1:{free_port()}"
        membership = make_membership(
            f"{dead},{server.endpoint}", cluster="two", request_timeout_s=3.0
        )
        try:
            await membership.join(info("m1"), ttl_s=5)
            assert await membership.claim("a") is not None
        finally:
            await membership.aclose()
