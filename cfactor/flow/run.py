"""Running an App: turn its flows into actors, feed them, watch them, collect.

The process that calls ``app.run()`` is the driver. It spawns, per Node, its
replicas (embedded: here; on a cluster: pinned round-robin over the other members,
so a Node's replicas spread), wires each replica to the replicas downstream, starts
the sources, and waits for every leaf Node's end of stream at its monitor actor,
which also collects the leaves' outputs and the replicas' progress reports.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Self, cast

from cfactor._core.actor import Actor
from cfactor._core.supervision import Restart
from cfactor._core.system import ActorSystem
from cfactor.autoscale import Replicas
from cfactor.cluster.config import Cluster, Pin
from cfactor.errors import (
    ActorNotFound,
    ActorStopped,
    CfactorError,
    ConfigError,
    FlowError,
    MemberUnreachable,
    NodeFailed,
    StepFailed,
    WorkerLost,
    wire_error_type,
)
from cfactor.flow.context import endpoint_ref
from cfactor.flow.functions import portable
from cfactor.flow.messages import (
    Batch,
    Call,
    EdgePlan,
    EndOfStream,
    Endpoint,
    Failed,
    NodePlan,
    Progress,
    ReplicaCount,
    RunStep,
    Start,
    StepOutcome,
    StoreItems,
    Where,
)
from cfactor.flow.model import Auto, Shell
from cfactor.flow.progress import Display, render
from cfactor.flow.sending import BATCH_ITEMS
from cfactor.flow.services import FunctionService, SessionStore
from cfactor.flow.steps import StepWorker
from cfactor.flow.workers import AutoHost, NodeWorker

if TYPE_CHECKING:
    from types import TracebackType

    from cfactor._core.ref import ActorRef
    from cfactor.cluster.runtime import ClusterMember
    from cfactor.flow.http import ServiceEndpoint
    from cfactor.flow.model import App, Flow, Node, Step

log = logging.getLogger("cfactor.flow")

#: How often the driver redraws progress and checks that every replica is alive.
WATCH_EVERY_S = 0.5


# -- what a run returns --------------------------------------------------------------------


@dataclass(slots=True)
class NodeStats:
    """One Node's figures: items in and out (summed over replicas), replicas."""

    path: str
    kind: str
    replicas: int = 0
    #: Each replica's last report: (items in, items out, finished, dropped).
    per_replica: dict[int, tuple[int, int, bool, int]] = field(default_factory=dict)

    def update(self, index: int, n_in: int, n_out: int, finished: bool, dropped: int) -> None:
        self.per_replica[index] = (n_in, n_out, finished, dropped)

    @property
    def items_in(self) -> int:
        return sum(v[0] for v in self.per_replica.values())

    @property
    def items_out(self) -> int:
        return sum(v[1] for v in self.per_replica.values())

    @property
    def finished(self) -> int:
        """How many replicas said they finished."""
        return sum(1 for v in self.per_replica.values() if v[2])

    @property
    def dropped(self) -> int:
        return sum(v[3] for v in self.per_replica.values())


@dataclass(frozen=True, slots=True)
class StepResult:
    """How a stage-gated step ended: ``ok``, ``failed`` or ``skipped``."""

    path: str
    status: str
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0


@dataclass(slots=True)
class FlowResult:
    """One flow's outputs (per leaf Node), Node figures and step results."""

    path: str
    outputs: dict[str, list[Any]] = field(default_factory=dict)
    nodes: dict[str, NodeStats] = field(default_factory=dict)
    steps: dict[str, StepResult] = field(default_factory=dict)

    @property
    def output(self) -> list[Any]:
        """The outputs of the flow's one leaf Node.

        Raises:
            ConfigError: The flow has several leaves (use ``outputs[name]``).
        """
        if len(self.outputs) != 1:
            raise ConfigError(
                f"flow {self.path!r} has {len(self.outputs)} leaf nodes; use .outputs[name]"
            )
        return next(iter(self.outputs.values()))


@dataclass(slots=True)
class RunResult:
    """What ``app.run()`` returns: every flow's result, by ``session.flow``."""

    app: str
    flows: dict[str, FlowResult] = field(default_factory=dict)
    seconds: float = 0.0
    #: Each session's key-value store as the run left it.
    stores: dict[str, dict[Any, Any]] = field(default_factory=dict)

    def flow(self, name: str, session: str | None = None) -> FlowResult:
        """The result of flow ``name`` (of ``session``, if two sessions have one).

        Raises:
            ConfigError: No such flow, or the name is ambiguous without ``session``.
        """
        found = [
            r
            for key, r in self.flows.items()
            if key.split(".")[1] == name and (session is None or key.split(".")[0] == session)
        ]
        if len(found) != 1:
            raise ConfigError(f"{len(found)} flows match {name!r} (have {sorted(self.flows)})")
        return found[0]

    @property
    def output(self) -> list[Any]:
        """The outputs of the app's one flow (and its one leaf Node)."""
        if len(self.flows) != 1:
            raise ConfigError(f"the app ran {len(self.flows)} flows; use .flow(name).output")
        return next(iter(self.flows.values())).output


# -- the monitor: outputs, ends of stream, progress, failures --------------------------------


class RunState:
    """What the monitor learns, read by the driver (same process). Each flow has its
    own ``done``: flows of one app start and end at their own times."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.nodes: dict[str, NodeStats] = {}
        self.outputs: dict[str, list[Any]] = {}
        self.expected: dict[str, int] = {}
        self.ended: dict[str, set[int]] = {}
        self.done: dict[str, asyncio.Future[None]] = {}

    def flow_done(self, flow: str) -> asyncio.Future[None]:
        future = self.done.get(flow)
        if future is None:
            future = self.done[flow] = self.loop.create_future()
            # Read by the driver; a failure after the driver stopped watching is not news.
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
        return future

    def check_done(self, leaf: str) -> None:
        flow = _flow_of(leaf)
        future = self.flow_done(flow)
        if future.done():
            return
        leaves = [path for path in self.expected if _flow_of(path) == flow]
        if all(len(self.ended[path]) >= self.expected[path] for path in leaves):
            future.set_result(None)

    def fail(self, path: str, error: FlowError) -> None:
        future = self.flow_done(_flow_of(path))
        if not future.done():
            future.set_exception(error)
        else:
            log.warning("after its flow ended: %s", error)


def _flow_of(path: str) -> str:
    """``app.session.flow`` of a node's path."""
    return path.rpartition(".")[0]


#: Delivery failures that mean a replica is gone (its member died, say): not the
#: items' fault, so the run fails with WorkerLost rather than NodeFailed.
_LOST = (MemberUnreachable, ActorStopped, ActorNotFound)


def _lost(type_name: str) -> bool:
    """Whether a failure's type name (read back through the wire table in
    cfactor.errors) is one of the ``_LOST`` delivery failures."""
    cls = wire_error_type(type_name)
    return cls is not None and issubclass(cls, _LOST)


class RunMonitor(Actor):
    """The leaves' sink and the replicas' reporting address (lives in the driver)."""

    def __init__(self, state: RunState) -> None:
        self.state = state

    async def receive(self, message: Any) -> Any:
        state = self.state
        match message:
            case Batch(sender=(path, _), items=items):
                state.outputs[path].extend(items)
            case EndOfStream(sender=(path, index)):
                state.ended[path].add(index)
                state.check_done(path)
            case Progress(path, index, n_in, n_out, finished, dropped):
                stats = state.nodes.get(path)
                if stats is not None:
                    stats.update(index, n_in, n_out, finished, dropped)
            case ReplicaCount(path, count):
                if path in state.nodes:
                    state.nodes[path].replicas = count
            case Failed(path, index, item, type_name, text, delivery=True) if _lost(type_name):
                state.fail(
                    path,
                    WorkerLost(
                        f"node {path} (replica {index}) lost a replica it sends to {item}: "
                        f"{type_name}: {text}"
                    ),
                )
            case Failed(path, index, item, type_name, text, traceback):
                state.fail(
                    path,
                    NodeFailed(
                        f"node {path} (replica {index}) failed on {item}: {type_name}: {text}",
                        node=path,
                        item=item,
                        type_name=type_name,
                        traceback=traceback,
                    ),
                )
            case _:
                raise ValueError(f"the run monitor got an unknown message {message!r:.100}")
        return None


# -- services ----------------------------------------------------------------------------


class Running:
    """An app's services, up (``async with app.start(system) as running``)."""

    def __init__(self, app: App, system: ActorSystem, *, http: str | None = None) -> None:
        self.app = app
        self.system = system
        self.http = http
        self.endpoint: ServiceEndpoint | None = None
        self.refs: dict[str, ActorRef] = {}
        #: Services that were up already (another ``app.start``): used, not stopped.
        self.borrowed: set[str] = set()
        #: Where Node replicas on any member find each service.
        self.endpoints: dict[str, Endpoint] = {}

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        system = self.system
        remote = system.cluster is not None
        for name, spec in self.app.services.items():
            full = f"{self.app.name}.{name}"
            replicas: Replicas | None
            if isinstance(spec.replicas, int):
                count = spec.replicas
                replicas = None if count == 1 else Replicas(min=count, max=count)
            else:
                replicas = spec.replicas
            here = replicas is not None or not remote
            try:
                self.refs[name] = system.ref(full)  # already up (app.start): use it
            except ActorNotFound:
                pass
            else:
                self.borrowed.add(name)
                self.endpoints[name] = (system.address if here else None, full)
                continue
            if spec.is_function:
                cls, args, kwargs = FunctionService, (portable(spec.target, remote=remote),), {}
            else:
                cls, args, kwargs = spec.target, spec.args, spec.kwargs
            # Resilient (docs/flow.md): a request that makes the service raise restarts
            # it at once, and no input can make the runtime stop it for good.
            self.refs[name] = await system.spawn(
                cls, *args, name=full, replicas=replicas, restart=Restart.RESILIENT, **kwargs
            )
            # A replicated service is a group on this member; a single one may be
            # placed anywhere in a cluster and is found through its directory.
            self.endpoints[name] = (system.address if here else None, full)
            log.info("service %s started (%s)", full, spec.description or spec.target)
        if self.http is not None:
            from cfactor.flow.http import ServiceEndpoint  # noqa: PLC0415 - only with http=

            self.endpoint = ServiceEndpoint(self)
            await self.endpoint.start(self.http)

    @property
    def http_address(self) -> str:
        """Where the HTTP endpoint listens (``http://HOST:PORT``); empty without one."""
        return self.endpoint.address if self.endpoint is not None else ""

    async def stop(self) -> None:
        endpoint, self.endpoint = self.endpoint, None
        if endpoint is not None:
            await endpoint.close()
        refs, self.refs = self.refs, {}
        for name, ref in refs.items():
            if name in self.borrowed:
                continue
            try:
                await ref.stop()
            except CfactorError as exc:
                log.warning("stopping service %s: %r", ref.name, exc)

    def service(self, name: str) -> ActorRef:
        """The ref of service ``name``.

        Raises:
            ConfigError: The app has no such service (or it is not running).
        """
        ref = self.refs.get(name)
        if ref is None:
            raise ConfigError(f"app {self.app.name!r} runs no service {name!r}")
        return ref

    async def call(self, name: str, *args: Any, timeout: float | None = None) -> Any:
        """Call a function registered with ``app.reg``; its return value.

        Raises:
            RemoteActorError: The function raised (its type, message, traceback).
        """
        return await self.service(name).ask(Call(args), timeout=timeout)


# -- the driver ----------------------------------------------------------------------------


async def run_app(
    app: App,
    system: ActorSystem | None,
    *,
    cluster: str | Cluster | None,
    progress: bool | None,
) -> RunResult:
    if not app.flows():
        raise ConfigError(f"app {app.name!r} has no flows to run")
    if system is not None:
        return await Driver(app, system, progress).run()
    if cluster is None:
        async with ActorSystem() as fresh:
            return await Driver(app, fresh, progress).run()
    if isinstance(cluster, str):
        cluster = Cluster(etcd=cluster)
    async with ActorSystem(listen="tcp://127.0.0.1:0", cluster=cluster) as fresh:
        return await Driver(app, fresh, progress).run()


class Driver:
    """One run of an app on one actor system."""

    def __init__(self, app: App, system: ActorSystem, progress: bool | None) -> None:
        self.app = app
        self.system = system
        self.remote = system.cluster is not None
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.run_id = f"{system.random.getrandbits(24):06x}"
        self.state = RunState(system.loop)
        self.refs: list[ActorRef] = []  # every actor of this run, stopped at the end
        self.workers: dict[str, list[ActorRef]] = {}
        self.stores: dict[str, Endpoint] = {}
        self.monitor: ActorRef | None = None
        self.turn = 0
        self.result = RunResult(app.name)

    async def run(self) -> RunResult:
        started = self.system.clock.now()
        try:
            async with Running(self.app, self.system) as running:
                self.services = running.endpoints
                await self._start_common()
                flows = self.app.flows()
                for flow in flows:
                    self.result.flows[f"{flow.session.name}.{flow.name}"] = FlowResult(flow.path)
                drawing = asyncio.ensure_future(self._draw(flows)) if self.progress else None
                try:
                    await _all_or_nothing([self._run_flow(flow) for flow in flows])
                finally:
                    if drawing is not None:
                        drawing.cancel()
                        await asyncio.gather(drawing, return_exceptions=True)
                    await self._snapshot_stores()
        except FlowError as exc:
            exc.result = self.result
            raise
        finally:
            self.result.seconds = self.system.clock.now() - started
            await self._stop_all()
        return self.result

    async def _start_common(self) -> None:
        system = self.system
        monitor = self.monitor = await system.spawn(
            RunMonitor, self.state, name=f"{self.app.name}.run-{self.run_id}", placement="local"
        )
        self.refs.append(monitor)
        self.monitor_endpoint: Endpoint = (system.address, monitor.name)
        for session in self.app.sessions.values():
            ref = await system.spawn(
                SessionStore, name=f"{session.path}.store-{self.run_id}", placement="local"
            )
            self.refs.append(ref)
            self.stores[session.name] = (system.address, ref.name)

    async def _snapshot_stores(self) -> None:
        for session, endpoint in self.stores.items():
            try:
                items = await endpoint_ref(self.system, endpoint).ask(StoreItems())
            except CfactorError as exc:
                log.warning("reading session %s's store: %r", session, exc)
                continue
            self.result.stores[session] = items

    async def _stop_all(self) -> None:
        """Stop the replicas and steps, then the monitor and stores they report to."""
        refs, self.refs = self.refs, []
        common = {name for _, name in self.stores.values()}
        if self.monitor is not None:
            common.add(self.monitor.name)
        workers = [r for r in refs if r.name not in common]
        for batch in (workers, [r for r in refs if r.name in common]):
            results = await asyncio.gather(*(r.stop() for r in batch), return_exceptions=True)
            for ref, outcome in zip(batch, results, strict=True):
                if isinstance(outcome, BaseException) and not isinstance(outcome, ActorNotFound):
                    log.warning("stopping %s: %r", ref.name, outcome)

    # -- one flow ---------------------------------------------------------------------

    async def _run_flow(self, flow: Flow) -> None:
        result = self.result.flows[f"{flow.session.name}.{flow.name}"]
        if flow.steps:
            await self._run_steps(flow, result)
        if not flow.nodes:
            return
        await self._spawn_nodes(flow, result)
        await self._watch(flow)
        for leaf in flow.leaves():
            result.outputs[leaf.name] = self.state.outputs[leaf.path]

    async def _run_steps(self, flow: Flow, result: FlowResult) -> None:
        session = flow.session.name
        workers: dict[str, ActorRef] = {}
        for step in flow.steps.values():
            action = step.action
            portable_action = (
                ("shell", action.command, action.cwd, action.env, action.timeout_s)
                if isinstance(action, Shell)
                else portable(action, remote=self.remote)
            )
            workers[step.name] = ref = await self.system.spawn(
                StepWorker,
                step.path,
                portable_action,
                self.stores[session],
                self.services,
                name=f"{step.path}-{self.run_id}",
                placement=self._place(),
                restart="temporary",
            )
            self.refs.append(ref)
        done: dict[str, asyncio.Future[StepResult]] = {
            name: self.system.loop.create_future() for name in flow.steps
        }

        async def run(step: Step) -> None:
            for dep in step.after:
                before = await done[dep.name]
                if before.status != "ok":
                    outcome = StepResult(step.path, "skipped", stderr=f"{dep.name} {before.status}")
                    result.steps[step.name] = outcome
                    done[step.name].set_result(outcome)
                    return
            log.info("step %s started", step.path)
            try:
                ended: StepOutcome = await workers[step.name].ask(RunStep(), timeout=math.inf)
            except CfactorError as exc:  # its actor (or its member) is gone
                why = f"the step's actor did not answer: {type(exc).__name__}: {exc}"
                ended = StepOutcome(ok=False, exit_code=None, stdout="", stderr=why, seconds=0.0)
            outcome = StepResult(
                step.path,
                "ok" if ended.ok else "failed",
                ended.exit_code,
                ended.stdout,
                ended.stderr,
                ended.seconds,
            )
            log.info("step %s %s in %.2f s", step.path, outcome.status, ended.seconds)
            result.steps[step.name] = outcome
            done[step.name].set_result(outcome)

        await asyncio.gather(*(run(step) for step in flow.steps.values()))
        result.steps = {name: result.steps[name] for name in flow.steps}  # as written
        for step in flow.steps.values():
            outcome = result.steps[step.name]
            if outcome.status == "failed":
                why = (
                    f"exit code {outcome.exit_code}" if outcome.exit_code is not None else "raised"
                )
                tail = outcome.stderr.strip().splitlines()[-5:]
                skipped = [s for s, r in result.steps.items() if r.status == "skipped"]
                raise StepFailed(
                    f"step {step.path} failed ({why})"
                    + (f"; skipped after it: {', '.join(skipped)}" if skipped else "")
                    + ("\n  " + "\n  ".join(tail) if tail else ""),
                    step=step.path,
                    exit_code=outcome.exit_code,
                    stderr=outcome.stderr,
                )

    def _member(self) -> ClusterMember | None:
        """This system's cluster member (the flow layer sits above placement)."""
        return cast("ClusterMember | None", self.system.cluster)

    def _place(self) -> Any:
        """Where the next replica goes: round-robin over the other members."""
        cluster = self._member()
        if cluster is None:
            return "local"
        me = cluster.member_id
        members = sorted(m for m in cluster.membership.members() if m != me) or [me]
        member = members[self.turn % len(members)]
        self.turn += 1
        return Pin(member)

    async def _endpoint(self, ref: ActorRef) -> Endpoint:
        """Where other members reach a replica just spawned (its activation, in a cluster)."""
        if not self.remote:
            return (None, ref.name)
        cluster = self._member()
        assert cluster is not None
        await cluster.route(ref.name, cluster.config.placement_timeout_s)
        address = ref.__cfactor_address__()
        return (address.address, address.name)

    async def _spawn_nodes(self, flow: Flow, result: FlowResult) -> None:
        """Spawn every Node's replicas, leaves first (each is wired to its downstream)."""
        self.state.flow_done(flow.path)
        endpoints: dict[str, list[Endpoint]] = {}
        gates: dict[str, Endpoint] = {}
        order = _topological(flow)
        senders = {n.name: _senders(n) for n in order}
        for node in order:
            auto = isinstance(node.parallelism, Auto)
            stats = NodeStats(node.path, "auto" if auto else node.kind)
            if not isinstance(node.parallelism, Auto):
                stats.replicas = node.parallelism
            self.state.nodes[node.path] = result.nodes[node.name] = stats
        for node in reversed(order):
            edges: list[EdgePlan] = []
            for child in node.children:
                targets = tuple(endpoints[child.name])
                if isinstance(child.parallelism, Auto):
                    edges.append(EdgePlan("auto", targets, gates[child.name], None))
                else:
                    mode = "part" if child.kind == "reduce" else "spread"
                    partition = portable(child.partition, remote=self.remote)
                    edges.append(EdgePlan(mode, targets, None, partition))
            if not node.children:  # a leaf: its outputs are the flow's
                edges.append(EdgePlan("spread", (self.monitor_endpoint,), None, None))
                self.state.outputs[node.path] = []
                self.state.expected[node.path] = senders[node.name]
                self.state.ended[node.path] = set()
            plan = NodePlan(
                kind=node.kind,
                node=node.path,
                index=0,
                replicas=0 if isinstance(node.parallelism, Auto) else node.parallelism,
                fn=portable(node.fn, remote=self.remote),
                arg=node.arg,
                retries=node.retries,
                expected=senders[node.parent.name] if node.parent is not None else 0,
                edges=tuple(edges),
                monitor=self.monitor_endpoint,
                store=self.stores[flow.session.name],
                services=self.services,
                batch=BATCH_ITEMS,
            )
            refs: list[ActorRef] = []
            if isinstance(node.parallelism, Auto):
                host = await self._spawn(
                    AutoHost,
                    plan.to_args(),
                    _auto_dict(node.parallelism),
                    name=f"{node.path}-{self.run_id}",
                )
                refs.append(host)
                gates[node.name] = await self._endpoint(host)
                address, group = await host.ask(Where())
                endpoints[node.name] = [(address, group)]
            else:
                count = node.parallelism
                endpoints[node.name] = []
                for index in range(count):
                    ref = await self._spawn(
                        NodeWorker,
                        replace(plan, index=index).to_args(),
                        name=f"{node.path}.{index}-{self.run_id}",
                    )
                    refs.append(ref)
                    endpoints[node.name].append(await self._endpoint(ref))
            self.workers[node.path] = refs
        for source in flow.sources():
            for ref in self.workers[source.path]:
                await ref.tell(Start())

    async def _spawn(self, cls: type[Actor], *args: Any, name: str) -> ActorRef:
        ref = await self.system.spawn(
            cls, *args, name=name, placement=self._place(), restart="temporary"
        )
        self.refs.append(ref)
        return ref

    async def _watch(self, flow: Flow) -> None:
        """Wait for the flow's leaves to end, checking that its replicas are alive."""
        paths = [node.path for node in flow.nodes.values()]
        done = self.state.flow_done(flow.path)
        while True:
            finished, _ = await self.system.clock.wait({done}, timeout=WATCH_EVERY_S)
            if finished:
                done.result()  # raises the failure, if any
                await self._final_figures(paths)
                return
            for path in paths:
                for ref in self.workers.get(path, ()):
                    if not ref.is_alive:
                        raise WorkerLost(
                            f"{ref.name} stopped before flow {flow.path} finished "
                            "(its member left, or it crashed; see the log)"
                        )

    async def _draw(self, flows: list[Flow]) -> None:
        """Redraw every flow's Nodes on stderr until cancelled (then once more)."""
        display = Display(sys.stderr)
        clock = self.system.clock
        started = clock.now()
        paths = [node.path for flow in flows for node in flow.nodes.values()]
        try:
            while True:
                display.show(render(self.state.nodes, paths, clock.now() - started))
                await clock.sleep(WATCH_EVERY_S)
        finally:
            display.show(render(self.state.nodes, paths, clock.now() - started))

    async def _final_figures(self, paths: list[str]) -> None:
        """Wait (briefly) for every replica's final figures: a replica reports them
        before its end of stream, but from another member they may arrive after the
        leaves' ends."""
        clock = self.system.clock
        deadline = clock.now() + 2.0
        while clock.now() < deadline:
            nodes = [self.state.nodes[p] for p in paths]
            if all(s.kind == "auto" or s.finished >= s.replicas for s in nodes):
                return
            await clock.sleep(0.01)
        log.warning("some replicas' final figures did not arrive; the counts may be short")


async def _all_or_nothing(coros: list[Any]) -> None:
    """Run ``coros`` together; at the first failure cancel the rest, wait for them,
    and raise it (``gather`` would leave them running)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if task in done and not task.cancelled() and task.exception() is not None:
            raise task.exception()


def _topological(flow: Flow) -> list[Node]:
    """Nodes, each after its parent."""
    order: list[Node] = []

    def visit(node: Node) -> None:
        order.append(node)
        for child in node.children:
            visit(child)

    for source in flow.sources():
        visit(source)
    return order


def _senders(node: Node) -> int:
    """How many ends of stream a Node's downstream gets from it."""
    if isinstance(node.parallelism, Auto):
        return 1
    return node.parallelism


def _auto_dict(auto: Auto) -> dict[str, Any]:
    return {
        "min": auto.min,
        "max": auto.max,
        "target_depth": auto.target_depth,
        "scale_out_window_s": auto.scale_out_window_s,
        "scale_in_cooldown_s": auto.scale_in_cooldown_s,
    }
