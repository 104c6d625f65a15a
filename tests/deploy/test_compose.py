"""``cfactor deploy compose``: the Compose file validates against the Compose schema, and
what it starts is a cluster (replicas, image, health checks, keys, advertised address)."""

from __future__ import annotations

import json
import os
import shlex
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import pytest
import yaml

import cfactor as cf
from cfactor.deploy import DeploySpec, compose_files, write
from cfactor.deploy.spec import DEFAULT_INSTALL, KEY_FILE

if TYPE_CHECKING:
    from cfactor.deploy import KeyPair

HERE = Path(__file__).resolve().parent


def compose_schema() -> dict[str, Any]:
    """The Compose specification's schema (see compose_spec.NOTICE), plus ``name``.

    The vendored copy predates the top-level ``name`` key, which Compose has read since
    v2.3.3 (2022); it is added here as the current compose-spec schema defines it.
    """
    schema: dict[str, Any] = json.loads((HERE / "compose_spec.json").read_text())
    schema["properties"]["name"] = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]*$"}
    return schema


VALIDATOR = jsonschema.Draft201909Validator(compose_schema())


def generate(out: Path, spec: DeploySpec, keys: KeyPair) -> dict[str, Any]:
    write(compose_files(spec, keys), out)
    document: dict[str, Any] = yaml.safe_load((out / "compose.yaml").read_text())
    return document


@pytest.fixture
def spec(app: Path) -> DeploySpec:
    return DeploySpec(
        app, cluster_name="shop", image="shop:dev", replicas=4, port=7100, cpu="2", memory="1Gi"
    )


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "out"


@pytest.fixture
def compose(out: Path, spec: DeploySpec, keys: KeyPair) -> dict[str, Any]:
    return generate(out, spec, keys)


def test_the_compose_file_validates_against_the_compose_schema(compose: dict[str, Any]) -> None:
    VALIDATOR.validate(compose)
    assert set(compose["services"]) == {"etcd", "member", "run"}


def test_the_schema_catches_a_bad_file(compose: dict[str, Any]) -> None:
    compose["services"]["member"]["healthcheck"]["intervall"] = "5s"
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(compose)


def test_every_service_builds_and_runs_the_image(compose: dict[str, Any]) -> None:
    for service in compose["services"].values():
        assert service["image"] == "shop:dev"
        assert service["build"] == {"context": "."}


def test_members_are_replicas_with_health_checks_and_resources(compose: dict[str, Any]) -> None:
    member = compose["services"]["member"]
    assert member["deploy"]["replicas"] == 4
    assert member["deploy"]["resources"]["limits"] == {"cpus": "2", "memory": str(2**30)}
    assert "7100" in member["healthcheck"]["test"][-1]
    assert member["depends_on"] == {"etcd": {"condition": "service_healthy"}}
    assert "healthcheck" in compose["services"]["etcd"]
    assert compose["services"]["run"]["depends_on"] == {"member": {"condition": "service_healthy"}}
    assert "container_name" not in member  # replicas need names of their own


def test_the_keys_are_secrets_from_files_curve_loads(
    out: Path, compose: dict[str, Any], keys: KeyPair
) -> None:
    for name, secret in compose["secrets"].items():
        path = out / secret["file"]
        assert path.is_file(), name
    key_file = out / compose["secrets"]["curve_key"]["file"]
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    curve = cf.Curve.from_files(key_file)
    assert (curve.secret_key, curve.public_key) == (keys.secret, keys.public)
    for name in ("member", "run"):
        service = compose["services"][name]
        assert {s["source"] for s in service["secrets"]} == set(compose["secrets"])
        words = (
            service["command"]
            if name == "run"
            else shlex.split(service["command"][-1].replace("$$", "$"))
        )
        assert words[words.index("--curve-key") + 1] == f"/run/secrets/{KEY_FILE}"
    # The keys are not baked into the image: docker leaves them out of the build context.
    assert "keys/" in (out / ".dockerignore").read_text().split()


def test_the_member_advertises_its_container_ip(tmp_path: Path, compose: dict[str, Any]) -> None:
    # Run the member's shell command as the container would, with a `cfactor` that
    # prints its arguments: the advertised address is this machine's own IP.
    command = compose["services"]["member"]["command"]
    assert command[:2] == ["sh", "-c"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    fake = bin_dir / "cfactor"
    fake.write_text('#!/bin/sh\nfor word in "$@"; do echo "$word"; done\n')
    fake.chmod(0o755)
    script = command[2].replace("$$", "$")  # what Compose hands the shell
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    words = subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, env=env, check=True, timeout=30
    ).stdout.splitlines()
    assert words[:2] == ["cluster", "join"]
    assert words[words.index("--listen") + 1] == "tcp://0.0.0.0:7100"
    advertised = words[words.index("--advertise") + 1]
    host = advertised.removeprefix("tcp://").removesuffix(":7100")
    assert host == socket.gethostbyname(socket.gethostname())
    assert words[words.index("--etcd") + 1] == "http://etcd:2379"


def test_the_run_is_on_demand_and_runs_the_app(compose: dict[str, Any]) -> None:
    run = compose["services"]["run"]
    assert run["profiles"] == ["run"]  # not started by `up`; `docker compose run run` does
    assert run["command"][:3] == ["cfactor", "run", "/app/wordcount.py"]
    assert run["command"][run["command"].index("--cluster") + 1] == "http://etcd:2379"
    assert run["restart"] == "no"


def test_an_external_etcd_leaves_etcd_out(out: Path, app: Path, keys: KeyPair) -> None:
    compose = generate(out, DeploySpec(app, etcd=("http://10.0.0.5:2379",)), keys)
    VALIDATOR.validate(compose)
    assert "etcd" not in compose["services"]
    assert "volumes" not in compose
    assert "depends_on" not in compose["services"]["member"]
    assert "--etcd http://10.0.0.5:2379 " in compose["services"]["member"]["command"][-1]


def test_the_image_holds_the_app_and_installs_cfactor_with_etcd(
    out: Path, app: Path, compose: dict[str, Any]
) -> None:
    assert (out / "app" / "wordcount.py").read_text() == app.read_text()
    dockerfile = (out / "Dockerfile").read_text()
    assert f"FROM python:{sys.version_info.major}.{sys.version_info.minor}-slim" in dockerfile
    assert f'ARG CFACTOR_INSTALL="cfactor[cluster]=={cf.__version__}"' in dockerfile
    assert "COPY app/ /app/" in dockerfile


def test_a_cfactor_wheel_is_built_into_the_image(tmp_path: Path, app: Path, keys: KeyPair) -> None:
    wheel = tmp_path / "cfactor-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK\x03\x04 not really a wheel")
    out = tmp_path / "out"
    write(compose_files(DeploySpec(app, wheel=wheel), keys), out)
    assert (out / "wheels" / wheel.name).read_bytes() == wheel.read_bytes()
    lines = (out / "Dockerfile").read_text().splitlines()
    copy = lines.index("COPY wheels/ /wheels/")
    arg = lines.index(f'ARG CFACTOR_INSTALL="/wheels/{wheel.name}[cluster]"')
    install = lines.index('RUN pip install --no-cache-dir "$CFACTOR_INSTALL"')
    assert copy < arg < install


@pytest.mark.parametrize(
    ("name", "install", "message"),
    [
        ("other-1.0-py3-none-any.whl", "", "--wheel must be a cfactor wheel"),
        ("cfactor-0.1.0.tar.gz", "", "--wheel must be a cfactor wheel"),
        ("cfactor-0.1.0-py3-none-any.whl", "cfactor==0.1.0", "not both"),
    ],
)
def test_a_wrong_wheel_is_refused(
    tmp_path: Path, app: Path, name: str, install: str, message: str
) -> None:
    wheel = tmp_path / name
    wheel.write_bytes(b"x")
    with pytest.raises(cf.ConfigError, match=message):
        DeploySpec(app, wheel=wheel, install=install or DEFAULT_INSTALL)
