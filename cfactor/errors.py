"""The one error hierarchy of cfactor.

Errors are grouped by what the caller can do about them:

- ``DeliveryError``: the message may not have arrived (``MailboxFull``), or its
  outcome is unknown (``AskTimeout``, ``MemberUnreachable``, ``SpawnOutcomeUnknown``).
  Retry or give up.
- ``ActorError``: the target is not there (``ActorNotFound``, ``ActorStopped``) or
  its handler raised (``RemoteActorError``, with the handler's traceback text).
- ``ProtocolError``: bytes from a peer (or a message to a peer) broke the wire rules.
  A member never crashes on one; it counts and drops the frame.
- ``MembershipError``: the cluster's membership store cannot be reached.
- ``SupervisionError``: a supervisor gave up under its restart intensity.
- ``ConfigError``: a bad argument or setting (also a ``ValueError``).

"Closed" means you closed it (``SystemClosed``); "broken" means someone else did
(``MemberUnreachable``: the other member left, died or cannot be reached).

"Node" is a step of a dataflow (``NodeFailed``); a runtime process is a *member*. The
error once called ``NodeUnreachable`` is ``MemberUnreachable``; the old name is a
deprecated alias of the same class (``except NodeUnreachable`` still catches it).

Errors cross the wire by name through the one table at the end of this module
(:func:`register_wire_error`, :func:`wire_error_name`, :func:`error_from_wire`).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, TypeVar


class CfactorError(Exception):
    """Base class of every error cfactor raises on purpose."""


# -- delivery ---------------------------------------------------------------------------


class DeliveryError(CfactorError):
    """A message could not be delivered, or its outcome is unknown."""


class MailboxFull(DeliveryError):
    """The target's bounded mailbox has no room; the message was not enqueued."""


class AskTimeout(DeliveryError, TimeoutError):
    """No reply came within the ask's timeout. The message may still be processed."""


class MemberUnreachable(DeliveryError):
    """The member that hosts the target is gone or cannot be reached (someone else
    broke the connection; if you closed the system yourself, you get ``SystemClosed``).

    Formerly ``NodeUnreachable`` (a deprecated alias of this class).
    """


class SpawnOutcomeUnknown(DeliveryError):
    """A cluster spawn whose outcome cannot be known: the actor may be running.

    Raised only where it truly cannot be known (the member asked to start it did not
    answer in time, or the spec could not be stored after it started). Any other error
    from a spawn means nothing was left behind and nothing starts later. Retrying the
    same spawn (same name, class and arguments, from the same member) is safe: it finds
    the earlier attempt and returns its ref instead of raising ``NameTaken``.
    """


# -- actors -----------------------------------------------------------------------------


class ActorError(CfactorError):
    """The target actor is missing, stopped, or its handler failed."""


class ActorNotFound(ActorError, LookupError):
    """No actor is registered under that name."""


class ActorStopped(ActorError):
    """The actor stopped before it could answer (or was already stopped)."""


class NameTaken(ActorError, ValueError):
    """Another live actor in this system already has that name."""


class ActorStartFailed(ActorError):
    """The actor's constructor or ``on_start`` raised; the actor was not started."""


class RemoteActorError(ActorError):
    """The actor's handler raised while answering an ask.

    Attributes:
        type_name: The qualified name of the exception type the handler raised.
        message: ``str()`` of that exception.
        traceback: The handler's formatted traceback, as text.
    """

    def __init__(self, type_name: str, message: str, traceback: str = "") -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.traceback = traceback

    def __reduce__(self) -> tuple[type[RemoteActorError], tuple[str, str, str]]:
        return (type(self), (self.type_name, self.message, self.traceback))


# -- wire protocol ----------------------------------------------------------------------


class ProtocolError(CfactorError, ValueError):
    """Bytes broke the wire rules. Raised by the codec; never crashes a member."""


class UnsupportedVersion(ProtocolError):
    """The frame's version byte is not one this codec speaks."""


class FrameTooLarge(ProtocolError):
    """The frame is larger than the configured maximum frame size."""


class MalformedFrame(ProtocolError):
    """The frame is not a well-formed envelope (bad msgpack, wrong shape or types)."""


class MessageNotSerializable(ProtocolError, TypeError):
    """A message holds a value the wire cannot carry (no pickle, ever)."""


# -- membership and supervision ---------------------------------------------------------


class MembershipError(CfactorError):
    """The membership store (etcd, or memory) failed."""


class MembershipUnavailable(MembershipError):
    """The membership store cannot be reached right now; placement fails fast."""


class SupervisionError(CfactorError):
    """A supervisor exceeded its restart intensity and gave up.

    Attributes:
        child: The name of the child whose failure exceeded the intensity.
    """

    def __init__(self, message: str, child: str = "") -> None:
        super().__init__(message)
        self.child = child


# -- flows ------------------------------------------------------------------------------


class FlowError(CfactorError):
    """A flow run failed; ``app.run()`` raises a subclass that says where and why.

    Attributes:
        result: What the run produced before it failed (a ``cf.RunResult``), or None.
    """

    result: Any = None


class NodeFailed(FlowError):
    """A Node function raised (after its retries) on an item.

    Attributes:
        node: The node's path, ``app.session.flow.node``.
        item: ``repr`` of the item it failed on (cut to 200 characters).
        type_name: The exception's type name.
        traceback: The formatted traceback from the replica that ran it.
    """

    def __init__(
        self,
        message: str,
        *,
        node: str = "",
        item: str = "",
        type_name: str = "",
        traceback: str = "",
    ) -> None:
        super().__init__(message)
        self.node = node
        self.item = item
        self.type_name = type_name
        self.traceback = traceback


class StepFailed(FlowError):
    """A stage-gated step failed, so the steps after it did not run.

    Attributes:
        step: The step's path, ``app.session.flow.step``.
        exit_code: A shell step's exit code (None for a Python step or a timeout).
        stderr: The end of what the step wrote to stderr, or the traceback.
    """

    def __init__(
        self, message: str, *, step: str = "", exit_code: int | None = None, stderr: str = ""
    ) -> None:
        super().__init__(message)
        self.step = step
        self.exit_code = exit_code
        self.stderr = stderr


class WorkerLost(FlowError):
    """A Node replica stopped before its flow finished (its member left, say)."""


# -- configuration ----------------------------------------------------------------------


class ConfigError(CfactorError, ValueError):
    """A bad argument or setting."""


def check_positive(
    what: str, value: object, unit: str = " of seconds", *, finite: bool = True
) -> float:
    """``value`` as a float, if it is a positive (by default finite) number; the one
    check behind every duration and depth setting.

    Raises:
        ConfigError: Not a number (a bool is not one), not positive, or not finite.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not value > 0
        or (finite and not math.isfinite(value))
    ):
        kind = "positive finite number" if finite else "positive number"
        raise ConfigError(f"{what} must be a {kind}{unit}, got {value!r}")
    return float(value)


class SystemClosed(CfactorError, RuntimeError):
    """The actor system (or its transport) is not running: not entered yet, or closed
    by you. Asks still waiting for an answer when you close the system end with this
    error, as does every later ask or tell, to another member's actor or a local one
    (never ``MemberUnreachable``: closed is not broken; never ``ActorStopped`` or a
    dead letter, which mean an actor stopped while its system runs)."""


# -- the wire table ---------------------------------------------------------------------

_E = TypeVar("_E", bound=CfactorError)

_WIRE_TYPES: dict[str, type[CfactorError]] = {}
"""Every wire name (and former name) to its class: what a peer's name rebuilds."""

_WIRE_NAMES: dict[type[CfactorError], str] = {}
"""The classes that answer an ask typed, to the name they travel under."""


def register_wire_error(
    cls: type[_E], *, old_names: tuple[str, ...] = (), answers: bool = True
) -> type[_E]:
    """Let ``cls`` cross the wire by name: the one table of errors to and from the wire.

    The class must be buildable from one message string (``cls(message)``). Layers
    above the core register their own error classes here at import.

    Args:
        cls: The error class; it travels under ``cls.__name__``.
        old_names: Names it travelled under before a rename (peers running an older
            version still send them); they rebuild ``cls``.
        answers: Whether a handler that raises it answers the ask with it, typed.
            False for errors about the *asker's* own connections
            (``MemberUnreachable``): a handler that raises one must not make its
            asker think the handler's own member is unreachable, so it arrives as
            ``RemoteActorError``; its name is still known (messages that carry a
            failure's type name are read back through this table).

    Returns:
        ``cls``, so this works as a class decorator.

    Raises:
        ConfigError: The name (or an old name) is taken by another class.
    """
    for name in (cls.__name__, *old_names):
        known = _WIRE_TYPES.get(name)
        if known is not None and known is not cls:
            raise ConfigError(f"wire error name {name!r} is taken by {known.__qualname__}")
    for name in (cls.__name__, *old_names):
        _WIRE_TYPES[name] = cls
    if answers:
        _WIRE_NAMES[cls] = cls.__name__
    return cls


def wire_error_name(error: BaseException) -> str | None:
    """The name ``error`` answers an ask with, or None if it travels as
    ``RemoteActorError`` (unregistered, or a subclass of a registered class)."""
    return _WIRE_NAMES.get(type(error))  # type: ignore[arg-type]


def wire_error_type(name: str) -> type[CfactorError] | None:
    """The class a wire name (or a former name) stands for, or None."""
    return _WIRE_TYPES.get(name)


def error_from_wire(name: str, message: str) -> CfactorError | None:
    """The error a peer named, rebuilt; None if this version does not know the name."""
    cls = _WIRE_TYPES.get(name)
    return None if cls is None else cls(message)


for _cls in (
    ActorNotFound,
    ActorStopped,
    ActorStartFailed,
    AskTimeout,
    ConfigError,
    MailboxFull,
    MembershipUnavailable,
    MessageNotSerializable,
    NameTaken,
):
    register_wire_error(_cls)
register_wire_error(MemberUnreachable, old_names=("NodeUnreachable",), answers=False)
del _cls

_DEPRECATED = {"NodeUnreachable": ("MemberUnreachable", MemberUnreachable)}


def __getattr__(name: str) -> Any:
    # A module __getattr__ runs only for names not found, so the alias costs nothing
    # on any other access and warns where it is used.
    if name in _DEPRECATED:
        new, cls = _DEPRECATED[name]
        warnings.warn(
            f"cfactor.errors.{name} is deprecated; use {new} (a member is a runtime "
            "process; a Node is a dataflow step)",
            DeprecationWarning,
            stacklevel=2,
        )
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ActorError",
    "ActorNotFound",
    "ActorStartFailed",
    "ActorStopped",
    "AskTimeout",
    "CfactorError",
    "ConfigError",
    "DeliveryError",
    "FlowError",
    "FrameTooLarge",
    "MailboxFull",
    "MalformedFrame",
    "MemberUnreachable",
    "MembershipError",
    "MembershipUnavailable",
    "MessageNotSerializable",
    "NameTaken",
    "NodeFailed",
    "ProtocolError",
    "RemoteActorError",
    "SpawnOutcomeUnknown",
    "StepFailed",
    "SupervisionError",
    "SystemClosed",
    "UnsupportedVersion",
    "WorkerLost",
    "error_from_wire",
    "register_wire_error",
    "wire_error_name",
    "wire_error_type",
]
