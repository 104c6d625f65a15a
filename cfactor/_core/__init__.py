"""The runtime's core: actors, refs, mailboxes, supervision, the system.

It imports only ``cfactor.errors`` and ``cfactor.abc`` from the rest of the package,
and nothing of ZeroMQ, msgpack or etcd (a test enforces this).
"""

from cfactor._core.actor import Actor as Actor
from cfactor._core.mailbox import MailboxStatistics as MailboxStatistics
from cfactor._core.ref import ActorRef as ActorRef
from cfactor._core.supervision import Restart as Restart
from cfactor._core.supervision import Strategy as Strategy
from cfactor._core.supervision import Supervision as Supervision
from cfactor._core.system import ActorSystem as ActorSystem
from cfactor._core.system import SystemStatistics as SystemStatistics
