"""Kubernetes manifests: etcd, members, their Services, the keys' Secret, the run's Job.

Each function returns plain dicts (one per object); ``files`` lays them out as the
files ``kubectl apply -f k8s/`` applies in order (the namespace first).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cfactor.deploy import commands, emit
from cfactor.deploy.bundle import SECRET_MODE, File
from cfactor.deploy.spec import (
    APP_DIR,
    ETCD_CLIENT_PORT,
    ETCD_PEER_PORT,
    KEY_FILE,
    KEYS_DIR,
    PUBLIC_FILE,
)

if TYPE_CHECKING:
    from cfactor.deploy.bundle import KeyPair
    from cfactor.deploy.spec import DeploySpec

Manifest = dict[str, Any]

#: The user every cfactor container runs as (the image needs no such user: a number is enough).
RUN_AS_USER = 10001
#: etcd's data volume and its own resources: small, the cluster keeps little in it.
ETCD_STORAGE = "1Gi"
ETCD_RESOURCES = {
    "requests": {"cpu": "100m", "memory": "128Mi"},
    "limits": {"memory": "512Mi"},
}
#: Secret files readable by the owner and the pod's fsGroup (0o440), not by others.
SECRET_FILE_MODE = 0o440


def labels(spec: DeploySpec, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "cfactor",
        "app.kubernetes.io/instance": spec.cluster_name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "cfactor-deploy",
    }


def _selector(spec: DeploySpec, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/instance": spec.cluster_name,
        "app.kubernetes.io/component": component,
    }


def _metadata(spec: DeploySpec, name: str, component: str) -> dict[str, Any]:
    return {"name": name, "namespace": spec.namespace, "labels": labels(spec, component)}


def _env_from_field(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _pod_security() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": RUN_AS_USER, "fsGroup": RUN_AS_USER}


def _container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _keys_volume(spec: DeploySpec) -> dict[str, Any]:
    return {
        "name": "curve-keys",
        "secret": {"secretName": spec.name("curve"), "defaultMode": SECRET_FILE_MODE},
    }


def _keys_mount() -> dict[str, Any]:
    return {"name": "curve-keys", "mountPath": KEYS_DIR, "readOnly": True}


def etcd_url(spec: DeploySpec) -> str:
    """The etcd client URL(s) the members and the run use."""
    if spec.etcd:
        return ",".join(spec.etcd)
    return f"http://{spec.name('etcd')}.{spec.namespace}.svc:{ETCD_CLIENT_PORT}"


def namespace(spec: DeploySpec) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": spec.namespace, "labels": labels(spec, "namespace")},
    }


def secret(spec: DeploySpec, keys: KeyPair) -> Manifest:
    """The CURVE key pair, as the two files ``cfactor keys generate`` writes."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(spec, spec.name("curve"), "keys"),
        "type": "Opaque",
        "stringData": {KEY_FILE: keys.secret + "\n", PUBLIC_FILE: keys.public + "\n"},
    }


def etcd(spec: DeploySpec) -> list[Manifest]:
    """A one-member etcd: a headless Service and a StatefulSet with a data volume."""
    name = spec.name("etcd")
    peer = f"http://$(POD_NAME).{name}.{spec.namespace}.svc"
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(spec, name, "etcd"),
        "spec": {
            "clusterIP": "None",
            # The pod must resolve its own peer name before it is ready.
            "publishNotReadyAddresses": True,
            "selector": _selector(spec, "etcd"),
            "ports": [
                {"name": "client", "port": ETCD_CLIENT_PORT, "targetPort": "client"},
                {"name": "peer", "port": ETCD_PEER_PORT, "targetPort": "peer"},
            ],
        },
    }
    health = {"httpGet": {"path": "/health", "port": "client"}}
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(spec, name, "etcd"),
        "spec": {
            "serviceName": name,
            "replicas": 1,
            "selector": {"matchLabels": _selector(spec, "etcd")},
            "template": {
                "metadata": {"labels": labels(spec, "etcd")},
                "spec": {
                    "securityContext": _pod_security(),
                    "containers": [
                        {
                            "name": "etcd",
                            "image": spec.image,
                            "command": ["etcd"],
                            "args": [
                                "--name=$(POD_NAME)",
                                "--data-dir=/var/lib/etcd/data",
                                f"--listen-client-urls=http://0.0.0.0:{ETCD_CLIENT_PORT}",
                                f"--advertise-client-urls={peer}:{ETCD_CLIENT_PORT}",
                                f"--listen-peer-urls=http://0.0.0.0:{ETCD_PEER_PORT}",
                                f"--initial-advertise-peer-urls={peer}:{ETCD_PEER_PORT}",
                                f"--initial-cluster=$(POD_NAME)={peer}:{ETCD_PEER_PORT}",
                                "--initial-cluster-state=new",
                            ],
                            "env": [_env_from_field("POD_NAME", "metadata.name")],
                            "ports": [
                                {"name": "client", "containerPort": ETCD_CLIENT_PORT},
                                {"name": "peer", "containerPort": ETCD_PEER_PORT},
                            ],
                            "readinessProbe": {**health, "periodSeconds": 5},
                            "livenessProbe": {
                                **health,
                                "initialDelaySeconds": 15,
                                "periodSeconds": 10,
                                "failureThreshold": 6,
                            },
                            "resources": ETCD_RESOURCES,
                            "securityContext": _container_security(),
                            "volumeMounts": [{"name": "data", "mountPath": "/var/lib/etcd"}],
                        }
                    ],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data", "labels": labels(spec, "etcd")},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": ETCD_STORAGE}},
                    },
                }
            ],
        },
    }
    return [service, statefulset]


def _resources(spec: DeploySpec) -> dict[str, Any]:
    quantities = {"cpu": spec.cpu, "memory": spec.memory}
    return {"requests": dict(quantities), "limits": dict(quantities)}


def members(spec: DeploySpec) -> list[Manifest]:
    """The members: a headless Service and a Deployment of ``replicas`` pods.

    Each member listens on all interfaces and advertises its pod IP (the downward API),
    which is what goes into etcd and into refs.
    """
    name = spec.name("member")
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(spec, name, "member"),
        "spec": {
            "clusterIP": "None",
            "selector": _selector(spec, "member"),
            "ports": [{"name": "cfactor", "port": spec.port, "targetPort": "cfactor"}],
        },
    }
    command = commands.member(spec, etcd_url(spec), "$(POD_IP)", f"{KEYS_DIR}/{KEY_FILE}")
    probe = {"tcpSocket": {"port": "cfactor"}}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(spec, name, "member"),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": _selector(spec, "member")},
            "template": {
                "metadata": {"labels": labels(spec, "member")},
                "spec": {
                    "securityContext": _pod_security(),
                    # SIGTERM makes a member leave cleanly; give it the time to.
                    "terminationGracePeriodSeconds": 30,
                    "containers": [
                        {
                            "name": "member",
                            "image": spec.image,
                            "workingDir": APP_DIR,
                            "command": command[:1],
                            "args": command[1:],
                            "env": [
                                _env_from_field("POD_IP", "status.podIP"),
                                _env_from_field("POD_NAME", "metadata.name"),
                            ],
                            "ports": [{"name": "cfactor", "containerPort": spec.port}],
                            "readinessProbe": {**probe, "periodSeconds": 5},
                            "livenessProbe": {
                                **probe,
                                "initialDelaySeconds": 15,
                                "periodSeconds": 10,
                                "failureThreshold": 3,
                            },
                            "resources": _resources(spec),
                            "securityContext": _container_security(),
                            "volumeMounts": [_keys_mount()],
                        }
                    ],
                    "volumes": [_keys_volume(spec)],
                },
            },
        },
    }
    return [service, deployment]


def run_job(spec: DeploySpec) -> Manifest:
    """``cfactor run APP.py`` against the cluster, once (delete the Job to run again)."""
    command = commands.run(spec, etcd_url(spec), f"{KEYS_DIR}/{KEY_FILE}")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(spec, spec.name("run"), "run"),
        "spec": {
            # Retried while etcd or the members are still starting.
            "backoffLimit": 4,
            "template": {
                "metadata": {"labels": labels(spec, "run")},
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": _pod_security(),
                    "containers": [
                        {
                            "name": "run",
                            "image": spec.image,
                            "workingDir": APP_DIR,
                            "command": command[:1],
                            "args": command[1:],
                            "resources": _resources(spec),
                            "securityContext": _container_security(),
                            "volumeMounts": [_keys_mount()],
                        }
                    ],
                    "volumes": [_keys_volume(spec)],
                },
            },
        },
    }


#: Every manifest file a deployment may have: those of an earlier run that this one does
#: not write are removed (``--force``), or ``kubectl apply -f k8s/`` would apply them.
FILES = (
    "k8s/00-namespace.yaml",
    "k8s/10-secret.yaml",
    "k8s/20-etcd.yaml",
    "k8s/30-members.yaml",
    "k8s/40-run-job.yaml",
)


def manifests(spec: DeploySpec, keys: KeyPair) -> dict[str, list[Manifest]]:
    """The objects by file, in the order ``kubectl apply -f`` reads the files."""
    out: dict[str, list[Manifest]] = {}
    if spec.namespace != "default":
        out["k8s/00-namespace.yaml"] = [namespace(spec)]
    out["k8s/10-secret.yaml"] = [secret(spec, keys)]
    if not spec.etcd:
        out["k8s/20-etcd.yaml"] = etcd(spec)
    out["k8s/30-members.yaml"] = members(spec)
    out["k8s/40-run-job.yaml"] = [run_job(spec)]
    assert set(out) <= set(FILES)
    return out


def files(spec: DeploySpec, keys: KeyPair) -> list[File]:
    """The manifest files; the Secret's is readable by its owner only."""
    return [
        File(path, emit.dump_all(objects), SECRET_MODE if "secret" in path else 0o644)
        for path, objects in manifests(spec, keys).items()
    ]
