"""The dataflow layer's own protocol, in one place: what a Node's replicas, a
``cf.Auto`` group's host and the run's monitor tell and ask each other, and the plan a
replica is built from.

Who sends what (docs/flow.md has the picture):

- the driver tells a source replica ``Start``; it asks an ``AutoHost`` ``Where``;
- a replica asks each replica downstream (or the monitor, for a leaf) to take a
  ``Batch`` and, when its upstream has all ended, an ``EndOfStream``;
- a replica tells the monitor its ``Progress`` and, once, that it ``Failed``; an
  ``AutoHost`` tells it its group's ``ReplicaCount``;
- a Node function asks its session's store (``StoreGet``, ``StorePut``, ``StoreAdd``,
  ``StoreItems``) and calls a function service (``Call``); the driver asks a step's
  actor to ``RunStep`` and gets a ``StepOutcome``.

Each message is a frozen dataclass registered with the codec under a stable name
(``cfactor.flow.*``: the name, not the module, is the wire contract). A message from
another member is rebuilt with ``cls(**fields)``, so ``__post_init__`` checks the field
types: a peer's bad message is a ``ProtocolError`` at decoding, never a crash of a
replica. Members of one cluster run the same cfactor version; this is flow protocol 2
(docs/flow.md: protocol 1 used positional tuples, a plan dict, and told a delivery
failure from a function's by a ``"("`` at the start of the item's text).

A replica's plan travels in its spawn arguments as ``NodePlan.to_args()``, plain values:
the placement leader and the member that hosts the replica decode the spawn before they
load the flow layer, so a registered class there would be an unknown message type.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from cfactor.wire import message

#: Where a replica finds an actor: (member address, or None for its own; actor name).
Endpoint = tuple[str | None, str]
#: Who sent a batch or an end of stream: (node path, replica index; -1 for a
#: ``cf.Auto`` group's host).
Sender = tuple[str, int]


def _require(owner: object, **expected: type | tuple[type, ...]) -> None:
    """Raises: TypeError: a field does not hold its type (``bool`` counts as no ``int``)."""
    for name, kind in expected.items():
        value = getattr(owner, name)
        wrong_bool = isinstance(value, bool) and kind is not bool
        if wrong_bool or not isinstance(value, kind):
            raise TypeError(
                f"{type(owner).__name__}.{name} must be {kind}, got {type(value).__name__}"
            )


def _require_pair(label: str, value: Any, first: type | tuple[type, ...], second: type) -> None:
    """Raises: TypeError: ``value`` is not a 2-tuple of ``(first, second)``."""
    if not (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], first)
        and isinstance(value[1], second)
        and not isinstance(value[1], bool)
    ):
        raise TypeError(f"{label} must be a pair, got {value!r:.100}")


def _require_sender(owner: Batch | EndOfStream) -> None:
    _require_pair(f"{type(owner).__name__}.sender", owner.sender, str, int)


def _require_endpoint(label: str, value: Any) -> None:
    _require_pair(label, value, (str, type(None)), str)


# -- between replicas --------------------------------------------------------------------


@message(name="cfactor.flow.Start")
@dataclass(frozen=True, slots=True)
class Start:
    """Driver -> a source replica: run the source function. Told."""


@message(name="cfactor.flow.Batch")
@dataclass(frozen=True, slots=True)
class Batch:
    """Take and process ``items`` (a leaf's outputs, at the monitor: keep them).
    Asked: the answer (None) means done, which is the backpressure."""

    sender: Sender
    items: list[Any]

    def __post_init__(self) -> None:
        _require_sender(self)
        _require(self, items=list)


@message(name="cfactor.flow.EndOfStream")
@dataclass(frozen=True, slots=True)
class EndOfStream:
    """``sender`` sent everything, and every batch it sent was answered. Asked."""

    sender: Sender

    def __post_init__(self) -> None:
        _require_sender(self)


@message(name="cfactor.flow.Where")
@dataclass(frozen=True, slots=True)
class Where:
    """Driver -> an ``AutoHost``: where is your group? Answer: ``(address, group name)``."""


# -- to the run's monitor ----------------------------------------------------------------


@message(name="cfactor.flow.Progress")
@dataclass(frozen=True, slots=True)
class Progress:
    """A replica's figures so far (its last report counts). Told."""

    path: str  #: the Node's ``app.session.flow.node``
    index: int  #: the replica's (-1: a ``cf.Auto`` host, shown as finished)
    n_in: int
    n_out: int
    finished: bool
    dropped: int  #: items that reached it after it failed

    def __post_init__(self) -> None:
        _require(self, path=str, index=int, n_in=int, n_out=int, finished=bool, dropped=int)


@message(name="cfactor.flow.Failed")
@dataclass(frozen=True, slots=True)
class Failed:
    """A replica failed, and processes nothing more. Told once.

    ``delivery`` says what failed: False, the Node's function on ``item`` (the run
    fails with ``NodeFailed``); True, sending downstream or ending the stream
    (``item`` says which), which fails the run with ``WorkerLost`` when the error
    means the replica sent to is gone.
    """

    path: str
    index: int
    item: str  #: the repr of the item, or what was being done
    type_name: str
    message: str
    traceback: str
    delivery: bool

    def __post_init__(self) -> None:
        _require(
            self,
            path=str,
            index=int,
            item=str,
            type_name=str,
            message=str,
            traceback=str,
            delivery=bool,
        )


@message(name="cfactor.flow.ReplicaCount")
@dataclass(frozen=True, slots=True)
class ReplicaCount:
    """An ``AutoHost``'s group has ``count`` replicas now. Told."""

    path: str
    count: int

    def __post_init__(self) -> None:
        _require(self, path=str, count=int)


# -- the session's services and steps ----------------------------------------------------


@message(name="cfactor.flow.StoreGet")
@dataclass(frozen=True, slots=True)
class StoreGet:
    """Answer: the value at ``key`` in the session's store, or ``default``."""

    key: Any
    default: Any = None


@message(name="cfactor.flow.StorePut")
@dataclass(frozen=True, slots=True)
class StorePut:
    """Set ``key`` to ``value``. Answer: None."""

    key: Any
    value: Any


@message(name="cfactor.flow.StoreAdd")
@dataclass(frozen=True, slots=True)
class StoreAdd:
    """Add ``delta`` to the number at ``key`` (0 if unset). Answer: the new value."""

    key: Any
    #: Any number the store's value adds to (not checked: a numpy int is no ``int``,
    #: and adding is what checks it).
    delta: Any = 1


@message(name="cfactor.flow.StoreItems")
@dataclass(frozen=True, slots=True)
class StoreItems:
    """Answer: a copy of the whole store, a dict."""


@message(name="cfactor.flow.Call")
@dataclass(frozen=True, slots=True)
class Call:
    """Call the function registered with ``app.reg`` (a ``FunctionService``) with
    ``args``. Answer: its return value."""

    args: tuple[Any, ...]

    def __post_init__(self) -> None:
        _require(self, args=tuple)


@message(name="cfactor.flow.RunStep")
@dataclass(frozen=True, slots=True)
class RunStep:
    """Driver -> a step's actor: run the step once. Answer: ``StepOutcome``."""


@message(name="cfactor.flow.StepOutcome")
@dataclass(frozen=True, slots=True)
class StepOutcome:
    """How a step's command or function ended (its output's tails)."""

    ok: bool
    exit_code: int | None  #: a shell step's; None for a function, or one killed
    stdout: str
    stderr: str
    seconds: float

    def __post_init__(self) -> None:
        _require(
            self,
            ok=bool,
            exit_code=(int, type(None)),
            stdout=str,
            stderr=str,
            seconds=(int, float),
        )


# -- the plan a replica is built from ----------------------------------------------------


@message(name="cfactor.flow.EdgePlan")
@dataclass(frozen=True, slots=True)
class EdgePlan:
    """Where a Node's outputs go: the replicas of one downstream Node, or the monitor.

    ``mode``: ``spread`` (any target), ``part`` (one target per partition) or ``auto``
    (one group ref in ``targets``; ends of stream go to ``gate``, the group's host).
    """

    mode: str
    targets: tuple[Endpoint, ...]
    gate: Endpoint | None
    partition: Any  #: a partition function, as ``portable`` left it, or None

    def __post_init__(self) -> None:
        _require(self, mode=str, targets=tuple)
        if self.mode not in {"spread", "part", "auto"}:
            raise ValueError(f"EdgePlan.mode must be spread, part or auto, not {self.mode!r}")
        for target in self.targets:
            _require_endpoint("EdgePlan.targets[]", target)
        if self.gate is not None:
            _require_endpoint("EdgePlan.gate", self.gate)


@message(name="cfactor.flow.NodePlan")
@dataclass(frozen=True, slots=True)
class NodePlan:
    """What one replica of a Node needs to run (plain values: any member can host it)."""

    kind: str  #: ``source``, ``map`` or ``reduce``
    node: str  #: the Node's path
    index: int  #: the replica's index (a ``cf.Auto`` replica uses its ref's uid)
    replicas: int  #: how many the Node has (0 for ``cf.Auto``)
    fn: Any  #: the Node function, as ``portable`` left it
    arg: Any  #: a source's argument
    retries: int
    expected: int  #: how many upstream senders end their stream here
    edges: tuple[EdgePlan, ...]
    monitor: Endpoint
    store: Endpoint  #: the session's store
    services: dict[str, Endpoint]
    batch: int  #: items per batch
    auto_replica: bool = False  #: a replica of a ``cf.Auto`` group

    def __post_init__(self) -> None:
        _require(
            self,
            kind=str,
            node=str,
            index=int,
            replicas=int,
            retries=int,
            expected=int,
            edges=tuple,
            services=dict,
            batch=int,
            auto_replica=bool,
        )
        if self.kind not in {"source", "map", "reduce"}:
            raise ValueError(f"NodePlan.kind must be source, map or reduce, not {self.kind!r}")
        if not all(isinstance(edge, EdgePlan) for edge in self.edges):
            raise TypeError("NodePlan.edges must hold EdgePlans")
        _require_endpoint("NodePlan.monitor", self.monitor)
        _require_endpoint("NodePlan.store", self.store)

    def to_args(self) -> dict[str, Any]:
        """This plan as plain values, for a spawn's arguments (see the module docstring)."""
        args = {field.name: getattr(self, field.name) for field in fields(self)}
        args["edges"] = [
            {field.name: getattr(edge, field.name) for field in fields(edge)} for edge in self.edges
        ]
        return args

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> NodePlan:
        """The plan ``to_args`` gave.

        Raises:
            TypeError: A field is missing, unknown or of the wrong type.
            ValueError: A field's value is out of range.
        """
        values = dict(args)
        edges = values.get("edges")
        if not isinstance(edges, list | tuple) or not all(isinstance(e, dict) for e in edges):
            raise TypeError(f"NodePlan.edges must be a list of EdgePlan fields, got {edges!r:.100}")
        values["edges"] = tuple(EdgePlan(**edge) for edge in edges)
        return cls(**values)


#: What a ``NodeWorker`` is asked or told.
ReplicaRequest = Start | Batch | EndOfStream
#: What the run's monitor is asked or told.
MonitorRequest = Batch | EndOfStream | Progress | Failed | ReplicaCount
#: What a session's store is asked.
StoreRequest = StoreGet | StorePut | StoreAdd | StoreItems
