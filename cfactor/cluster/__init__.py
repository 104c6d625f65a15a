"""The cluster layer: membership-backed directory, placement and re-placement.

``cf.Cluster`` is the configuration an ``ActorSystem`` joins with; ``cf.Pin`` and
``cf.Labels`` say where a named actor may be placed.
"""

from cfactor.cluster.config import Cluster as Cluster
from cfactor.cluster.config import Labels as Labels
from cfactor.cluster.config import Pin as Pin
