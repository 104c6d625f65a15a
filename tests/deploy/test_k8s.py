"""``cfactor deploy k8s``: every manifest validates offline against the Kubernetes schemas,
and says what a working cluster needs (probes, the Secret mounted, the advertised pod IP,
replicas, namespace and image everywhere)."""

from __future__ import annotations

import stat
from typing import TYPE_CHECKING, Any

import kubernetes_validate
import pytest
import yaml

import cfactor as cf
from cfactor.deploy import DeploySpec, k8s_files, write
from cfactor.deploy.spec import KEY_FILE, KEYS_DIR
from cfactor.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

    from cfactor.deploy import KeyPair

#: The newest Kubernetes version whose schemas kubernetes-validate ships.
K8S_VERSION = kubernetes_validate.utils.latest_version()
CLUSTER_SCOPED = {"Namespace"}
WORKLOADS = {"Deployment", "StatefulSet", "Job"}


def generate(tmp_path: Path, spec: DeploySpec, keys: KeyPair) -> list[dict[str, Any]]:
    """Write the files and read every object back from them, as kubectl would."""
    out = tmp_path / "out"
    write(k8s_files(spec, keys), out)
    objects: list[dict[str, Any]] = []
    for path in sorted((out / "k8s").glob("*.yaml")):
        objects.extend(yaml.safe_load_all(path.read_text()))
    return objects


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str, component: str) -> dict[str, Any]:
    (found,) = [
        o
        for o in of_kind(objects, kind)
        if o["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return found


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    pod = workload["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


@pytest.fixture
def spec(app: Path) -> DeploySpec:
    return DeploySpec(
        app,
        cluster_name="shop",
        image="registry.example/shop:1.2",
        replicas=5,
        port=7100,
        cpu="250m",
        memory="1Gi",
        namespace="prod",
    )


@pytest.fixture
def objects(tmp_path: Path, spec: DeploySpec, keys: KeyPair) -> list[dict[str, Any]]:
    return generate(tmp_path, spec, keys)


def test_every_object_validates_against_the_kubernetes_schemas(
    objects: list[dict[str, Any]],
) -> None:
    assert {o["kind"] for o in objects} == {
        "Namespace",
        "Secret",
        "Service",
        "StatefulSet",
        "Deployment",
        "Job",
    }
    for manifest in objects:
        # strict: a misspelt or misplaced field fails, not only a wrong type
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def test_the_validation_catches_a_bad_manifest(objects: list[dict[str, Any]]) -> None:
    deployment = one(objects, "Deployment", "member")
    deployment["spec"]["replicas"] = "five"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    del deployment["spec"]["replicas"]
    containers(deployment)[0]["readinessProbe"]["tcpSockett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_every_namespaced_object_is_in_the_namespace(objects: list[dict[str, Any]]) -> None:
    for manifest in objects:
        if manifest["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in manifest["metadata"]
        else:
            assert manifest["metadata"]["namespace"] == "prod", manifest["kind"]
    (namespace,) = of_kind(objects, "Namespace")
    assert namespace["metadata"]["name"] == "prod"


def test_the_default_namespace_is_not_created(tmp_path: Path, app: Path, keys: KeyPair) -> None:
    objects = generate(tmp_path, DeploySpec(app), keys)
    assert not of_kind(objects, "Namespace")
    assert {o["metadata"]["namespace"] for o in objects} == {"default"}


def test_every_container_runs_the_image(objects: list[dict[str, Any]]) -> None:
    workloads = [o for o in objects if o["kind"] in WORKLOADS]
    assert {o["kind"] for o in workloads} == WORKLOADS
    for workload in workloads:
        for container in containers(workload):
            assert container["image"] == "registry.example/shop:1.2"


def test_members_are_replicas_with_probes_resources_and_the_pod_ip(
    objects: list[dict[str, Any]],
) -> None:
    members = one(objects, "Deployment", "member")
    assert members["spec"]["replicas"] == 5
    (member,) = containers(members)
    assert member["ports"] == [{"name": "cfactor", "containerPort": 7100}]
    for probe in ("readinessProbe", "livenessProbe"):
        assert member[probe]["tcpSocket"]["port"] == "cfactor"
    assert member["resources"]["requests"] == {"cpu": "250m", "memory": "1Gi"}
    assert member["resources"]["limits"]["memory"] == "1Gi"
    # The advertised address is the pod's IP, from the downward API.
    env = {e["name"]: e for e in member["env"]}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    args = member["args"]
    assert args[args.index("--listen") + 1] == "tcp://0.0.0.0:7100"
    assert args[args.index("--advertise") + 1] == "tcp://$(POD_IP):7100"
    assert args[args.index("--name") + 1] == "shop"


def test_etcd_is_a_statefulset_behind_a_headless_service_the_members_use(
    objects: list[dict[str, Any]],
) -> None:
    etcd = one(objects, "StatefulSet", "etcd")
    service = one(objects, "Service", "etcd")
    assert service["spec"]["clusterIP"] == "None"
    assert etcd["spec"]["serviceName"] == service["metadata"]["name"]
    assert etcd["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    (container,) = containers(etcd)
    assert container["command"] == ["etcd"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
    url = f"http://{service['metadata']['name']}.prod.svc:2379"
    for component in ("member", "run"):
        workload = one(objects, "Job" if component == "run" else "Deployment", component)
        args = containers(workload)[0]["args"]
        flag = "--etcd" if component == "member" else "--cluster"
        assert args[args.index(flag) + 1] == url


def test_selectors_match_the_pods_they_select(objects: list[dict[str, Any]]) -> None:
    for kind in ("Deployment", "StatefulSet"):
        for workload in of_kind(objects, kind):
            pod_labels = workload["spec"]["template"]["metadata"]["labels"]
            assert workload["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    for service in of_kind(objects, "Service"):
        selected = [
            w
            for w in objects
            if w["kind"] in WORKLOADS
            and service["spec"]["selector"].items()
            <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(selected) == 1, service["metadata"]["name"]


def test_the_secret_holds_the_key_pair_and_is_mounted_where_commands_read_it(
    tmp_path: Path, objects: list[dict[str, Any]], keys: KeyPair
) -> None:
    (secret,) = of_kind(objects, "Secret")
    # The Secret's files are what `cfactor keys generate` writes: Curve loads them.
    for name, text in secret["stringData"].items():
        (tmp_path / name).write_text(text)
    curve = cf.Curve.from_files(tmp_path / KEY_FILE)
    assert (curve.secret_key, curve.public_key) == (keys.secret, keys.public)
    for workload in (one(objects, "Deployment", "member"), one(objects, "Job", "run")):
        pod = workload["spec"]["template"]["spec"]
        (volume,) = pod["volumes"]
        assert volume["secret"]["secretName"] == secret["metadata"]["name"]
        assert volume["secret"]["defaultMode"] & 0o007 == 0  # not readable by others
        (container,) = pod["containers"]
        (mount,) = container["volumeMounts"]
        assert (mount["name"], mount["mountPath"]) == (volume["name"], KEYS_DIR)
        args = container["args"]
        assert args[args.index("--curve-key") + 1] == f"{KEYS_DIR}/{KEY_FILE}"


def test_the_secret_file_is_readable_by_its_owner_only(
    tmp_path: Path, spec: DeploySpec, keys: KeyPair
) -> None:
    write(k8s_files(spec, keys), tmp_path)
    (secret_file,) = (tmp_path / "k8s").glob("*secret*")
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert keys.secret in secret_file.read_text()
    assert not any(
        keys.secret in p.read_text()
        for p in tmp_path.rglob("*")
        if p.is_file() and p != secret_file
    )


def test_the_job_runs_the_app_from_the_image(objects: list[dict[str, Any]]) -> None:
    job = one(objects, "Job", "run")
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert [container["command"][0], *container["args"][:2]] == [
        "cfactor",
        "run",
        "/app/wordcount.py",
    ]


def test_an_external_etcd_replaces_the_statefulset(
    tmp_path: Path, app: Path, keys: KeyPair
) -> None:
    urls = ("http://etcd-a:2379", "http://etcd-b:2379")
    objects = generate(tmp_path, DeploySpec(app, etcd=urls), keys)
    assert not of_kind(objects, "StatefulSet")
    assert all(o["metadata"]["labels"]["app.kubernetes.io/component"] != "etcd" for o in objects)
    args = containers(one(objects, "Deployment", "member"))[0]["args"]
    assert args[args.index("--etcd") + 1] == "http://etcd-a:2379,http://etcd-b:2379"
    for manifest in objects:
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"replicas": 0}, "--replicas"),
        ({"cluster_name": "Shop_1"}, "--cluster-name"),
        ({"namespace": "Prod"}, "--namespace"),
        ({"cpu": "lots"}, "--cpu"),
        ({"cpu": "0m"}, "--cpu"),
        ({"memory": "1"}, "--memory"),
        ({"memory": "12XB"}, "--memory"),
        ({"port": 2379}, "--port"),
        ({"port": 70000}, "--port"),
        ({"image": "a b"}, "--image"),
        ({"etcd": ("etcd:2379",)}, "--etcd"),
    ],
)
def test_bad_options_are_config_errors_naming_the_option(
    app: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        DeploySpec(app, **options)


def test_the_default_cluster_name_comes_from_the_file_name(tmp_path: Path) -> None:
    app = tmp_path / ("My_Very_Long_Application_Name_" * 3 + ".py")
    app.write_text("")
    spec = DeploySpec(app)
    assert spec.cluster_name == "my-very-long-application-name-my-very-lo"
    assert spec.image == f"{spec.cluster_name}:latest"
