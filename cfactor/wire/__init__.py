"""The wire format: envelopes to bytes and back (msgpack, versioned, size-limited).

Pure: no sockets, no clocks, no pickle. Transports hand frames to
:class:`MsgpackCodec` and get :class:`~cfactor.abc.Envelope` values back; whatever
the bytes, decoding raises only :class:`~cfactor.errors.ProtocolError` subclasses.
Dataclasses travel once registered with :func:`message`.
"""

from cfactor.wire.codec import DEFAULT_MAX_DEPTH as DEFAULT_MAX_DEPTH
from cfactor.wire.codec import DEFAULT_MAX_FRAME_SIZE as DEFAULT_MAX_FRAME_SIZE
from cfactor.wire.codec import VERSION as VERSION
from cfactor.wire.codec import MsgpackCodec as MsgpackCodec
from cfactor.wire.registry import MessageRegistry as MessageRegistry
from cfactor.wire.registry import default_registry as default_registry
from cfactor.wire.registry import message as message

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_FRAME_SIZE",
    "VERSION",
    "MessageRegistry",
    "MsgpackCodec",
    "default_registry",
    "message",
]
