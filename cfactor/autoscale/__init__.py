"""Autoscaling of replicated actors: the policy that turns backlog depths into counts.

``Replicas`` is the user's configuration (re-exported as ``cf.Replicas``); the
``Autoscaler`` is the pure policy the runtime feeds with ``Observation`` reports and
whose ``Decision`` it applies. See docs/autoscale.md.
"""

from cfactor.autoscale.config import Replicas as Replicas
from cfactor.autoscale.policy import Autoscaler as Autoscaler
from cfactor.autoscale.policy import Decision as Decision
from cfactor.autoscale.policy import Direction as Direction
from cfactor.autoscale.policy import Observation as Observation

__all__ = ["Autoscaler", "Decision", "Direction", "Observation", "Replicas"]
