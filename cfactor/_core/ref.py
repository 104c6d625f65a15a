"""``ActorRef``: the address users hold. Cheap to copy, compares by actor identity."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from cfactor._core.mailbox import MailboxStatistics
    from cfactor.abc import RefAddress


class Target(Protocol):
    """What a ref points at: a local ``ActorCell`` or a ``RemoteTarget``."""

    name: str
    uid: int

    @property
    def is_alive(self) -> bool: ...

    def tell(self, message: Any) -> Coroutine[Any, Any, None]: ...

    def tell_nowait(self, message: Any) -> None: ...

    def ask(self, message: Any, timeout: float | None) -> Coroutine[Any, Any, Any]: ...

    def stop(self) -> Coroutine[Any, Any, None]: ...

    def statistics(self) -> MailboxStatistics: ...

    def describe(self) -> str: ...

    def wire_address(self) -> RefAddress: ...


class ActorRef:
    """A handle to one actor. Get one from ``system.spawn`` or ``system.ref(name)``.

    The ref holds its actor's cell directly, so a local send is an append to the
    mailbox with no lookup by name; a ref to an actor on another member holds a
    remote target that makes envelopes instead. A restart keeps the ref valid; a stop
    does not (a new actor under the same name gets a new ref). Refs can travel inside
    messages to other members.
    """

    __slots__ = ("_cell",)

    def __init__(self, cell: Target) -> None:
        self._cell = cell

    @property
    def name(self) -> str:
        return self._cell.name

    @property
    def uid(self) -> int:
        """This actor's incarnation id, unique within its system."""
        return self._cell.uid

    @property
    def is_alive(self) -> bool:
        """False once the actor has stopped for good."""
        return self._cell.is_alive

    def tell(self, message: Any) -> Coroutine[Any, Any, None]:
        """Send ``message``; wait only for mailbox space. At most once.

        A message to an actor that stopped while the system runs is counted as a
        dead letter, not raised.

        Raises:
            SystemClosed: You closed the system (``aclose``).
        """
        return self._cell.tell(message)

    def tell_nowait(self, message: Any) -> None:
        """Send ``message`` without waiting.

        Raises:
            MailboxFull: The mailbox is at capacity; the message was not sent.
            SystemClosed: You closed the system (``aclose``).
        """
        self._cell.tell_nowait(message)

    def ask(self, message: Any, timeout: float | None = None) -> Coroutine[Any, Any, Any]:
        """Send ``message`` and wait for the handler's return value.

        Args:
            message: Anything; locally it is passed by reference, not copied.
            timeout: Seconds to wait in all (mailbox space included); ``None`` uses
                the system's ``ask_timeout_s``; ``math.inf`` waits forever.

        Raises:
            AskTimeout: No answer in time (the message may still be handled later).
            RemoteActorError: The handler raised; carries its type name and traceback.
            ActorStopped: The actor stopped before answering, or was stopped already.
            SystemClosed: You closed the system (``aclose``), also while this waited.
        """
        return self._cell.ask(message, timeout)

    async def stop(self) -> None:
        """Stop the actor for good: after its current message, children first.

        Queued asks fail at once with ``ActorStopped``; queued tells are dead letters.
        Idempotent. Called from inside the actor (or one of its children), it returns
        at once and the stop completes after the current message.
        """
        await self._cell.stop()

    def statistics(self) -> MailboxStatistics:
        """A snapshot of the actor's mailbox (depth, capacity, peak, waiting senders).

        Raises:
            ActorError: The actor lives on another member.
        """
        return self._cell.statistics()

    def __cfactor_address__(self) -> RefAddress:
        return self._cell.wire_address()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ActorRef):
            return self._cell is other._cell
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._cell)

    def __repr__(self) -> str:
        return f"<ActorRef {self._cell.describe()}>"
