"""The one error hierarchy of cfactor.

Errors are grouped by what the caller can do about them:

- ``DeliveryError``: the message may not have arrived (``MailboxFull``), or its
  outcome is unknown (``AskTimeout``, ``NodeUnreachable``, ``SpawnOutcomeUnknown``).
  Retry or give up.
- ``ActorError``: the target is not there (``ActorNotFound``, ``ActorStopped``) or
  its handler raised (``RemoteActorError``, with the handler's traceback text).
- ``ProtocolError``: bytes from a peer (or a message to a peer) broke the wire rules.
  A member never crashes on one; it counts and drops the frame.
- ``MembershipError``: the cluster's membership store cannot be reached.
- ``SupervisionError``: a supervisor gave up under its restart intensity.
- ``ConfigError``: a bad argument or setting (also a ``ValueError``).

"Closed" means you closed it; "broken" means someone else did.
"""

from __future__ import annotations

import math
from typing import Any


class CfactorError(Exception):
    """Base class of every error cfactor raises on purpose."""


# -- delivery ---------------------------------------------------------------------------


class DeliveryError(CfactorError):
    """A message could not be delivered, or its outcome is unknown."""


class MailboxFull(DeliveryError):
    """The target's bounded mailbox has no room; the message was not enqueued."""


class AskTimeout(DeliveryError, TimeoutError):
    """No reply came within the ask's timeout. The message may still be processed."""


class NodeUnreachable(DeliveryError):
    """The member that hosts the target is gone or cannot be reached."""


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
    """The actor system is not running (not entered yet, or closed by you)."""


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
    "MembershipError",
    "MembershipUnavailable",
    "MessageNotSerializable",
    "NameTaken",
    "NodeFailed",
    "NodeUnreachable",
    "ProtocolError",
    "RemoteActorError",
    "SpawnOutcomeUnknown",
    "StepFailed",
    "SupervisionError",
    "SystemClosed",
    "UnsupportedVersion",
    "WorkerLost",
]
