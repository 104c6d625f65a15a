"""The message registry: the dataclasses that may cross the wire, by name.

Kept apart from the codec: a module that declares its messages (``@message``)
needs the registry, not msgpack. The codec reads the registry when it encodes a
registered dataclass (ext type 3) and when it decodes one.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeVar, overload

if TYPE_CHECKING:
    from collections.abc import Callable

_C = TypeVar("_C", bound=type[Any])


class _MessageType(NamedTuple):
    name: str
    fields: tuple[str, ...]


class MessageRegistry:
    """The dataclasses that may cross the wire, by name.

    Both members must register a class under the same name: the name, not the
    Python import path, is what travels, so a class can move between modules without
    breaking a running cluster if it keeps its name.
    """

    __slots__ = ("_by_class", "_by_name")

    def __init__(self) -> None:
        self._by_name: dict[str, type[Any]] = {}
        self._by_class: dict[type[Any], _MessageType] = {}

    def register(self, cls: _C, *, name: str | None = None) -> _C:
        """Register a dataclass under ``name``.

        Args:
            cls: The dataclass. Its ``init`` fields are what travels; it is rebuilt
                on the receiving side with ``cls(**fields)``.
            name: The wire name; defaults to ``f"{cls.__module__}.{cls.__qualname__}"``.

        Returns:
            ``cls`` itself, so this works as a class decorator.

        Raises:
            TypeError: ``cls`` is not a dataclass, or ``name`` is not a string.
            ValueError: ``name`` is empty, another class is registered under it, or
                ``cls`` is already registered under another name.
        """
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise TypeError(
                f"only dataclasses can be registered as messages, not {cls!r} "
                "(put @cfactor.wire.message above @dataclass)"
            )
        if name is None:
            name = f"{cls.__module__}.{cls.__qualname__}"
        elif not isinstance(name, str):
            raise TypeError(f"a message name must be a str, not {type(name).__name__}")
        elif not name:
            raise ValueError("a message name must not be empty")
        existing = self._by_name.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"message name {name!r} is already registered for {existing!r}")
        known = self._by_class.get(cls)
        if known is not None and known.name != name:
            raise ValueError(f"{cls!r} is already registered as {known.name!r}")
        fields = tuple(field.name for field in dataclasses.fields(cls) if field.init)
        self._by_name[name] = cls
        self._by_class[cls] = _MessageType(name, fields)
        return cls

    def lookup(self, name: str) -> type[Any] | None:
        """Return the class registered under ``name``, or ``None``."""
        return self._by_name.get(name)

    def name_of(self, cls: type[Any]) -> str | None:
        """Return the name ``cls`` is registered under, or ``None``."""
        known = self._by_class.get(cls)
        return None if known is None else known.name

    def __len__(self) -> int:
        return len(self._by_name)

    def __repr__(self) -> str:
        return f"<MessageRegistry messages={len(self._by_name)}>"


default_registry: Final = MessageRegistry()
"""The registry ``@message`` and ``MsgpackCodec()`` use unless given another."""


@overload
def message(cls: _C, /) -> _C: ...


@overload
def message(
    *, name: str | None = None, registry: MessageRegistry | None = None
) -> Callable[[_C], _C]: ...


def message(
    cls: _C | None = None,
    /,
    *,
    name: str | None = None,
    registry: MessageRegistry | None = None,
) -> _C | Callable[[_C], _C]:
    """Class decorator: let a dataclass travel as a message.

    Use as ``@message`` or ``@message(name="shop.Order")``, above ``@dataclass``::

        @cfactor.wire.message
        @dataclass(frozen=True)
        class Add:
            amount: int

    Args:
        cls: The dataclass, when used without arguments.
        name: The wire name; defaults to ``f"{cls.__module__}.{cls.__qualname__}"``.
        registry: Where to register; defaults to :data:`default_registry`.

    Returns:
        The class itself, or a decorator when called with keyword arguments only.

    Raises:
        TypeError: The class is not a dataclass.
        ValueError: The name is taken by another class (see
            :meth:`MessageRegistry.register`).
    """
    target = default_registry if registry is None else registry
    if cls is None:

        def decorate(cls: _C, /) -> _C:
            return target.register(cls, name=name)

        return decorate
    return target.register(cls, name=name)


__all__ = ["MessageRegistry", "default_registry", "message"]
