"""The command lines the generated containers run: one place for both targets.

Members listen on every interface and advertise the address their peers reach them at
(the pod IP on Kubernetes, the container IP under Compose). ``--advertise`` and the
CURVE key option come with other parts of issue 13 (advertised addresses; security from
the command line); their names live here, and only here, so that the generated files
follow them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cfactor.deploy.spec import DeploySpec

#: Option names of ``cfactor cluster join`` and ``cfactor run`` used by the generators.
ADVERTISE = "--advertise"
CURVE_KEY = "--curve-key"


def member(spec: DeploySpec, etcd: str, advertise_host: str, key_file: str) -> list[str]:
    """``cfactor cluster join`` for one member.

    Args:
        spec: The deployment.
        etcd: The etcd client URL(s), comma-separated.
        advertise_host: The host (an IP, or a shell or Kubernetes expression that gives
            one) that other members and the run reach this member at.
        key_file: The cluster's secret key file inside the container.
    """
    return [
        "cfactor",
        "cluster",
        "join",
        "--etcd",
        etcd,
        "--name",
        spec.cluster_name,
        "--listen",
        f"tcp://0.0.0.0:{spec.port}",
        ADVERTISE,
        f"tcp://{advertise_host}:{spec.port}",
        CURVE_KEY,
        key_file,
    ]


def run(spec: DeploySpec, etcd: str, key_file: str) -> list[str]:
    """``cfactor run APP.py --cluster ...``: the driver, run once."""
    return [
        "cfactor",
        "run",
        spec.app_path,
        "--cluster",
        etcd,
        "--name",
        spec.cluster_name,
        "--progress",
        "off",
        CURVE_KEY,
        key_file,
    ]
