"""What the cluster remembers about a named actor, so any member can (re)start it.

A spec names the actor's class by import path (never pickle), carries the
constructor's arguments as wire values, and says where it may run. The placement
actor stores every spec in the membership store, so a new placement leader can
rebuild its state after the old one died.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

from cfactor._core.actor import Actor
from cfactor.cluster.config import placement_to_wire
from cfactor.errors import ConfigError, MalformedFrame
from cfactor.loading import import_path, load_object
from cfactor.wire import MsgpackCodec

_CODEC = MsgpackCodec()


@dataclass(frozen=True, slots=True)
class ActorSpec:
    """A named cluster actor: its class, arguments, restart type and placement.

    ``token`` tells one spawn from another: a digest of the spec and the spawning
    member, so a retry of the same spawn (after ``SpawnOutcomeUnknown``) is recognised
    by placement and by the member that started it, instead of meeting ``NameTaken``.
    """

    name: str
    module: str
    qualname: str
    file: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    restart: str
    placement: tuple[Any, ...] | None
    token: str = ""

    @classmethod
    def of(
        cls,
        actor_cls: type,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        name: str,
        restart: str,
        placement: Any,
    ) -> ActorSpec:
        """Raises: ConfigError: the class cannot be found by path on another member."""
        module, qualname, file = import_path(
            actor_cls, "cluster actors must be module-level classes"
        )
        return cls(
            name,
            module,
            qualname,
            file,
            tuple(args),
            dict(kwargs),
            restart,
            placement_to_wire(placement),
        )

    def _fields(self) -> tuple[Any, ...]:
        return (
            self.name,
            self.module,
            self.qualname,
            self.file,
            self.args,
            self.kwargs,
            self.restart,
            self.placement,
        )

    def encode(self) -> bytes:
        """Raises: MessageNotSerializable: an argument cannot cross the wire."""
        return _CODEC.encode_payload((*self._fields(), self.token))

    def with_token(self, spawner: str) -> ActorSpec:
        """This spec, tokened as spawned by member ``spawner``.

        Raises:
            MessageNotSerializable: an argument cannot cross the wire.
        """
        digest = hashlib.blake2b(_CODEC.encode_payload(self._fields()), digest_size=12)
        digest.update(spawner.encode())
        return replace(self, token=digest.hexdigest())

    @classmethod
    def decode(cls, data: bytes) -> ActorSpec:
        """Raises: MalformedFrame: not a spec."""
        value = _CODEC.decode_payload(data)
        if not (isinstance(value, tuple) and len(value) in {8, 9}):
            raise MalformedFrame(f"not an actor spec: {value!r:.100}")
        if len(value) == 8:  # stored before spawns had tokens
            value = (*value, "")
        name, module, qualname, file, args, kwargs, restart, placement, token = value
        if not (
            isinstance(name, str)
            and isinstance(module, str)
            and isinstance(qualname, str)
            and isinstance(file, str)
            and isinstance(args, tuple)
            and isinstance(kwargs, dict)
            and isinstance(restart, str)
            and (placement is None or isinstance(placement, tuple))
            and isinstance(token, str)
        ):
            raise MalformedFrame(f"not an actor spec: {value!r:.100}")
        return cls(name, module, qualname, file, args, kwargs, restart, placement, token)

    def load_class(self) -> type[Actor]:
        """Import the actor's class on this member.

        A class from a script's ``__main__`` is loaded from the script's file under a
        private module name (the members of a local cluster share the file system).

        Raises:
            ConfigError: The module or class cannot be found, or is not an Actor.
        """
        target = load_object(self.module, self.qualname, self.file)
        if not (isinstance(target, type) and issubclass(target, Actor)):
            raise ConfigError(f"{self.module}.{self.qualname} is not an Actor subclass")
        return target
