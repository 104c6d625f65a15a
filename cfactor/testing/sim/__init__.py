"""Deterministic simulation of a whole cluster: seeded, on virtual time, with faults.

``run_seed(seed)`` runs members with the real cluster, autoscale and flow layers in one
process on ``SimLoop`` (virtual time, a seeded order of callbacks), over ``SimNetwork``
(the memory transport's network with seeded drops, duplicates, delays, partitions,
crashes and pauses) and the memory store (lease expiry, outages, slow watches), checks
the invariants in ``Ledger`` throughout, and returns a ``SeedResult`` with the trace
hash. ``python -m cfactor.testing.sim --seeds 200`` runs many; a failing seed prints the
command that replays it. ``SimConfig(workload=...)`` (or ``main(workload=...)``) runs
your own actors instead of the built-in mix. docs/testing.md has the whole story.
"""

from cfactor.testing.sim.cli import main
from cfactor.testing.sim.core import (
    Member,
    MemberCrashed,
    SeedResult,
    SimConfig,
    Simulation,
    Workload,
    run_seed,
)
from cfactor.testing.sim.ledger import Ledger, Violation
from cfactor.testing.sim.loop import MEMBER, SimLoop, SimulationError, Stuck
from cfactor.testing.sim.network import SimNetwork, Trace

__all__ = [
    "MEMBER",
    "Ledger",
    "Member",
    "MemberCrashed",
    "SeedResult",
    "SimConfig",
    "SimLoop",
    "SimNetwork",
    "Simulation",
    "SimulationError",
    "Stuck",
    "Trace",
    "Violation",
    "Workload",
    "main",
    "run_seed",
]
