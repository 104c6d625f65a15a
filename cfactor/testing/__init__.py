"""Helpers for testing code built on cfactor (and cfactor itself).

``ManualClock`` is a ``cf.abc.Clock`` whose time moves only when the test says so, so
timeouts and restart-intensity windows are tested exactly, without sleeping.
``MemoryNetwork`` and ``MemoryTransport`` run several members in one process.
``check_transport`` and ``check_membership`` are the conformance suites a third-party
backend can run (docs/testing.md).
"""

from cfactor.testing._check_membership import MEMBERSHIP_CHECKS, MembershipKit, check_membership
from cfactor.testing._check_transport import TRANSPORT_CHECKS, TransportKit, check_transport
from cfactor.testing.manual import ManualClock, ManualTimer, settle
from cfactor.testing.memory import MemoryNetwork, MemoryTransport

__all__ = [
    "MEMBERSHIP_CHECKS",
    "TRANSPORT_CHECKS",
    "ManualClock",
    "ManualTimer",
    "MembershipKit",
    "MemoryNetwork",
    "MemoryTransport",
    "TransportKit",
    "check_membership",
    "check_transport",
    "settle",
]
