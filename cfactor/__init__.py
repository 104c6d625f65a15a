"""cfactor: an actor-model runtime on asyncio.

Write a program once as actors (and, later, flows); run it in one process, across
processes, or on a cluster::

    import cfactor as cf

    class Counter(cf.Actor):
        def __init__(self, start: int = 0) -> None:
            self.n = start

        async def receive(self, message):
            match message:
                case ("add", k):
                    self.n += k
                case "get":
                    return self.n

    async def main():
        async with cf.ActorSystem() as system:
            ref = await system.spawn(Counter, 5, name="counter")
            await ref.tell(("add", 2))
            print(await ref.ask("get"))   # 7

    cf.run(main)
"""

from typing import TYPE_CHECKING

from cfactor._core import Actor as Actor
from cfactor._core import ActorRef as ActorRef
from cfactor._core import ActorSystem as ActorSystem
from cfactor._core import MailboxStatistics as MailboxStatistics
from cfactor._core import Restart as Restart
from cfactor._core import Strategy as Strategy
from cfactor._core import Supervision as Supervision
from cfactor._core import SystemStatistics as SystemStatistics
from cfactor._lazy import lazy_attributes
from cfactor._run import run as run
from cfactor.autoscale import Replicas as Replicas
from cfactor.cluster import Cluster as Cluster
from cfactor.cluster import Labels as Labels
from cfactor.cluster import Pin as Pin
from cfactor.errors import ActorError as ActorError
from cfactor.errors import ActorNotFound as ActorNotFound
from cfactor.errors import ActorStartFailed as ActorStartFailed
from cfactor.errors import ActorStopped as ActorStopped
from cfactor.errors import AskTimeout as AskTimeout
from cfactor.errors import CfactorError as CfactorError
from cfactor.errors import ConfigError as ConfigError
from cfactor.errors import DeliveryError as DeliveryError
from cfactor.errors import FlowError as FlowError
from cfactor.errors import FrameTooLarge as FrameTooLarge
from cfactor.errors import MailboxFull as MailboxFull
from cfactor.errors import MalformedFrame as MalformedFrame
from cfactor.errors import MembershipError as MembershipError
from cfactor.errors import MembershipUnavailable as MembershipUnavailable
from cfactor.errors import MemberUnreachable as MemberUnreachable
from cfactor.errors import MessageNotSerializable as MessageNotSerializable
from cfactor.errors import NameTaken as NameTaken
from cfactor.errors import NodeFailed as NodeFailed
from cfactor.errors import ProtocolError as ProtocolError
from cfactor.errors import RemoteActorError as RemoteActorError
from cfactor.errors import SpawnOutcomeUnknown as SpawnOutcomeUnknown
from cfactor.errors import StepFailed as StepFailed
from cfactor.errors import SupervisionError as SupervisionError
from cfactor.errors import SystemClosed as SystemClosed
from cfactor.errors import UnsupportedVersion as UnsupportedVersion
from cfactor.errors import WorkerLost as WorkerLost
from cfactor.security import Curve as Curve
from cfactor.security import EtcdTLS as EtcdTLS

NodeUnreachable = MemberUnreachable
"""Deprecated: the old name of ``MemberUnreachable`` (the same class)."""

if TYPE_CHECKING:
    from cfactor.flow import App as App
    from cfactor.flow import Auto as Auto
    from cfactor.flow import Context as Context
    from cfactor.flow import RunResult as RunResult
    from cfactor.flow import shell as shell

__version__ = "0.1.0"

#: The dataflow layer loads when a program first uses it (``cf.App``): a program of
#: plain actors does not load the flow driver, its threads or its HTTP endpoint.
_LAZY = {
    "App": "cfactor.flow",
    "Auto": "cfactor.flow",
    "Context": "cfactor.flow",
    "RunResult": "cfactor.flow",
    "shell": "cfactor.flow",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = [
    "Actor",
    "ActorError",
    "ActorNotFound",
    "ActorRef",
    "ActorStartFailed",
    "ActorStopped",
    "ActorSystem",
    "App",
    "AskTimeout",
    "Auto",
    "CfactorError",
    "Cluster",
    "ConfigError",
    "Context",
    "Curve",
    "DeliveryError",
    "EtcdTLS",
    "FlowError",
    "FrameTooLarge",
    "Labels",
    "MailboxFull",
    "MailboxStatistics",
    "MalformedFrame",
    "MemberUnreachable",
    "MembershipError",
    "MembershipUnavailable",
    "MessageNotSerializable",
    "NameTaken",
    "NodeFailed",
    "NodeUnreachable",
    "Pin",
    "ProtocolError",
    "RemoteActorError",
    "Replicas",
    "Restart",
    "RunResult",
    "SpawnOutcomeUnknown",
    "StepFailed",
    "Strategy",
    "Supervision",
    "SupervisionError",
    "SystemClosed",
    "SystemStatistics",
    "UnsupportedVersion",
    "WorkerLost",
    "run",
    "shell",
]
