"""``ActorSystem``: spawns actors, finds them by name, and owns their supervision root."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar

from cfactor._core.actor import Actor
from cfactor._core.cell import ActorCell, RootSupervisor, current_cell
from cfactor._core.clock import Deadlines, LoopClock, make_random
from cfactor._core.hosting import Hosting, check_name
from cfactor._core.keyed import KeyedReplicaSet
from cfactor._core.remote import Remote
from cfactor._core.replicas import ReplicaSet
from cfactor._core.supervision import Restart, Supervision, parse_restart
from cfactor.errors import (
    ActorNotFound,
    ActorStartFailed,
    ActorStopped,
    CfactorError,
    ConfigError,
    NameTaken,
    SystemClosed,
    check_positive,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Mapping
    from types import TracebackType

    from cfactor._core.ref import ActorRef
    from cfactor.abc import (
        Clock,
        ClusterPlugin,
        ClusterRuntime,
        ScalingPolicy,
        Transport,
        TransportStatistics,
    )

log = logging.getLogger("cfactor.system")

DEFAULT_MAILBOX_CAPACITY = 1000


class _Closeable(Protocol):
    async def aclose(self) -> None: ...


_E = TypeVar("_E", bound=_Closeable)


@dataclass(frozen=True, slots=True)
class SystemStatistics:
    """A snapshot of one actor system.

    Attributes:
        actors: Live actors (not yet stopped).
        dead_letters: Messages that reached no actor (told to a stopped actor, or left
            in its mailbox when it stopped).
        restarts: Actor restarts done by supervisors.
        escalations: Times a supervisor exceeded its restart intensity and gave up.
        transport: The transport's figures (frames rejected among them); ``None`` when
            the system does not listen.
        replies_dropped: Answers to remote asks that could not be sent (logged).
        stale_rejected: Envelopes addressed to an old activation of a cluster actor.
        refused_full: Asks from other members refused at once with ``MailboxFull``:
            their actor's mailbox and its parking places for remote asks were full
            (docs/runtime.md).
    """

    actors: int
    dead_letters: int
    restarts: int
    escalations: int
    transport: TransportStatistics | None = None
    replies_dropped: int = 0
    stale_rejected: int = 0
    refused_full: int = 0


TRANSPORT_GROUP = "cfactor.transports"


def load_transport(
    listen: str, security: object | None, clock: Clock, options: Mapping[str, Any]
) -> Transport:
    """Build the transport registered for ``listen``'s URL scheme.

    Raises:
        ConfigError: The address has no scheme, or no installed transport serves it.
    """
    scheme, sep, rest = listen.partition("://")
    if not sep or not scheme or not rest:
        raise ConfigError(f"listen address must look like 'tcp://127.0.0.1:7001', got {listen!r}")
    found = entry_points(group=TRANSPORT_GROUP, name=scheme)
    if not found:
        known = sorted(ep.name for ep in entry_points(group=TRANSPORT_GROUP))
        raise ConfigError(
            f"no transport for {scheme}:// addresses (installed: {', '.join(known) or 'none'})"
        )
    factory = next(iter(found)).load()
    try:
        transport: Transport = factory(security=security, clock=clock, **options)
    except TypeError as exc:  # an option the transport does not know
        raise ConfigError(f"bad transport option for {scheme}://: {exc}") from exc
    return transport


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive int, got {value!r}")
    return value


class ActorSystem:
    """A set of actors sharing one event loop, one clock and one supervision root.

    Use it as ``async with cf.ActorSystem() as system:``. It keeps no global state:
    two systems in one process are independent. The embedded default needs no server
    and no network.

    Args:
        listen: Where to accept messages from other members (``"tcp://127.0.0.1:0"``
            picks a free port; ``system.address`` tells which). ``None``: embedded.
        security: CurveZMQ keys and allow-list for the transport (``cf.Curve``); the
            transport checks it (the core does not know what security means).
        transport: A transport instance to use instead of the one registered for the
            ``listen`` scheme (``cfactor.testing.MemoryTransport`` in tests).
        transport_options: Keyword arguments for the registered transport, e.g.
            ``{"heartbeat_timeout_s": 1.0}`` (see docs/transport.md).
        cluster: Join a cluster (``cf.Cluster(etcd=..., name=...)``); needs ``listen``.
            Named top-level actors are then placed by the cluster and found by name
            from any member.
        mailbox_capacity: Default mailbox bound for spawned actors.
        supervision: How the root supervises top-level actors.
        ask_timeout_s: Default timeout of ``ask``.
        stop_timeout_s: How long a stopping actor's current message may still run
            before it is cancelled.
        throughput: Messages an actor handles before it yields to the loop (fairness).
        clock: The time source (the running loop's clock by default).
        seed: Seeds the system's one random source, for reproducible runs.

    Raises:
        ConfigError: A setting out of range.
    """

    def __init__(
        self,
        *,
        listen: str | None = None,
        security: object | None = None,
        transport: Transport | None = None,
        transport_options: Mapping[str, Any] | None = None,
        cluster: ClusterPlugin | None = None,
        mailbox_capacity: int = DEFAULT_MAILBOX_CAPACITY,
        supervision: Supervision | None = None,
        ask_timeout_s: float = 30.0,
        stop_timeout_s: float = 5.0,
        throughput: int = 300,
        clock: Clock | None = None,
        seed: int | None = None,
    ) -> None:
        self.mailbox_capacity = _check_positive_int("mailbox_capacity", mailbox_capacity)
        self.ask_timeout_s = check_positive("ask_timeout_s", ask_timeout_s, finite=False)
        self.stop_timeout_s = check_positive("stop_timeout_s", stop_timeout_s, finite=False)
        self.throughput = _check_positive_int("throughput", throughput)
        self.clock: Clock = clock if clock is not None else LoopClock()
        self.random = make_random(seed)
        self.deadlines = Deadlines(self.clock)
        #: Where this system listens for other members; empty when embedded.
        self.address = ""
        if transport is not None and listen is None:
            raise ConfigError("a transport needs a listen address (listen=...)")
        self._listen = listen
        self._security = security
        self._transport = transport
        self._transport_options = dict(transport_options or {})
        self._remote: Remote | None = None
        if cluster is not None and listen is None:
            raise ConfigError("a cluster member must listen: ActorSystem(listen=..., cluster=...)")
        self._cluster_config = cluster
        self.cluster: ClusterRuntime | None = None
        self._root = RootSupervisor(self, supervision or Supervision())
        self._names: dict[str, ActorCell] = {}
        #: Replicated actors by name (their replicas are in _names under "$" names).
        self._groups: dict[str, ReplicaSet] = {}
        #: What the layers above may do with this system's actors (the seam).
        self.hosting = Hosting(self, self._names, self._groups)
        self._next_uid = 1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._background: set[asyncio.Task[None]] = set()
        #: What layers above keep per system (see ``extension``); None once closed.
        self._extensions: dict[str, _Closeable] | None = {}
        self._dead_letters = 0
        self._dead_letter_watchers: list[Callable[[str, Any, str], None]] = []
        self._dead_letters_logged = 0
        self._dead_letter_log_at = float("-inf")
        self._restarts = 0
        self._escalations = 0

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Bind the system to the running event loop. ``async with`` calls this.

        Raises:
            SystemClosed: The system was closed already (systems are not reusable).
        """
        if self._closed:
            raise SystemClosed("this actor system was closed; create a new one")
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        if self._listen is not None:
            transport = self._transport
            if transport is None:
                transport = self._transport = load_transport(
                    self._listen, self._security, self.clock, self._transport_options
                )
            remote = Remote(self, transport)
            await transport.start(self._listen, remote)
            self._remote = remote
            self.address = transport.address
        if self._cluster_config is not None:
            try:
                self.cluster = await self._cluster_config.start(self)
            except BaseException:
                await self.aclose()  # no transport, port or service left behind
                raise

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            raise SystemClosed("the actor system is not started; use 'async with ActorSystem()'")
        return loop

    async def aclose(self) -> None:
        """Stop every actor (children first, newest first) and wait for them. Idempotent."""
        if self._closed or self._loop is None:
            self._closed = True
            if self._loop is None:  # never started: nothing made, nothing to make now
                self._extensions = None
            return
        self._closed = True
        if self.cluster is not None:
            await self.cluster.aclose()  # leave first: others re-place our actors now
        for group in list(self._groups.values()):
            await self.stop_group(group)
        root = self._root
        root.closing = True
        await root.stop_children()
        while self._background:
            await asyncio.wait(list(self._background))
        extensions, self._extensions = self._extensions or {}, None
        for extension in reversed(extensions.values()):
            await extension.aclose()
        if self._remote is not None:
            # Closed, not broken: you closed it (asks to other members still waiting).
            self._remote.fail_pending(SystemClosed("the actor system was closed"))
        if self._transport is not None:
            await self._transport.aclose()
        self.deadlines.close(SystemClosed("the actor system was closed"))
        self._flush_dead_letter_log()

    # -- actors ---------------------------------------------------------------------------

    async def spawn(
        self,
        cls: type[Actor],
        *args: Any,
        name: str | None = None,
        mailbox_capacity: int | None = None,
        supervision: Supervision | None = None,
        restart: Restart | str = Restart.PERMANENT,
        placement: Any = None,
        replicas: ScalingPolicy | None = None,
        **kwargs: Any,
    ) -> ActorRef:
        """Start an actor and return its ref.

        Called from inside an actor (its ``receive`` or ``on_start``), the new actor is
        that actor's child; otherwise it sits under the system's root supervisor.

        Args:
            cls: An ``Actor`` subclass; ``cls(*args, **kwargs)`` builds each instance.
            name: A name unique in this system (``system.ref(name)`` finds it);
                generated if omitted. Names starting with ``$`` are reserved.
            mailbox_capacity: This actor's mailbox bound (the system default if None).
            supervision: How this actor supervises the children it spawns.
            restart: When its supervisor restarts it: ``permanent``, ``transient``,
                ``temporary`` or ``resilient`` (always, and never charged to the
                supervisor's intensity: for services, see ``Restart.RESILIENT``).
            placement: In a cluster, where a named top-level actor goes: ``None`` lets
                the cluster pick (least loaded), ``"local"`` keeps it on this member;
                see ``cf.Pin`` and ``cf.Labels``. Ignored without a cluster. For a
                replicated actor it says where its replicas may run (the group and its
                backlog stay here).
            replicas: ``cf.Replicas(min=, max=, target_depth=)``: run the actor as
                replicas behind one ref, pulling from one bounded backlog (its bound is
                ``mailbox_capacity``), scaled on the backlog's depth; with
                ``key=`` the messages of one key go to one replica, in order. See
                docs/replicas.md.
            *args: Positional arguments for the constructor.
            **kwargs: Keyword arguments for the constructor.

        Raises:
            ConfigError: ``cls`` is not an Actor subclass, or an option is out of range.
            NameTaken: A live actor already has that name.
            ActorStartFailed: The constructor or ``on_start`` raised (it is the cause).
            SystemClosed: The system is not running.
        """
        if self._closed or self._loop is None:
            raise SystemClosed("the actor system is not running; use 'async with ActorSystem()'")
        if not (isinstance(cls, type) and issubclass(cls, Actor)):
            raise ConfigError(f"spawn needs an Actor subclass, got {cls!r}")
        if cls.receive is Actor.receive:
            raise ConfigError(f"{cls.__qualname__} does not define 'async def receive'")
        restart_type = restart if type(restart) is Restart else parse_restart(restart)
        parent = current_cell.get()
        top_level = parent is None or parent.system is not self
        if replicas is not None:
            return await self._spawn_group(
                cls, args, kwargs, name, mailbox_capacity, restart_type, replicas, placement
            )
        if self.cluster is not None and name is not None and top_level and placement != "local":
            return await self.cluster.spawn(
                cls, args, kwargs, name=name, placement=placement, restart=restart_type.value
            )
        check_name(name)
        return await self._spawn_here(
            cls, args, kwargs, name, mailbox_capacity, supervision, restart_type
        )

    async def _spawn_group(  # noqa: PLR0917 - private; spawn names them
        self,
        cls: type[Actor],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        name: str | None,
        mailbox_capacity: int | None,
        restart_type: Restart,
        replicas: ScalingPolicy,
        placement: Any = None,
    ) -> ActorRef:
        if self._closed or self._loop is None:
            raise SystemClosed("the actor system is not running; use 'async with ActorSystem()'")
        check_name(name)
        uid = self._next_uid
        self._next_uid = uid + 1
        name = name or f"${uid}"
        if name in self._names or name in self._groups:
            raise NameTaken(f"an actor named {name!r} is already running")
        capacity = (
            self.mailbox_capacity
            if mailbox_capacity is None
            else _check_positive_int("mailbox_capacity", mailbox_capacity)
        )
        key = replicas.key
        shape = (self, cls, args, kwargs)
        options: dict[str, Any] = {
            "name": name,
            "uid": uid,
            "capacity": capacity,
            "in_flight": replicas.in_flight,
            "restart": restart_type,
        }
        group = (
            ReplicaSet(*shape, **options)
            if key is None
            else KeyedReplicaSet(*shape, key=key, **options)
        )
        group.placement = placement
        self._groups[name] = group
        try:
            await group.scale_to(replicas.min)
            # The autoscaler (cfactor.autoscale), outside the core.
            group.controller = await replicas.start(group, self)
        except BaseException:
            await self.stop_group(group)
            raise
        return group.ref

    async def spawn_replica(self, group: ReplicaSet) -> ActorRef:
        """One more replica of ``group`` (its mailbox holds what it pulled, no more).

        In a cluster, the cluster picks the member (spread by load); a ref to a
        replica on another member comes back, or ``None`` from the cluster for here.
        """
        cluster = self.cluster
        if cluster is not None and group.placement != "local":
            placed = await cluster.place_replica(group)
            if placed is not None:
                return placed
        return await self._spawn_here(
            group.cls, group.args, group.kwargs, None, group.in_flight, None, group.replica_restart
        )

    async def stop_group(self, group: ReplicaSet) -> None:
        """Stop a replicated actor for good."""
        if self._groups.get(group.name) is group:
            del self._groups[group.name]
        await group.close()

    async def spawn_service(
        self, cls: type[Actor], *args: Any, name: str, **kwargs: Any
    ) -> ActorRef:
        """Spawn one of the runtime's own service actors here (names start with ``$``).

        Raises:
            ConfigError: ``name`` does not start with ``$``.
            NameTaken: The service is running already.
            ActorStartFailed: Its constructor or ``on_start`` raised.
        """
        if not name.startswith("$"):
            raise ConfigError(f"service names start with '$': {name!r}")
        return await self._spawn_here(cls, args, kwargs, name, None, None, Restart.PERMANENT)

    async def _spawn_here(  # noqa: PLR0917 - private; spawn and spawn_service name them
        self,
        cls: type[Actor],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        name: str | None,
        mailbox_capacity: int | None,
        supervision: Supervision | None,
        restart_type: Restart,
    ) -> ActorRef:
        if self._closed or self._loop is None:
            raise SystemClosed("the actor system is not running; use 'async with ActorSystem()'")
        capacity = (
            self.mailbox_capacity
            if mailbox_capacity is None
            else _check_positive_int("mailbox_capacity", mailbox_capacity)
        )
        uid = self._next_uid
        if name is None:
            name = f"${uid}"
        names = self._names
        if name in names or name in self._groups:
            raise NameTaken(f"an actor named {name!r} is already running")
        self._next_uid = uid + 1
        parent = current_cell.get()
        if parent is None or parent.system is not self or not parent.is_supervising():
            parent_sup: RootSupervisor | ActorCell = self._root
        else:
            parent_sup = parent
        cell = ActorCell(
            self,
            parent_sup,
            cls,
            args=args,
            kwargs=kwargs,
            name=name,
            uid=uid,
            capacity=capacity,
            restart=restart_type,
            supervision=supervision or self._root.supervision,
        )
        names[name] = cell
        parent_sup.add_child(cell)
        error = await cell.start_instance()
        if error is not None:
            await cell.terminate()
            raise ActorStartFailed(
                f"actor {name!r} ({cls.__qualname__}) failed to start: {error!r}"
            ) from error
        return cell.ref

    def ref(self, name: str, at: str | None = None) -> ActorRef:
        """The ref of the actor called ``name``, here or on the member at ``at``.

        A ref to another member is made without asking it: whether the actor exists
        shows when it is used (``ask`` raises ``ActorNotFound``, a tell is a dead letter
        there).

        Raises:
            ActorNotFound: ``at`` is None (or this member) and no live actor has that name.
            ConfigError: ``at`` is another member but this system does not listen.
        """
        if at is not None and at != self.address:
            if self._remote is None:
                raise ConfigError(
                    "talking to other members needs a listening system: "
                    "ActorSystem(listen='tcp://127.0.0.1:0')"
                )
            return self._remote.target(at, name).ref
        group = self._groups.get(name)
        if group is not None:
            return group.ref
        cell = self._names.get(name)
        resolver = self.hosting.resolver
        if cell is not None and (at is not None or resolver is None or not resolver.hosts(name)):
            return cell.ref
        if self.cluster is not None:
            ref = self.cluster.resolve(name)
            if ref is not None:
                return ref
        if cell is None:
            raise ActorNotFound(f"no actor named {name!r}")
        return cell.ref

    def group(self, name: str) -> ReplicaSet | None:
        """The replicated actor called ``name`` in this system (its ``count`` of
        replicas, its ``load()``), or None if there is none."""
        return self._groups.get(name)

    def extension(self, key: str, make: Callable[[ActorSystem], _E]) -> _E:
        """A layer's per-system object: ``make(self)`` on first use, the same one after.

        How a layer above keeps state per system, not per process (the flow layer's
        thread pools): ``aclose`` closes each one (its ``aclose()``, newest first) after
        every actor stopped.

        Raises:
            SystemClosed: The system finished closing.
        """
        extensions = self._extensions
        if extensions is None:
            raise SystemClosed("the actor system is closed")
        found = extensions.get(key)
        if found is None:
            found = extensions[key] = make(self)
        return found  # type: ignore[return-value] # one key, one maker

    def statistics(self) -> SystemStatistics:
        transport, remote = self._transport, self._remote
        return SystemStatistics(
            actors=len(self._names),
            dead_letters=self._dead_letters,
            restarts=self._restarts,
            escalations=self._escalations,
            transport=transport.statistics() if transport is not None and remote else None,
            replies_dropped=remote.replies_dropped if remote is not None else 0,
            stale_rejected=remote.stale_rejected if remote is not None else 0,
            refused_full=remote.refused_full if remote is not None else 0,
        )

    # -- services for cells ---------------------------------------------------------------

    def unregister(self, cell: ActorCell) -> None:
        if self._names.get(cell.name) is cell:
            del self._names[cell.name]

    def spawn_background(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run runtime housekeeping (supervision, slow stops) as a tracked task."""
        task = self.loop.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("cfactor internal task failed: %r", exc, exc_info=exc)

    def count_restart(self) -> None:
        self._restarts += 1

    def count_escalation(self) -> None:
        self._escalations += 1

    def to_stopped(self, target: str, message: Any, reason: str) -> None:
        """A tell to an actor that stopped: a dead letter while the system runs.

        Off the hot path: only a send to a stopped actor comes here.

        Raises:
            SystemClosed: You closed (or are closing) the system: closed is neither
                broken nor a dead letter.
        """
        if self._closed:
            raise SystemClosed(f"the actor system was closed (a message to {target!r})")
        self.dead_letter(target, message, reason)

    def stopped_error(self, error: ActorStopped) -> CfactorError:
        """What an ask to an actor that stopped raises: ``error`` while the system
        runs, ``SystemClosed`` once you closed it (also for asks the close cut short)."""
        if self._closed:
            return SystemClosed(f"the actor system was closed ({error})")
        return error

    def watch_dead_letters(self, watcher: Callable[[str, Any, str], None]) -> Callable[[], None]:
        """Call ``watcher(target, message, reason)`` for every dead letter from now on
        (Akka's dead-letter subscription; the simulation's ledger uses it). Returns the
        function that stops it."""
        self._dead_letter_watchers.append(watcher)
        return lambda: self._dead_letter_watchers.remove(watcher)

    def dead_letter(self, target: str, message: Any, reason: str) -> None:
        """Count a message that reached no actor; log at debug level, at most once a second."""
        self._dead_letters += 1
        for watcher in self._dead_letter_watchers:
            watcher(target, message, reason)
        now = self.clock.now()
        if now - self._dead_letter_log_at >= 1.0:
            unlogged = self._dead_letters - self._dead_letters_logged
            self._dead_letters_logged = self._dead_letters
            self._dead_letter_log_at = now
            log.debug(
                "dead letter to %r (%s): %.200r (%d since the last report, %d in all)",
                target,
                reason,
                message,
                unlogged,
                self._dead_letters,
            )

    def _flush_dead_letter_log(self) -> None:
        unlogged = self._dead_letters - self._dead_letters_logged
        if unlogged:
            self._dead_letters_logged = self._dead_letters
            log.debug("%d dead letters not yet reported (%d in all)", unlogged, self._dead_letters)

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._loop else "new")
        return f"<ActorSystem {state} actors={len(self._names)} address={self.address!r}>"
