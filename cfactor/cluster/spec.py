"""What the cluster remembers about a named actor, so any member can (re)start it.

A spec names the actor's class by import path (never pickle), carries the
constructor's arguments as wire values, and says where it may run. The placement
actor stores every spec in the membership store, so a new placement leader can
rebuild its state after the old one died.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cfactor._core.actor import Actor
from cfactor.cluster.config import placement_to_wire
from cfactor.errors import ConfigError, MalformedFrame
from cfactor.wire import MsgpackCodec

_CODEC = MsgpackCodec()


@dataclass(frozen=True, slots=True)
class ActorSpec:
    """A named cluster actor: its class, arguments, restart type and placement."""

    name: str
    module: str
    qualname: str
    file: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    restart: str
    placement: tuple[Any, ...] | None

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
        module = actor_cls.__module__
        qualname = actor_cls.__qualname__
        if "<locals>" in qualname:
            raise ConfigError(
                f"{qualname} is defined inside a function; cluster actors must be "
                "module-level classes so other members can import them"
            )
        file = ""
        if module == "__main__":
            main = sys.modules["__main__"]
            file = str(Path(getattr(main, "__file__", "") or "").resolve())
            if not file:
                raise ConfigError(
                    f"{qualname} lives in an interactive __main__; put it in a module"
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

    def encode(self) -> bytes:
        """Raises: MessageNotSerializable: an argument cannot cross the wire."""
        return _CODEC.encode_payload(
            (
                self.name,
                self.module,
                self.qualname,
                self.file,
                self.args,
                self.kwargs,
                self.restart,
                self.placement,
            )
        )

    @classmethod
    def decode(cls, data: bytes) -> ActorSpec:
        """Raises: MalformedFrame: not a spec."""
        value = _CODEC.decode_payload(data)
        if not (isinstance(value, tuple) and len(value) == 8):
            raise MalformedFrame(f"not an actor spec: {value!r:.100}")
        name, module, qualname, file, args, kwargs, restart, placement = value
        if not (
            isinstance(name, str)
            and isinstance(module, str)
            and isinstance(qualname, str)
            and isinstance(file, str)
            and isinstance(args, tuple)
            and isinstance(kwargs, dict)
            and isinstance(restart, str)
            and (placement is None or isinstance(placement, tuple))
        ):
            raise MalformedFrame(f"not an actor spec: {value!r:.100}")
        return cls(name, module, qualname, file, args, kwargs, restart, placement)

    def load_class(self) -> type[Actor]:
        """Import the actor's class on this member.

        A class from a script's ``__main__`` is loaded from the script's file under a
        private module name (the members of a local cluster share the file system).

        Raises:
            ConfigError: The module or class cannot be found, or is not an Actor.
        """
        try:
            if self.module == "__main__":
                module = _load_file(self.file)
            else:
                module = importlib.import_module(self.module)
            target: Any = module
            for part in self.qualname.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError, OSError, SyntaxError) as exc:
            where = self.file or self.module
            raise ConfigError(
                f"cannot load actor class {self.qualname} from {where}: {exc}"
            ) from exc
        if not (isinstance(target, type) and issubclass(target, Actor)):
            raise ConfigError(f"{self.module}.{self.qualname} is not an Actor subclass")
        return target


def _load_file(path: str) -> Any:
    name = "cfactor_user_" + hashlib.sha1(path.encode(), usedforsecurity=False).hexdigest()[:12]
    module = sys.modules.get(name)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
