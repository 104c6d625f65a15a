"""The closed loop for one replicated actor: observe, decide, apply.

Every ``report_interval_s`` (on the system's clock) the controller reads the group's
load — the whole backlog, including waiting senders' messages — feeds it to the pure
``Autoscaler``, and applies a changed decision with ``scale_to`` (adding replicas, or
draining the surplus). Every decision that changes the count is logged with its
reason and kept for ``cfactor status``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

from cfactor.autoscale.policy import Autoscaler, Decision, Observation
from cfactor.errors import CfactorError

if TYPE_CHECKING:
    from cfactor.abc import Cancellable, Clock, ReplicaGroup
    from cfactor.autoscale.config import Replicas

log = logging.getLogger("cfactor.autoscale")

HISTORY = 100


class Controller:
    """Scales one ``ReplicaGroup`` by its ``Replicas`` policy until closed."""

    def __init__(
        self,
        group: ReplicaGroup,
        config: Replicas,
        clock: Clock,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.group = group
        self.config = config
        self.autoscaler = Autoscaler(config)
        self.clock = clock
        self.loop = loop
        #: The decisions that changed the replica count, newest last.
        self.decisions: deque[Decision] = deque(maxlen=HISTORY)
        self._timer: Cancellable | None = None
        self._applying: asyncio.Task[None] | None = None
        self._closed = False
        self._next_at = 0.0

    def start(self) -> None:
        self._next_at = self.clock.now() + self.config.report_interval_s
        self._timer = self.clock.call_later(self.config.report_interval_s, self._tick)

    @property
    def last(self) -> Decision | None:
        """The latest decision, changing the count or not."""
        return self.autoscaler.last

    def _tick(self) -> None:
        if self._closed:
            return
        # Reports on an absolute schedule, stamped with their scheduled time: timer
        # jitter must not make two reports one window apart look a hair closer, which
        # would cost a whole report interval in the policy's window checks.
        at = self._next_at
        interval = self.config.report_interval_s
        self._next_at = max(at + interval, self.clock.now())
        self._timer = self.clock.call_later(self._next_at - self.clock.now(), self._tick)
        if self._applying is not None and not self._applying.done():
            return  # the last change is still being applied; observe the result next time
        depth, replicas = self.group.load()
        decision = self.autoscaler.observe(Observation(at, depth, replicas))
        if decision.replicas != replicas:
            self.decisions.append(decision)
            log.info("autoscale %r: %s", self.group.name, decision.reason)
            self._applying = self.loop.create_task(self._apply(decision.replicas))

    async def _apply(self, count: int) -> None:
        try:
            await self.group.scale_to(count)
        except CfactorError as exc:
            log.warning("autoscale %r: scaling to %d failed: %r", self.group.name, count, exc)

    async def aclose(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._applying is not None:
            await asyncio.gather(self._applying, return_exceptions=True)


async def start_controller(config: Replicas, group: ReplicaGroup, clock: Clock) -> Controller:
    """Attach a running controller to ``group`` (``Replicas.start`` calls this)."""
    controller = Controller(group, config, clock, asyncio.get_running_loop())
    controller.start()
    return controller
