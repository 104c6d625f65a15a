"""The ZeroMQ transport for cfactor (``tcp://`` and ``ipc://`` addresses).

Found by URL scheme through the ``cfactor.transports`` entry-point group; the core
never imports this package. See ``docs/transport.md``.
"""

from cfactor_zmq._transport import ZmqTransport as ZmqTransport
from cfactor_zmq._transport import generate_keypair as generate_keypair

__all__ = ["ZmqTransport", "generate_keypair"]
