"""Past bugs of this project, put back on demand, to show the simulation finds them.

``reintroduce(name)`` patches the runtime for the length of a ``with`` block; nothing
here is imported by the runtime itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

#: name -> (what it was, a function that patches it in and returns its undo)
BUGS: dict[str, tuple[str, Callable[[], Callable[[], None]]]] = {}


@contextlib.contextmanager
def reintroduce(name: str | None) -> Iterator[None]:
    if name is None:
        yield
        return
    undo = BUGS[name][1]()
    try:
        yield
    finally:
        undo()


def _stale_tells_vanish() -> Callable[[], None]:
    """Until issue 12's simulation found it, a tell to a stale activation was dropped
    with only a debug line: counted in ``stale_rejected``, but no dead letter."""
    from cfactor._core.remote import Remote  # noqa: PLC0415 - only when reintroducing

    fixed = Remote._reject_stale

    def old(self: Remote, peer: str, envelope: Any, reply: Any) -> None:
        self.stale_rejected += 1
        self.transport.credit(peer)
        if reply is not None:
            fixed(self, peer, envelope, reply)
            self.stale_rejected -= 1

    Remote._reject_stale = old  # type: ignore[method-assign]
    return lambda: setattr(Remote, "_reject_stale", fixed)


def _ask_ignores_deadline() -> Callable[[], None]:
    """Issue 10's first fault: a remote ask whose deadline nothing enforced (it waited
    for an answer that a cut link never brought)."""
    from cfactor._core.clock import Deadlines  # noqa: PLC0415 - only when reintroducing

    fixed = Deadlines.add

    def old(self: Deadlines, future: Any, timeout: float, error: Any) -> int:
        del self, future, timeout, error
        return 0  # registered nowhere: the ask waits as long as its answer takes

    Deadlines.add = old  # type: ignore[method-assign]
    return lambda: setattr(Deadlines, "add", fixed)


BUGS["stale-tells-vanish"] = (
    "a tell to a stale activation is dropped without a dead letter",
    _stale_tells_vanish,
)
BUGS["ask-ignores-deadline"] = (
    "an ask whose deadline nothing enforces",
    _ask_ignores_deadline,
)


def _no_fencing() -> Callable[[], None]:
    """Fencing turned off: a member whose lease lapsed (it was paused, or cut off from
    the store) keeps its activations running while the names are placed elsewhere."""
    from cfactor.cluster.lifecycle import Lifecycle  # noqa: PLC0415 - only when reintroducing
    from cfactor.cluster.runtime import ClusterMember  # noqa: PLC0415 - only when reintroducing

    fixed_fence, fixed_stop = Lifecycle.fence, ClusterMember.stop_local

    def old_fence(self: Lifecycle) -> None:
        if not self.member.closed:
            self.member.background(self.rejoin_forever())

    def old_stop(self: ClusterMember, name: str) -> None:
        if name.startswith("$"):  # the runtime's own services still stop
            fixed_stop(self, name)

    Lifecycle.fence = old_fence  # type: ignore[method-assign]
    ClusterMember.stop_local = old_stop  # type: ignore[method-assign]

    def undo() -> None:
        Lifecycle.fence = fixed_fence  # type: ignore[method-assign]
        ClusterMember.stop_local = fixed_stop  # type: ignore[method-assign]

    return undo


BUGS["no-fencing"] = ("a member that lost its lease keeps serving its names", _no_fencing)


def _orphan_claims_stay() -> Callable[[], None]:
    """Issue 10's "spawns that raise yet run" family: a claim that reached the store
    after its spawn gave up stayed, with no actor behind it, until the lease ended."""
    from cfactor.cluster.spawn import Activations  # noqa: PLC0415 - only when reintroducing

    fixed = Activations.release_orphans_forever

    async def old(self: Activations) -> None:
        del self
        await asyncio.Event().wait()  # never releases anything

    Activations.release_orphans_forever = old  # type: ignore[method-assign]
    return lambda: setattr(Activations, "release_orphans_forever", fixed)


BUGS["orphan-claims-stay"] = (
    "a claim whose spawn gave up stays with no actor behind it",
    _orphan_claims_stay,
)
