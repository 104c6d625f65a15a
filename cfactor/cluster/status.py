"""This member's figures for ``cfactor status``: what the ``$cluster`` agent answers to
``Stats()``. Read-only: it reports the other parts' state and changes nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cfactor._core.cell import STOPPING
from cfactor._core.keyed import KeyedReplicaSet
from cfactor._core.remote_replica import RemoteReplica
from cfactor.cluster.messages import PLACEMENT

if TYPE_CHECKING:
    from cfactor._core.replicas import ReplicaSet
    from cfactor.cluster.runtime import ClusterMember


def decision_stats(decision: Any, now: float) -> dict[str, Any] | None:
    """An autoscaler ``Decision`` for ``cfactor status`` (its age, not its clock time)."""
    if decision is None:
        return None
    return {
        "replicas": decision.replicas,
        "direction": decision.direction,
        "reason": decision.reason,
        "age_s": round(max(0.0, now - decision.at), 3),
    }


def group_stats(group: ReplicaSet, now: float) -> dict[str, Any]:
    """One replicated actor for ``cfactor status``: its replicas, its backlog, and
    what its autoscaler decided last (and last changed), with the reason."""
    stats = group.statistics()
    depth, active = group.load()
    controller = group.controller
    decisions = getattr(controller, "decisions", None)
    where: dict[str, int] = {}
    for replica in group.replicas:
        if replica.draining or replica.cell.state >= STOPPING:
            continue
        cell = replica.cell
        address = cell.address if isinstance(cell, RemoteReplica) else group.system.address
        where[address] = where.get(address, 0) + 1
    return {
        "name": group.name,
        "replicas": active,
        "draining": sum(1 for r in group.replicas if r.draining),
        "backlog": group.depth,
        "depth": depth,
        "capacity": stats.capacity,
        "processed": stats.processed,
        "keyed": isinstance(group, KeyedReplicaSet),
        "where": where,
        "last": decision_stats(getattr(controller, "last", None), now),
        "last_change": decision_stats(decisions[-1] if decisions else None, now),
    }


def member_stats(member: ClusterMember) -> dict[str, Any]:
    """This member's figures for ``cfactor status`` (the runtime's own ``$`` services
    are not counted as actors)."""
    system = member.system
    named = []
    actors = depth = 0
    for name, cell in system.hosting.cells.items():
        if name.startswith("$") and not name[1:].isdigit():
            continue  # a runtime service, not a user's actor
        actors += 1
        depth += cell.depth
        activation = member.hosted.get(name)
        if activation is not None:
            named.append(
                {
                    "name": name,
                    "depth": cell.depth,
                    "restarts": cell.restarts,
                    "epoch": activation.epoch,
                }
            )
    stats = system.statistics()
    return {
        "member_id": member.member_id,
        "address": system.address,
        "actors": actors,
        "depth": depth,
        "named": named,
        "groups": [
            group_stats(group, system.clock.now()) for group in system.hosting.groups.values()
        ],
        "dead_letters": stats.dead_letters,
        "restarts": stats.restarts,
        "hosted_replicas": len(member.replicas.hosted),
        "orphan_claims_released": member.activations.orphans_released,
        "held_tells_dropped": member.leave.held_dropped,
        "leader": member.membership.leader(PLACEMENT) == member.member_id,
    }
