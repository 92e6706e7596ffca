"""Byte streams to SMTP/LMTP servers: TCP, unix sockets, implicit TLS and STARTTLS, sync and async.

Layer: L3 (transport). May import L0 (``mailsdk.errors``, ``mailsdk._secret``), attrs,
cryptography and the standard library; must never import ``mailsdk.protocol``, ``esmtp``,
``auth``, ``flows``, ``telemetry`` or ``client``.

Drivers talk to a :class:`Stream` / :class:`AsyncStream` obtained from a :class:`Connector` /
:class:`AsyncConnector`; every failure is a :mod:`mailsdk.errors` transport error (connect
refused -> ``ConnectError``, deadlines -> ``ConnectTimeout``/``ReadTimeout``/``WriteTimeout``,
resets -> ``ConnectionLost``, certificate problems -> ``TLSError``).
"""

from __future__ import annotations

from mailsdk.transport.asyncio_streams import (
    CLOSE_GRACE,
    AsyncSocketConnector,
    AsyncSocketStream,
    AsyncTcpConnector,
    AsyncUnixConnector,
)
from mailsdk.transport.base import (
    AsyncConnector,
    AsyncStream,
    Connector,
    PeerAddress,
    Stream,
    StreamInfo,
    TransportKind,
    parse_host_port,
)
from mailsdk.transport.sockets import SocketConnector, SocketStream, TcpConnector, UnixConnector
from mailsdk.transport.tls import (
    TLS_EXPORTER,
    TLS_SERVER_END_POINT,
    ClientCertificate,
    TlsSettings,
    tls_server_end_point,
)

__all__ = [
    "CLOSE_GRACE",
    "TLS_EXPORTER",
    "TLS_SERVER_END_POINT",
    "AsyncConnector",
    "AsyncSocketConnector",
    "AsyncSocketStream",
    "AsyncStream",
    "AsyncTcpConnector",
    "AsyncUnixConnector",
    "ClientCertificate",
    "Connector",
    "PeerAddress",
    "SocketConnector",
    "SocketStream",
    "Stream",
    "StreamInfo",
    "TcpConnector",
    "TlsSettings",
    "TransportKind",
    "UnixConnector",
    "parse_host_port",
    "tls_server_end_point",
]
