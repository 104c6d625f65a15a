"""The cluster's own protocol, in one place: what the ``$cluster`` agent on every
member and the ``$placement`` actor on the leader are asked, and what they answer.

Each message is a frozen dataclass registered with the codec under a stable name
(``cfactor.cluster.*``: the name, not the module, is the wire contract). A message
from another member is rebuilt with ``cls(**fields)``, so ``__post_init__`` checks
the field types: a peer's bad message is a ``ProtocolError`` at decoding, never a
crash of the agent. Members of one cluster run the same cfactor version; this is
cluster protocol 2 (docs/wire.md: protocol 1 used positional tuples).

Answers to a request that can fail are the success type or ``Refused``, an expected
error with its type's name: ``refusal`` makes one, ``check_reply`` and ``expect`` raise
it again on the asking side.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, TypeVar

from cfactor.errors import (
    ActorNotFound,
    ActorStartFailed,
    CfactorError,
    ConfigError,
    MembershipUnavailable,
    NameTaken,
    RemoteActorError,
    wire_error_type,
)
from cfactor.wire import message

#: The leader role placement is elected for.
PLACEMENT = "placement"
#: The agent every member runs (activates actors here, answers for this member).
AGENT = "$cluster"
#: The placement actor, on the elected leader only.
PLACER = "$placement"
#: The store's record kind that keeps each named actor's spec (``ActorSpec``).
SPECS = "specs"

_NUMBER = (int, float)


def _check(msg: object, **expected: type | tuple[type, ...]) -> None:
    """Raises: TypeError: a field does not hold its type (``bool`` is no ``int``)."""
    for name, kind in expected.items():
        value = getattr(msg, name)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise TypeError(
                f"{type(msg).__name__}.{name} must be {kind}, got {type(value).__name__}"
            )


def _check_all_str(msg: object) -> None:
    _check(msg, **{field.name: str for field in fields(msg)})  # type: ignore[arg-type]


# -- asked of the $cluster agent (every member) ------------------------------------------


@message(name="cfactor.cluster.Activate")
@dataclass(frozen=True, slots=True)
class Activate:
    """Claim ``spec``'s name here and start it, within ``budget_s`` of reading this
    or not at all. Answer: ``Activated`` or ``Refused``."""

    spec: bytes  #: an encoded ``ActorSpec``
    budget_s: float

    def __post_init__(self) -> None:
        _check(self, spec=bytes, budget_s=_NUMBER)


@message(name="cfactor.cluster.Deactivate")
@dataclass(frozen=True, slots=True)
class Deactivate:
    """Stop the activation of ``name`` hosted here (if any). Answer: None."""

    name: str

    def __post_init__(self) -> None:
        _check_all_str(self)


@message(name="cfactor.cluster.HostReplica")
@dataclass(frozen=True, slots=True)
class HostReplica:
    """Start a replica here for the group on the member at ``owner``. Answer:
    ``ReplicaHosted`` or ``Refused``."""

    spec: bytes  #: an encoded ``ActorSpec`` (its name is the group's)
    in_flight: int
    owner: str

    def __post_init__(self) -> None:
        _check(self, spec=bytes, in_flight=int, owner=str)


@message(name="cfactor.cluster.Stats")
@dataclass(frozen=True, slots=True)
class Stats:
    """This member's figures for ``cfactor status``. Answer: a dict
    (``ClusterMember.stats``)."""


@message(name="cfactor.cluster.StoreQuery")
@dataclass(frozen=True, slots=True)
class StoreQuery:
    """Do you reach the store? (asked by a member that does not, docs/cluster.md).
    Answer: ``StoreDown`` or ``StoreUp``."""


# -- asked of $placement (the leader) --------------------------------------------------


@message(name="cfactor.cluster.Reserve")
@dataclass(frozen=True, slots=True)
class Reserve:
    """Step one of a spawn: choose a member for ``spec`` and remember the choice.
    Answer: ``Placed``, ``AlreadyPlaced`` (this same spawn succeeded before) or
    ``Refused``."""

    spec: bytes

    def __post_init__(self) -> None:
        _check(self, spec=bytes)


@message(name="cfactor.cluster.Confirm")
@dataclass(frozen=True, slots=True)
class Confirm:
    """Step three of a spawn: ``spec`` runs as ``epoch`` and is stored; re-place it
    from now on. Answer: None or ``Refused``."""

    spec: bytes
    epoch: int

    def __post_init__(self) -> None:
        _check(self, spec=bytes, epoch=int)


@message(name="cfactor.cluster.Unreserve")
@dataclass(frozen=True, slots=True)
class Unreserve:
    """Drop the reservation of ``name`` made by the spawn ``token``. Answer: None."""

    name: str
    token: str

    def __post_init__(self) -> None:
        _check_all_str(self)


@message(name="cfactor.cluster.Forget")
@dataclass(frozen=True, slots=True)
class Forget:
    """Never re-place ``name`` again (it is being removed). Answer: None."""

    name: str

    def __post_init__(self) -> None:
        _check_all_str(self)


@message(name="cfactor.cluster.Leaving")
@dataclass(frozen=True, slots=True)
class Leaving:
    """The member ``member_id`` is leaving: place nothing new there. Answer: None."""

    member_id: str

    def __post_init__(self) -> None:
        _check_all_str(self)


@message(name="cfactor.cluster.Reconcile")
@dataclass(frozen=True, slots=True)
class Reconcile:
    """Start re-placing remembered actors with no activation (placement tells itself
    this). Answer: how many were started."""


@message(name="cfactor.cluster.LoadReport")
@dataclass(frozen=True, slots=True)
class LoadReport:
    """A member's replica load, told every ``load_report_interval_s``."""

    member_id: str
    hosted: int  #: replicas running on that member, for any group
    groups: dict[str, list[int]]  #: its groups: name -> [depth, replicas]

    def __post_init__(self) -> None:
        _check(self, member_id=str, hosted=int, groups=dict)


@message(name="cfactor.cluster.ChooseReplica")
@dataclass(frozen=True, slots=True)
class ChooseReplica:
    """Pick the member for one more replica (least loaded). Answer: ``Placed`` or
    ``Refused``."""

    placement: Any  #: the placement's wire form (``placement_to_wire``) or None

    def __post_init__(self) -> None:
        _check(self, placement=(tuple, list, type(None)))


@message(name="cfactor.cluster.Loads")
@dataclass(frozen=True, slots=True)
class Loads:
    """The load reports placement holds, for ``cfactor status``. Answer: a dict."""


# -- answers ---------------------------------------------------------------------------


@message(name="cfactor.cluster.Placed")
@dataclass(frozen=True, slots=True)
class Placed:
    """Placement's choice: the member to go to."""

    member_id: str
    address: str

    def __post_init__(self) -> None:
        _check_all_str(self)


@message(name="cfactor.cluster.AlreadyPlaced")
@dataclass(frozen=True, slots=True)
class AlreadyPlaced:
    """The spawn with this token succeeded before: nothing more to do."""


@message(name="cfactor.cluster.Activated")
@dataclass(frozen=True, slots=True)
class Activated:
    """The actor runs on ``member_id`` at ``address`` as activation ``epoch``."""

    member_id: str
    address: str
    epoch: int

    def __post_init__(self) -> None:
        _check(self, member_id=str, address=str, epoch=int)


@message(name="cfactor.cluster.ReplicaHosted")
@dataclass(frozen=True, slots=True)
class ReplicaHosted:
    """A replica runs at ``address`` under the local name ``name``."""

    address: str
    name: str

    def __post_init__(self) -> None:
        _check_all_str(self)


@message(name="cfactor.cluster.StoreDown")
@dataclass(frozen=True, slots=True)
class StoreDown:
    """This member does not reach the store either."""


@message(name="cfactor.cluster.StoreUp")
@dataclass(frozen=True, slots=True)
class StoreUp:
    """This member reaches the store, since ``back_for_s`` seconds."""

    back_for_s: float

    def __post_init__(self) -> None:
        _check(self, back_for_s=_NUMBER)


@message(name="cfactor.cluster.Refused")
@dataclass(frozen=True, slots=True)
class Refused:
    """An expected failure as an answer: the error type's name and its message."""

    type_name: str
    message: str

    def __post_init__(self) -> None:
        _check_all_str(self)


#: What the ``$cluster`` agent is asked.
AgentRequest = Activate | Deactivate | HostReplica | Stats | StoreQuery
#: What ``$placement`` is asked or told.
PlacementRequest = (
    Reserve
    | Confirm
    | Unreserve
    | Forget
    | Leaving
    | Reconcile
    | LoadReport
    | ChooseReplica
    | Loads
)


#: The refusals a cluster actor's caller sees as themselves; any other error it
#: answers with (rebuilt through the wire table in cfactor.errors) is reported as
#: MembershipUnavailable, as the cluster's operations document.
_REFUSALS = (NameTaken, MembershipUnavailable, ConfigError, ActorNotFound, ActorStartFailed)


_A = TypeVar("_A")


def refusal(exc: CfactorError) -> Refused:
    """An expected failure as an answer (its wire name and message)."""
    if isinstance(exc, RemoteActorError):
        return Refused(exc.type_name.rpartition(".")[2], exc.message)
    return Refused(type(exc).__name__, str(exc))


def check_reply(reply: Any) -> None:
    """Raise the typed error a cluster actor answered with, if it did."""
    if isinstance(reply, Refused):
        cls = wire_error_type(reply.type_name)
        if cls is None or not issubclass(cls, _REFUSALS):
            cls = MembershipUnavailable
        raise cls(reply.message)


def expect(reply: Any, kind: type[_A]) -> _A:
    """``reply`` as the answer ``kind``; the typed error it carries if it is a refusal.

    Raises:
        MembershipUnavailable: Neither (a member of another version, or a bug).
    """
    if isinstance(reply, kind):
        return reply
    check_reply(reply)
    raise MembershipUnavailable(f"expected {kind.__name__}, got {reply!r:.100}")
