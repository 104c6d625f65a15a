"""The program a user writes: App, Session, Flow, Node, Step and their options.

Nothing here runs anything: building a flow only records what to run, checked as it
is written (a bad name or option is a ``ConfigError`` at the line that wrote it).
``cfactor/flow/run.py`` turns the description into actors.
"""

from __future__ import annotations

import inspect
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cfactor.autoscale import Replicas
from cfactor.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from cfactor._core.actor import Actor
    from cfactor._core.system import ActorSystem
    from cfactor.cluster.config import Cluster
    from cfactor.flow.run import Running, RunResult

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}")


def check_name(what: str, name: object) -> str:
    """Raises: ConfigError: ``name`` is not a short word (letters, digits, ``_``, ``-``)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"{what} names are 1-63 letters, digits, '_' or '-' (not starting with '-'), "
            f"got {name!r}"
        )
    return name


def _check_callable(what: str, fn: object) -> None:
    if not callable(fn) or isinstance(fn, type):
        raise ConfigError(f"{what} must be a function, got {fn!r}")


@dataclass(frozen=True, slots=True)
class Auto:
    """Let the autoscaler choose a map's replica count, between ``min`` and ``max``.

    Messages to a Node are batches of items, so ``target_depth`` counts batches
    waiting per replica (see docs/flow.md and docs/autoscale.md).
    """

    min: int = 1
    max: int = 8
    target_depth: float = 2.0
    scale_out_window_s: float = 1.0
    scale_in_cooldown_s: float = 10.0

    def __post_init__(self) -> None:
        self.replicas()  # the same checks as cf.Replicas, raised here

    def replicas(self) -> Replicas:
        return Replicas(
            min=self.min,
            max=self.max,
            target_depth=self.target_depth,
            scale_out_window_s=self.scale_out_window_s,
            scale_in_cooldown_s=self.scale_in_cooldown_s,
            in_flight=1,
        )


@dataclass(frozen=True, slots=True)
class Shell:
    """A shell command as a stage-gated step (``cf.shell("make test")``)."""

    command: str
    cwd: str | None = None
    env: Mapping[str, str] | None = None
    timeout_s: float | None = None


def shell(
    command: str,
    *,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
) -> Shell:
    """A step that runs ``command`` with ``/bin/sh``; exit code 0 is success.

    Its stdout and stderr are logged line by line (logger ``cfactor.flow.step``) and
    kept in the step's result. ``env`` is added to this process's environment.

    Raises:
        ConfigError: An empty command or a non-positive timeout.
    """
    if not isinstance(command, str) or not command.strip():
        raise ConfigError(f"cf.shell needs a command, got {command!r}")
    if timeout_s is not None and not (timeout_s > 0 and math.isfinite(timeout_s)):
        raise ConfigError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    return Shell(command, cwd, dict(env) if env is not None else None, timeout_s)


def _check_parallelism(parallelism: object, kind: str) -> Any:
    if isinstance(parallelism, Auto):
        if kind == "source":
            raise ConfigError("a source's replicas each yield their own share: give a count")
        if kind == "reduce":
            raise ConfigError(
                "a reduce's partitions are fixed for the whole run (every key must reach "
                "one partition): give it a count, not cf.Auto"
            )
        return parallelism
    if isinstance(parallelism, bool) or not isinstance(parallelism, int) or parallelism < 1:
        raise ConfigError(
            f"parallelism must be a positive int or cf.Auto(...), got {parallelism!r}"
        )
    return parallelism


def _check_retries(retries: object) -> int:
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"retries must be an int >= 0, got {retries!r}")
    return retries


class Node:
    """A step of a Flow's DAG, run as one or more actor replicas.

    ``map`` and ``reduce`` add a Node fed by this one and return it, so steps chain;
    calling them twice on one Node fans its outputs out to both.
    """

    def __init__(
        self,
        flow: Flow,
        kind: str,
        fn: Callable[..., Any],
        name: str,
        *,
        parallelism: int | Auto = 1,
        arg: Any = None,
        partition: Callable[[Any, int], int] | None = None,
        retries: int = 0,
        parent: Node | None = None,
    ) -> None:
        self.flow = flow
        self.kind = kind
        self.fn = fn
        self.name = name
        self.parallelism = parallelism
        self.arg = arg
        self.partition = partition
        self.retries = retries
        self.parent = parent
        self.children: list[Node] = []

    @property
    def path(self) -> str:
        return f"{self.flow.path}.{self.name}"

    def map(
        self, fn: Callable[..., Any], name: str, parallelism: int | Auto = 1, *, retries: int = 0
    ) -> Node:
        """Apply ``fn(ctx, item)`` to every item; what it returns is the output (a
        generator's items are several outputs, ``None`` is none).

        Raises:
            ConfigError: A bad name (or one used in this flow), function or option.
        """
        _check_callable("a map", fn)
        return self.flow._attach(
            Node(
                self.flow,
                "map",
                fn,
                check_name("node", name),
                parallelism=_check_parallelism(parallelism, "map"),
                retries=_check_retries(retries),
                parent=self,
            )
        )

    def reduce(
        self,
        fn: Callable[..., Any],
        name: str,
        parallelism: int = 1,
        *,
        partition: Callable[[Any, int], int] | None = None,
        retries: int = 0,
    ) -> Node:
        """Call ``fn(ctx, items)`` once per partition with every upstream output of
        that partition, after the upstream finished.

        Keyed outputs go to one partition per key: a ``(key, value)`` pair by its key,
        a dict key by key (a dict output is split across partitions), anything else by
        itself. ``partition(key, n)`` overrides the choice (a stable hash by default).

        Raises:
            ConfigError: A bad name (or one used in this flow), function or option.
        """
        _check_callable("a reduce", fn)
        if partition is not None:
            _check_callable("partition", partition)
        return self.flow._attach(
            Node(
                self.flow,
                "reduce",
                fn,
                check_name("node", name),
                parallelism=_check_parallelism(parallelism, "reduce"),
                partition=partition,
                retries=_check_retries(retries),
                parent=self,
            )
        )

    def __repr__(self) -> str:
        return f"<Node {self.path} {self.kind} x{self.parallelism}>"


class Step:
    """A stage-gated step: it starts when every step it comes after succeeded."""

    def __init__(
        self, flow: Flow, action: Shell | Callable[..., Any], name: str, after: tuple[Step, ...]
    ) -> None:
        self.flow = flow
        self.action = action
        self.name = name
        self.after = after

    @property
    def path(self) -> str:
        return f"{self.flow.path}.{self.name}"

    def then(self, action: Shell | Callable[..., Any], name: str) -> Step:
        """The next step, run only if this one succeeds."""
        return self.flow.step(action, name, after=(self,))

    def __repr__(self) -> str:
        return f"<Step {self.path}>"


class Flow:
    """A DAG of Nodes fed by sources, and/or a stage-gated chain of Steps.

    When a flow has both, its steps run first and its sources start only after every
    step succeeded (the steps gate the dataflow).
    """

    def __init__(self, session: Session, name: str) -> None:
        self.session = session
        self.name = name
        self.nodes: dict[str, Node] = {}
        self.steps: dict[str, Step] = {}

    @property
    def path(self) -> str:
        return f"{self.session.path}.{self.name}"

    def _attach(self, node: Node) -> Node:
        if node.name in self.nodes or node.name in self.steps:
            raise ConfigError(f"flow {self.path!r} already has a step named {node.name!r}")
        self.nodes[node.name] = node
        if node.parent is not None:
            node.parent.children.append(node)
        return node

    def add(self, fn: Callable[..., Any], name: str, arg: Any = None, parallelism: int = 1) -> Node:
        """A source: ``fn(ctx, arg)`` yields the flow's items (a generator or an async
        generator; a function returning an iterable works too).

        With ``parallelism`` N, N replicas each call ``fn``: replica ``ctx.index`` of
        ``ctx.replicas`` yields its own share (a shard of a file, say), so on a cluster
        each member can read its part where it runs.

        Raises:
            ConfigError: A bad name (or one used in this flow), function or count.
        """
        _check_callable("a source", fn)
        return self._attach(
            Node(
                self,
                "source",
                fn,
                check_name("node", name),
                arg=arg,
                parallelism=_check_parallelism(parallelism, "source"),
            )
        )

    def step(
        self,
        action: Shell | Callable[..., Any],
        name: str,
        *,
        after: Step | tuple[Step, ...] | list[Step] = (),
    ) -> Step:
        """A stage-gated step: ``cf.shell("cmd")`` or ``fn(ctx)`` (sync or async).

        Raises:
            ConfigError: A bad name, action, or an ``after`` step of another flow.
        """
        if not isinstance(action, Shell):
            _check_callable("a step", action)
        check_name("step", name)
        if name in self.nodes or name in self.steps:
            raise ConfigError(f"flow {self.path!r} already has a step named {name!r}")
        deps = (after,) if isinstance(after, Step) else tuple(after)
        for dep in deps:
            if not isinstance(dep, Step) or dep.flow is not self:
                raise ConfigError(f"a step comes after steps of its own flow, got {dep!r}")
        step = self.steps[name] = Step(self, action, name, deps)
        return step

    def sources(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.kind == "source"]

    def leaves(self) -> list[Node]:
        return [n for n in self.nodes.values() if not n.children]

    def __repr__(self) -> str:
        return f"<Flow {self.path} nodes={list(self.nodes)} steps={list(self.steps)}>"


class Session:
    """One run of an App: a namespace for flows; its nodes share a key-value store."""

    def __init__(self, app: App, name: str) -> None:
        self.app = app
        self.name = name
        self.flows: dict[str, Flow] = {}

    @property
    def path(self) -> str:
        return f"{self.app.name}.{self.name}"

    def flow(self, name: str) -> Flow:
        """The flow called ``name`` in this session (made on first use)."""
        check_name("flow", name)
        flow = self.flows.get(name)
        if flow is None:
            flow = self.flows[name] = Flow(self, name)
        return flow

    def __repr__(self) -> str:
        return f"<Session {self.path} flows={list(self.flows)}>"


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A service the app starts: an actor class, or a registered function."""

    name: str
    target: Any
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    replicas: int | Replicas = 1
    description: str = ""
    is_function: bool = False


class App:
    """A deployed program: sessions (each with flows) and services.

    ``result = await app.run()`` runs it embedded; ``cfactor run FILE.py [--cluster URL]``
    runs a file's app from the command line, unchanged.
    """

    def __init__(self, name: str) -> None:
        self.name = check_name("app", name)
        self.sessions: dict[str, Session] = {}
        self.services: dict[str, ServiceSpec] = {}

    def session(self, name: str) -> Session:
        """The session called ``name`` (made on first use)."""
        check_name("session", name)
        session = self.sessions.get(name)
        if session is None:
            session = self.sessions[name] = Session(self, name)
        return session

    def service(
        self,
        cls: type[Actor],
        name: str,
        *args: Any,
        replicas: int | Replicas = 1,
        **kwargs: Any,
    ) -> None:
        """Run ``cls(*args, **kwargs)`` as the service ``name`` while the app runs.

        ``replicas`` is a fixed count or ``cf.Replicas(...)`` (autoscaled). Node
        functions reach it with ``ctx.service(name)``; other programs with
        ``app.start(system)`` or ``system.ref(f"{app.name}.{name}")``.

        Raises:
            ConfigError: A bad or taken name, or a bad replica count.
        """
        from cfactor._core.actor import Actor  # noqa: PLC0415 - keeps model import-light

        if not (isinstance(cls, type) and issubclass(cls, Actor)):
            raise ConfigError(f"a service is an Actor subclass, got {cls!r}")
        self._add_service(ServiceSpec(name, cls, args, kwargs, _check_replicas(replicas)))

    def reg(
        self,
        fn: Callable[..., Any],
        description: str = "",
        *,
        name: str | None = None,
        replicas: int | Replicas = 1,
    ) -> None:
        """Register a plain function as a callable service (the seed's ``app.Reg``):
        ``await running.call(name, *args)`` or ``ctx.call(name, *args)`` runs it.

        Raises:
            ConfigError: Not a function, or a bad or taken name.
        """
        _check_callable("app.reg", fn)
        self._add_service(
            ServiceSpec(
                name or str(getattr(fn, "__name__", "")),
                fn,
                replicas=_check_replicas(replicas),
                description=description or inspect.getdoc(fn) or "",
                is_function=True,
            )
        )

    def _add_service(self, spec: ServiceSpec) -> None:
        check_name("service", spec.name)
        if spec.name in self.services:
            raise ConfigError(f"app {self.name!r} already has a service named {spec.name!r}")
        self.services[spec.name] = spec

    def flows(self) -> list[Flow]:
        return [flow for session in self.sessions.values() for flow in session.flows.values()]

    async def run(
        self,
        system: ActorSystem | None = None,
        *,
        cluster: str | Cluster | None = None,
        progress: bool | None = None,
    ) -> RunResult:
        """Run every flow of every session (services up meanwhile); their outputs.

        Args:
            system: The actor system to run on; a fresh embedded one if None.
            cluster: Run on a cluster instead: an etcd URL (cluster ``default``) or a
                ``cf.Cluster``; this process joins it, spreads the Node replicas over
                the other members, and leaves when done.
            progress: A live per-Node display on stderr; None shows it on a terminal.

        Raises:
            NodeFailed: A Node function raised on an item (after its retries).
            StepFailed: A step failed; the steps after it were skipped.
            WorkerLost: A replica stopped before its flow finished.
            ConfigError: Nothing to run, or a function a cluster member cannot import.
        """
        from cfactor.flow.run import run_app  # noqa: PLC0415 - model stays import-light

        return await run_app(self, system, cluster=cluster, progress=progress)

    def start(self, system: ActorSystem, *, http: str | None = None) -> Running:
        """``async with app.start(system) as running:`` — the app's services, up until
        the block ends (``running.service(name)``, ``await running.call(name, ...)``).

        ``http="127.0.0.1:8080"`` also serves them as JSON over HTTP
        (``POST /services/NAME``, see docs/flow.md); ``running.http_address`` says where.
        """
        from cfactor.flow.run import Running  # noqa: PLC0415

        return Running(self, system, http=http)

    def __repr__(self) -> str:
        return f"<App {self.name} sessions={list(self.sessions)} services={list(self.services)}>"


def _check_replicas(replicas: object) -> int | Replicas:
    if isinstance(replicas, Replicas):
        return replicas
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise ConfigError(f"replicas must be a positive int or cf.Replicas(...), got {replicas!r}")
    return replicas
