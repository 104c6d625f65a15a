"""The ``Actor`` base class users subclass."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from cfactor._core.cell import ActorCell
    from cfactor._core.ref import ActorRef
    from cfactor._core.system import ActorSystem


class Actor:
    """An object with a mailbox that handles one message at a time.

    Subclass it and define ``async def receive(self, message)``; its return value
    answers an ``ask``. The runtime sets ``self.ref`` and ``self.system`` after the
    constructor runs and before ``on_start``, so use them from ``on_start`` on.

    A restart (by the actor's supervisor, after ``receive`` raised) builds a fresh
    instance with the same constructor arguments; the mailbox and the ref survive.
    """

    ref: ActorRef
    system: ActorSystem

    async def on_start(self) -> None:
        """Called before the first message (and after each restart)."""

    async def on_stop(self) -> None:
        """Called after the last message (and before a restart replaces the instance)."""

    async def receive(self, message: Any) -> Any:
        """Handle one message. Subclasses must override this."""
        raise NotImplementedError

    def stop(self) -> None:
        """End this actor normally once the current message is handled.

        A normal exit: a ``permanent`` actor is restarted by its supervisor (as in OTP),
        a ``transient`` or ``temporary`` one is not. To stop an actor for good from
        anywhere, use ``await ref.stop()``.
        """
        cast("ActorCell", self.ref._cell).request_normal_exit()  # an actor's own ref is local
