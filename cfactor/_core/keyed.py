"""Replicated actors that route by key (``cf.Replicas(key=...)``).

A ``KeyedReplicaSet`` is a ``ReplicaSet`` (``cfactor/_core/replicas.py``: the bounded
backlog, blocked senders, ``load()``, drained scale-in) whose backlog is split into
partitions by a stable hash of each message's key, each served by one replica at a
time, so the messages of one key are handled in order.
"""

from __future__ import annotations

import zlib
from collections import deque
from functools import partial
from typing import TYPE_CHECKING, Any

from cfactor._core.cell import STOPPING
from cfactor._core.replicas import Done, Replica, ReplicaSet
from cfactor.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from cfactor._core.cell import ActorCell
    from cfactor._core.mailbox import Item
    from cfactor._core.remote_replica import RemoteReplica


#: How many partitions a keyed group hashes keys into. Partitions, not single keys, are
#: assigned to replicas, so the bookkeeping is bounded whatever the number of keys.
KEY_PARTITIONS = 256


def key_partition(key: object, name: str) -> int:
    """The partition of a key: crc32 of its bytes, the same in every process and run
    (Python's ``hash()`` of a str is randomized per process).

    Raises:
        ConfigError: ``key`` is not a str, bytes or int (a bool is refused too).
    """
    if isinstance(key, str):
        data = key.encode("utf-8", "surrogatepass")
    elif isinstance(key, bytes):
        data = key
    elif isinstance(key, int) and not isinstance(key, bool):
        data = b"%d" % key
    else:
        raise ConfigError(
            f"the key function of {name!r} must return a str, bytes or int, "
            f"got {type(key).__name__}: {key!r:.100}"
        )
    return zlib.crc32(data) % KEY_PARTITIONS


class Partition:
    """The keys that hash to one partition: their waiting messages, and who serves them.

    ``target`` is the replica that takes the partition's next messages. ``owner`` is
    the replica holding its ``held`` messages; while they are held by a replica other
    than the target (the partition was just moved), the target waits, so the
    messages of one key are handled in order even across a change of the replica set.
    """

    __slots__ = ("held", "in_ready", "owner", "queue", "target")

    def __init__(self) -> None:
        self.queue: deque[Item] | None = None
        self.target: Replica | None = None
        self.owner: Replica | None = None
        self.held = 0
        #: True while it sits in its target's ``ready`` deque.
        self.in_ready = False


class KeyedDone(Done):
    """A keyed message's ``Done``: also frees the message's partition."""

    __slots__ = ("partition",)

    group: KeyedReplicaSet

    def __init__(
        self, group: KeyedReplicaSet, replica: Replica, partition: Partition, reply: Any
    ) -> None:
        Done.__init__(self, group, replica, reply)
        self.partition = partition

    def release(self) -> None:
        self.group.finished_keyed(self.replica, self.partition)


class KeyedReplicaSet(ReplicaSet):
    """A replicated actor that routes by key (``cf.Replicas(key=...)``).

    The backlog is split into ``KEY_PARTITIONS`` partitions by a stable hash of each
    message's key; each partition is served by one replica at a time, which pulls its
    messages (at most ``in_flight`` held, as unkeyed). So the messages of one key are
    handled by one replica, one at a time, in the order they entered the backlog.

    When the replica set changes, as few partitions as possible move (scale-out takes
    some from every replica, scale-in hands the drained replica's partitions to the
    rest), and a moved partition's new replica starts on it only after the old one has
    finished the partition's messages it held. The bound, blocked senders, ``load()``
    and drained scale-in are those of the unkeyed group.
    """

    __slots__ = ("key", "partitions", "waiting")

    def __init__(self, *args: Any, key: Callable[[Any], object], **kwargs: Any) -> None:
        """``ReplicaSet``'s arguments, and the key function."""
        if not callable(key):
            raise ConfigError(f"key must be a function of the message, got {key!r}")
        ReplicaSet.__init__(self, *args, **kwargs)
        self.key = key
        self.partitions = [Partition() for _ in range(KEY_PARTITIONS)]
        #: Messages waiting in the partitions (the backlog's depth).
        self.waiting = 0

    # -- the backlog ----------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        return self.waiting

    def has_room(self) -> bool:
        return not self.waiters and self.waiting < self.capacity

    def partition_of(self, message: Any) -> Partition:
        """The partition of ``message``'s key.

        Raises:
            ConfigError: The key function raised, or returned no str, bytes or int.
        """
        try:
            key = self.key(message)
        except Exception as exc:
            raise ConfigError(
                f"the key function of {self.name!r} raised {exc!r} on {message!r:.100}"
            ) from exc
        return self.partitions[key_partition(key, self.name)]

    def enqueue(self, partition: Partition, item: Item) -> None:
        queue = partition.queue
        if queue is None:
            queue = partition.queue = deque()
        queue.append(item)
        waiting = self.waiting = self.waiting + 1
        if waiting > self.peak:  # noqa: PLR1730 - as in Mailbox.append
            self.peak = waiting
        if not partition.in_ready:
            self._mark_ready(partition)

    def append(self, item: Item) -> None:
        """A blocked sender's message, admitted: ``((partition, message), reply)``."""
        (partition, message), reply = item
        self.enqueue(partition, (message, reply))

    def take_all(self) -> list[Item]:
        items: list[Item] = []
        for partition in self.partitions:
            queue = partition.queue
            if queue:
                items.extend(queue)
                queue.clear()
            partition.in_ready = False
        for replica in self.replicas:
            if replica.ready:
                replica.ready.clear()
        self.waiting = 0
        waiters = self.waiters
        self.waiters = None
        while waiters:
            ((_partition, message), reply), admitted = waiters.popleft()
            if not admitted.done():
                items.append((message, reply))
                admitted.set_result(None)
        return items

    def entry(self, message: Any, reply: Any) -> Item:
        """``((partition, message), reply)``: ``append`` files it under its partition.

        Raises:
            ConfigError: The key function raised, or returned no str, bytes or int.
        """
        return ((self.partition_of(message), message), reply)

    # -- dispatching ----------------------------------------------------------------------------

    def _mark_ready(self, partition: Partition) -> None:
        """Offer a partition with waiting messages to its target, if it may take them."""
        target = partition.target
        if target is not None and (partition.held == 0 or partition.owner is target):
            ready = target.ready
            assert ready is not None
            ready.append(partition)
            partition.in_ready = True

    def dispatch(self) -> None:
        """Let every replica with a free slot pull from its ready partitions."""
        limit = self.in_flight
        fed = True
        while fed and self.waiting:
            fed = False
            for replica in self.replicas:
                if (
                    replica.ready
                    and replica.held < limit
                    and not replica.draining
                    and replica.cell.state < STOPPING
                ):
                    fed = self._feed(replica, limit) or fed

    def _feed(self, replica: Replica, limit: int) -> bool:
        ready = replica.ready
        assert ready is not None
        cell = replica.cell
        took = False
        while ready and replica.held < limit:
            partition = ready.popleft()
            queue = partition.queue
            assert queue  # a ready partition has messages
            message, reply = queue.popleft()
            self.waiting -= 1
            if queue:
                ready.append(partition)  # round robin over the replica's partitions
            else:
                partition.in_ready = False
            partition.owner = replica
            partition.held += 1
            replica.held += 1
            cell.append((message, KeyedDone(self, replica, partition, reply)))
            took = True
            if self.waiters:
                self.admit_waiter()
        if took:
            cell.schedule()
        return took

    def finished_keyed(self, replica: Replica, partition: Partition) -> None:
        replica.held -= 1
        partition.held -= 1
        self.processed += 1
        if partition.held == 0 and partition.queue and not partition.in_ready:
            self._mark_ready(partition)  # its old replica is done with it: hand it over
        if replica.draining and replica.held == 0:
            self._retire(replica)
        self.dispatch()

    # -- the replica set ------------------------------------------------------------------------

    def _new_replica(self, cell: ActorCell | RemoteReplica) -> Replica:
        replica = Replica(cell)
        replica.ready = deque()
        cell.on_stopped = [*(cell.on_stopped or ()), partial(self._replica_stopped, replica)]
        return replica

    def _replica_stopped(self, replica: Replica) -> None:
        """A replica stopped for good (drained, or its supervisor gave up on it)."""
        if replica in self.replicas:
            self.replicas.remove(replica)
        if self.state < STOPPING:
            self._replicas_changed()

    def _replicas_changed(self) -> None:
        self._rebalance()
        self.dispatch()

    def _rebalance(self) -> None:
        """Give every partition a target among the replicas taking work, moving few.

        Each replica ends with ``KEY_PARTITIONS // n`` or one more partitions; those
        that have more give up their surplus, and partitions of draining or stopped
        replicas go to those that have fewer.
        """
        active = [r for r in self.replicas if not r.draining and r.cell.state < STOPPING]
        owned: dict[Replica, list[Partition]] = {r: [] for r in active}
        homeless: list[Partition] = []
        for partition in self.partitions:
            mine = owned.get(partition.target) if partition.target is not None else None
            if mine is None:
                homeless.append(partition)
            else:
                mine.append(partition)
        if not active:
            for partition in homeless:
                self._move(partition, None)
            return
        base, extra = divmod(KEY_PARTITIONS, len(active))
        # The one-more quotas go to those that hold most already: fewer moves.
        ranked = sorted(active, key=lambda r: -len(owned[r]))
        quota = {r: base + (1 if i < extra else 0) for i, r in enumerate(ranked)}
        for replica in active:
            mine = owned[replica]
            while len(mine) > quota[replica]:
                homeless.append(mine.pop())
        for replica in active:
            mine = owned[replica]
            while len(mine) < quota[replica]:
                partition = homeless.pop()
                self._move(partition, replica)
                mine.append(partition)

    def _move(self, partition: Partition, target: Replica | None) -> None:
        old = partition.target
        if old is target:
            return
        if partition.in_ready:
            assert old is not None
            assert old.ready is not None
            old.ready.remove(partition)
            partition.in_ready = False
        partition.target = target
        if partition.queue:
            self._mark_ready(partition)
