"""Security settings for transports: CurveZMQ keys and who may connect.

Pure configuration (no ZeroMQ import): the transport reads it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cfactor.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

_Z85_KEY = re.compile(r"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")


def _check_key(what: str, key: str) -> str:
    if not isinstance(key, str) or not _Z85_KEY.match(key):
        raise ConfigError(f"{what} must be a 40-character Z85 CURVE key, got {key!r}")
    return key


@dataclass(frozen=True)
class Curve:
    """CurveZMQ encryption and authentication for a member.

    Each member has a key pair. It accepts connections only from the public keys in
    ``allowed_keys`` (checked through ZAP); when it connects to a peer it must know the
    peer's public key (the *server key*): from ``server_keys`` by the peer's address,
    else ``public_key`` itself (a cluster whose members share one key pair).

    Attributes:
        secret_key: This member's secret key (Z85, 40 characters).
        public_key: This member's public key (Z85).
        allowed_keys: Public keys of the members that may connect.
        server_keys: Public keys of peers by their address.

    Raises:
        ConfigError: A key is not a 40-character Z85 string, or no key is allowed.
    """

    secret_key: str
    public_key: str
    allowed_keys: Sequence[str] = ()
    server_keys: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_key("secret_key", self.secret_key)
        _check_key("public_key", self.public_key)
        allowed = tuple(_check_key("an allowed key", k) for k in self.allowed_keys)
        if not allowed:
            raise ConfigError("Curve needs at least one allowed key (allowed_keys=[...])")
        object.__setattr__(self, "allowed_keys", allowed)
        for address, key in self.server_keys.items():
            _check_key(f"server key of {address}", key)

    def server_key_for(self, address: str) -> str:
        return self.server_keys.get(address, self.public_key)

    @classmethod
    def from_files(
        cls,
        key_file: str | Path,
        allowed: Sequence[str | Path] = (),
        server_keys: Mapping[str, str] | None = None,
    ) -> Curve:
        """Load a key pair written by ``cfactor keys generate``.

        Args:
            key_file: The secret key file (``NAME.key``); ``NAME.pub`` must sit beside it.
            allowed: Public key files (or keys) that may connect; this member's own
                public key if empty.
            server_keys: Peers' public keys by address.

        Raises:
            ConfigError: A file is missing or holds no key.
        """
        secret_path = Path(key_file)
        public_path = secret_path.with_suffix(".pub")
        secret = _read_key(secret_path)
        public = _read_key(public_path)
        keys = [_read_key(Path(a)) if Path(a).exists() else str(a) for a in allowed] or [public]
        return cls(secret, public, keys, dict(server_keys or {}))

    def __repr__(self) -> str:  # never print the secret key
        return f"Curve(public_key={self.public_key!r}, allowed_keys={len(self.allowed_keys)})"


def _read_key(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read key file {path}: {exc.strerror}") from exc
    return _check_key(f"the key in {path}", text)


@dataclass(frozen=True)
class EtcdTLS:
    """TLS to etcd: ``cf.Cluster(etcd="https://10.0.0.5:2379", etcd_tls=cf.EtcdTLS(...))``.

    Attributes:
        ca: The PEM file of the CA that signed etcd's certificate (``None``: the
            system's roots).
        cert: This member's client certificate (PEM), for an etcd started with
            ``--client-cert-auth``; give ``key`` with it.
        key: The client certificate's private key (PEM).

    Raises:
        ConfigError: A file that does not exist, or ``cert`` without ``key``.
    """

    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ConfigError("etcd TLS: give the client certificate and its key together")
        for what, path in (("ca", self.ca), ("cert", self.cert), ("key", self.key)):
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"etcd TLS: {what} file {path!r} does not exist")

    def read(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """The CA, key and certificate as bytes (gRPC's order), each ``None`` if not set."""

        def load(path: str | None) -> bytes | None:
            return None if path is None else Path(path).read_bytes()

        return load(self.ca), load(self.key), load(self.cert)
