"""``system.hosting``: what the layers above the core (cluster, autoscale, flow) may
do with a system's actors, and nothing more.

The core keeps its directory (names, replicated groups) and its cells private; a
layer above reads them, spawns under the root supervisor, hooks an actor's stop and
plugs in a name resolver through this one object, so the core can change inside
without breaking them (docs/runtime.md, "The hosting seam").
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from cfactor._core.actor import Actor
from cfactor._core.cell import ActorCell, current_cell
from cfactor._core.supervision import parse_restart
from cfactor.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from cfactor._core.ref import ActorRef, Target
    from cfactor._core.replicas import ReplicaSet
    from cfactor._core.system import ActorSystem
    from cfactor.abc import NameResolver


def check_name(name: object) -> None:
    """Raises: ConfigError: not a usable actor name (``$`` starts the runtime's own
    names; ``@`` is left to a ``NameResolver``'s addresses, e.g. ``name@epoch``, so
    they never collide with a local name)."""
    if name is None:
        return
    if not isinstance(name, str) or not name or name.startswith("$") or "@" in name:
        raise ConfigError(
            f"actor names are non-empty strings without '@', not starting with '$': {name!r}"
        )


class Hosting:
    """The hosting API of one ``ActorSystem`` (``system.hosting``).

    Attributes:
        resolver: The plug-in that admits inbound addresses the core hosts no actor
            under (a cluster's ``name@epoch``), and tells which local names it serves;
            ``None`` when none is plugged in. See ``cfactor.abc.NameResolver``.
    """

    __slots__ = ("_cells", "_groups", "_system", "resolver")

    def __init__(
        self,
        system: ActorSystem,
        names: dict[str, ActorCell],
        groups: dict[str, ReplicaSet],
    ) -> None:
        self._system = system
        self._cells = MappingProxyType(names)
        self._groups = MappingProxyType(groups)
        self.resolver: NameResolver | None = None

    # -- the directory ------------------------------------------------------------------------

    def cell(self, name: str) -> ActorCell | None:
        """The live local actor called ``name`` (not a replicated group), or None."""
        return self._cells.get(name)

    @property
    def cells(self) -> Mapping[str, ActorCell]:
        """Every local actor by name, read-only (a live view: copy it to iterate
        across an ``await``)."""
        return self._cells

    @property
    def groups(self) -> Mapping[str, ReplicaSet]:
        """The replicated actors owned here by name, read-only (a live view)."""
        return self._groups

    def cell_of(self, ref: ActorRef) -> ActorCell | None:
        """The local cell behind ``ref``; None if it points elsewhere (another member,
        a replicated group, a cluster name)."""
        target = ref._cell
        return target if isinstance(target, ActorCell) else None

    def target(self, address: str, name: str) -> Target:
        """The far end of a ref to ``name`` on the member at ``address``.

        Raises:
            ConfigError: This system does not listen (it reaches no other member).
        """
        remote = self._system._remote
        if remote is None:
            raise ConfigError("talking to other members needs a listening system")
        return remote.target(address, name)

    # -- hosting ------------------------------------------------------------------------------

    async def spawn_at_root(
        self,
        cls: type[Actor],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        name: str | None,
        restart: str,
        in_flight: int | None = None,
    ) -> ActorRef:
        """Start an actor here under the root supervisor, whoever calls (a cluster
        agent's restart budget must not be shared by every actor it hosts).

        Args:
            cls: An ``Actor`` subclass.
            args: Positional arguments for the constructor.
            kwargs: Keyword arguments for the constructor.
            name: Its name (generated if None); never handed to a cluster.
            restart: Its restart type (``"permanent"``, ...).
            in_flight: Its mailbox bound (the system default if None).

        Raises:
            ConfigError: ``cls`` is not an Actor subclass, or a bad option.
            NameTaken: A live actor already has that name.
            ActorStartFailed: Its constructor or ``on_start`` raised.
            SystemClosed: The system is not running.
        """
        if not (isinstance(cls, type) and issubclass(cls, Actor)):
            raise ConfigError(f"spawn needs an Actor subclass, got {cls!r}")
        check_name(name)
        restart_type = parse_restart(restart)
        token = current_cell.set(None)
        try:
            return await self._system._spawn_here(
                cls, args, kwargs, name, in_flight, None, restart_type
            )
        finally:
            current_cell.reset(token)

    def on_stopped(self, ref: ActorRef, callback: Callable[[], None]) -> bool:
        """Call ``callback()`` once the local actor behind ``ref`` has stopped for good
        (not on a restart). False, and nothing registered, if ``ref`` is not local."""
        cell = self.cell_of(ref)
        if cell is None:
            return False
        cell.on_stopped = [*(cell.on_stopped or ()), callback]
        return True

    def stop_local(self, name: str) -> None:
        """Begin stopping the local actor called ``name``, if there is one (no wait)."""
        cell = self._cells.get(name)
        if cell is not None:
            cell.begin_stop()

    @property
    def housekeeping(self) -> int:
        """Runtime housekeeping tasks running now (supervision, slow stops)."""
        return len(self._system._background)

    def settled(self) -> bool:
        """No runtime housekeeping left and no actor with work scheduled (for tests)."""
        return not self.housekeeping and all(
            cell.task is None or not cell.queue for cell in self._cells.values()
        )
