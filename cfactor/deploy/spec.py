"""What a generated deployment is made of: checked once, used by every generator."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cfactor import __version__
from cfactor.errors import ConfigError

#: A Kubernetes name (RFC 1123 label): also a valid Compose project and service name.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
#: Kubernetes CPU quantities: cores ("2", "0.5") or millicores ("500m").
_CPU = re.compile(r"^(?P<number>[0-9]+(\.[0-9]+)?)(?P<milli>m?)$")
#: Kubernetes memory quantities in bytes, binary (Ki..Ti) or decimal (k..T) suffixes.
_MEMORY = re.compile(r"^(?P<number>[0-9]+)(?P<unit>Ki|Mi|Gi|Ti|k|M|G|T)?$")
_UNITS = {
    None: 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
#: An image reference: no spaces, no quotes, no shell characters.
_IMAGE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._/:@-]*$")

#: Object names add suffixes to the cluster's name ("-member", "-etcd-0"): 40 leaves room.
_LONGEST_NAME = 40
_WHEEL = re.compile(r"^cfactor-[A-Za-z0-9_.+!-]+\.whl$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.py$")

#: Where the app file and the keys live inside the image and containers.
APP_DIR = "/app"
KEYS_DIR = "/etc/cfactor/keys"
WHEELS_DIR = "/wheels"
#: The key pair's file names in the Secret, the keys/ directory and the containers.
KEY_FILE = "cluster.key"
PUBLIC_FILE = "cluster.pub"
#: etcd's client and peer ports (its defaults).
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
#: What the Dockerfile installs unless told otherwise: this version, with etcd.
DEFAULT_INSTALL = f"cfactor[cluster]=={__version__}"


def dns_label(text: str) -> str:
    """``text`` made into a DNS label: lower case, ``-`` for anything else, at most 63."""
    label = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:63].strip("-")
    return label or "app"


def check_app(path: str | Path) -> Path:
    """The app file, if it is one.

    Raises:
        ConfigError: It does not exist, is not a file, or is not a ``.py`` file.
    """
    app = Path(path)
    if not app.exists():
        raise ConfigError(f"{app} does not exist")
    if not app.is_file():
        raise ConfigError(f"{app} is not a file")
    if app.suffix != ".py":
        raise ConfigError(f"{app} is not a Python file (.py)")
    if not _FILE_NAME.match(app.name):
        # The name goes into commands and paths in the generated files: keep it plain.
        raise ConfigError(f"{app.name}: name the app file with letters, digits, '_', '-', '.'")
    return app


def cpu_cores(quantity: str) -> float:
    """A Kubernetes CPU quantity in cores: ``"500m"`` is 0.5.

    Raises:
        ConfigError: Not a CPU quantity, or zero.
    """
    match = _CPU.match(quantity)
    if match is None:
        raise ConfigError(f"--cpu must look like 500m or 0.5 or 2, got {quantity!r}")
    cores = float(match["number"]) / (1000 if match["milli"] else 1)
    if cores <= 0:
        raise ConfigError(f"--cpu must be more than zero, got {quantity!r}")
    return cores


def memory_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity in bytes: ``"512Mi"`` is 536870912.

    Raises:
        ConfigError: Not a memory quantity, or less than 32 MiB (a member cannot start).
    """
    match = _MEMORY.match(quantity)
    if match is None:
        raise ConfigError(f"--memory must look like 512Mi or 1Gi or 500M, got {quantity!r}")
    size = int(match["number"]) * _UNITS[match["unit"]]
    if size < 32 * 2**20:
        raise ConfigError(f"--memory must be at least 32Mi, got {quantity!r}")
    return size


def check_etcd_urls(urls: str) -> tuple[str, ...]:
    """Comma-separated etcd client URLs (``http://HOST:PORT``).

    Raises:
        ConfigError: One of them is not an http(s) URL with a host.
    """
    found = tuple(url.strip() for url in urls.split(","))
    for url in found:
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in {"http", "https"} or not rest or " " in url:
            raise ConfigError(f"--etcd must look like http://HOST:PORT, got {url!r}")
    return found


@dataclass(frozen=True)
class DeploySpec:
    """One cluster to generate: the app, where its image comes from, how big it is.

    Attributes:
        app: The Python file that defines the app (copied into the image).
        cluster_name: The cluster's name: names every object, and is the ``--name`` of
            members and of ``cfactor run``.
        image: The image every cfactor container runs (etcd too: the cluster extra
            installs the etcd binary into it).
        replicas: Member processes (pods, containers).
        port: The port members listen on.
        cpu: CPU per member, a Kubernetes quantity (``500m``).
        memory: Memory per member, a Kubernetes quantity (``512Mi``).
        namespace: The Kubernetes namespace of every object.
        etcd: External etcd client URLs; empty to run an etcd in the deployment.
        install: What the Dockerfile pip-installs.
        wheel: A cfactor wheel to copy into the image and install (with the cluster
            extra) instead of ``install``: for a cfactor built from source.

    Raises:
        ConfigError: A value a deployment cannot use (each message names the option).
    """

    app: Path
    cluster_name: str = ""
    image: str = ""
    replicas: int = 2
    port: int = 7000
    cpu: str = "500m"
    memory: str = "512Mi"
    namespace: str = "default"
    etcd: tuple[str, ...] = ()
    install: str = DEFAULT_INSTALL
    wheel: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "app", check_app(self.app))
        if not self.cluster_name:
            default = dns_label(self.app.stem)[:_LONGEST_NAME].strip("-") or "app"
            object.__setattr__(self, "cluster_name", default)
        if not self.image:
            object.__setattr__(self, "image", f"{self.cluster_name}:latest")
        if not _DNS_LABEL.match(self.cluster_name) or len(self.cluster_name) > _LONGEST_NAME:
            raise ConfigError(
                "--cluster-name must be lower-case letters, digits and '-', at most 40 "
                f"characters, starting and ending with a letter or digit, got {self.cluster_name!r}"
            )
        if not _DNS_LABEL.match(self.namespace) or len(self.namespace) > 63:
            raise ConfigError(
                f"--namespace must be a DNS label (a-z, 0-9, '-'), got {self.namespace!r}"
            )
        if not _IMAGE.match(self.image):
            raise ConfigError(f"--image must be an image reference, got {self.image!r}")
        if isinstance(self.replicas, bool) or not 1 <= self.replicas <= 1000:
            raise ConfigError(f"--replicas must be from 1 to 1000, got {self.replicas}")
        if not 1 <= self.port <= 65535 or self.port in {ETCD_CLIENT_PORT, ETCD_PEER_PORT}:
            raise ConfigError(f"--port must be from 1 to 65535 and not etcd's, got {self.port}")
        cpu_cores(self.cpu)
        memory_bytes(self.memory)
        if self.etcd:
            object.__setattr__(self, "etcd", check_etcd_urls(",".join(self.etcd)))
        if self.wheel is not None:
            wheel = Path(self.wheel)
            if not wheel.is_file() or wheel.suffix != ".whl" or not _WHEEL.match(wheel.name):
                raise ConfigError(f"--wheel must be a cfactor wheel file (.whl), got {wheel}")
            if self.install != DEFAULT_INSTALL:
                raise ConfigError("give --wheel or --install, not both")
            object.__setattr__(self, "wheel", wheel)
            object.__setattr__(self, "install", f"{WHEELS_DIR}/{wheel.name}[cluster]")
        if not self.install.strip():
            raise ConfigError("--install must name what pip installs, got nothing")

    @property
    def app_path(self) -> str:
        """The app file's path inside the image."""
        return f"{APP_DIR}/{self.app.name}"

    def name(self, part: str) -> str:
        """The name of one part of the cluster: ``wordcount-member``."""
        return f"{self.cluster_name}-{part}"
