"""Generated deployments: ``cfactor deploy compose APP.py`` and ``cfactor deploy k8s APP.py``.

One image runs every container of a cluster (etcd, the members, the run); the
generators here turn a checked ``DeploySpec`` into the files that build and start it::

    spec = DeploySpec(Path("wordcount.py"), replicas=3, namespace="demo")
    write(k8s_files(spec, KeyPair.generate()), Path("deploy"))

Pure: no Docker, no Kubernetes client, no network; tests validate the output offline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cfactor.deploy import compose, k8s
from cfactor.deploy.bundle import File, KeyPair, image_files, write
from cfactor.deploy.spec import DeploySpec

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["DeploySpec", "File", "KeyPair", "compose_files", "k8s_files", "write"]


def compose_files(spec: DeploySpec, keys: KeyPair) -> list[File]:
    """The Dockerfile, the app, ``compose.yaml`` and the key pair (``keys/``)."""
    return [*image_files(spec), *compose.files(spec), *keys.files("keys")]


def k8s_files(spec: DeploySpec, keys: KeyPair) -> list[File]:
    """The Dockerfile, the app and the manifests (``k8s/``; the keys in a Secret)."""
    return [*image_files(spec), *k8s.files(spec, keys)]


GENERATORS: dict[str, Callable[[DeploySpec, KeyPair], list[File]]] = {
    "compose": compose_files,
    "k8s": k8s_files,
}
