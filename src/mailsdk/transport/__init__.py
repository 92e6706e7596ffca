"""Byte streams to SMTP/LMTP servers: TCP, unix sockets, implicit TLS and STARTTLS, sync and async.

Layer: L3 (transport). May import L0 (``mailsdk.errors``, ``mailsdk._secret``), attrs,
cryptography and the standard library; must never import ``mailsdk.protocol``, ``esmtp``,
``auth``, ``flows``, ``telemetry`` or ``client``.

Drivers talk to a :class:`Stream` / :class:`AsyncStream` obtained from a :class:`Connector` /
:class:`AsyncConnector`; every failure is a :mod:`mailsdk.errors` transport error (connect
refused -> ``ConnectError``, deadlines -> ``ConnectTimeout``/``ReadTimeout``/``WriteTimeout``,
resets -> ``ConnectionLost``, certificate problems -> ``TLSError``, proxies -> ``ProxyError``).

TCP connectors resolve and connect with Happy Eyeballs (RFC 8305) inside one connect deadline;
proxy connectors (SOCKS5, SOCKS4a, HTTP CONNECT) return a plaintext tunnel, on which the client
starts TLS.
"""

from __future__ import annotations

from mailsdk.transport._addresses import (
    CONNECTION_ATTEMPT_DELAY,
    AddrInfo,
    Resolver,
    system_resolver,
)
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
    connector_kind,
    parse_host_port,
)
from mailsdk.transport.proxies import (
    AsyncProxyConnector,
    ProxyConnector,
    ProxyScheme,
    ProxyUrl,
    proxy_from_env,
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
    "AddrInfo",
    "AsyncConnector",
    "AsyncProxyConnector",
    "AsyncSocketConnector",
    "AsyncSocketStream",
    "AsyncStream",
    "AsyncTcpConnector",
    "AsyncUnixConnector",
    "CLOSE_GRACE",
    "CONNECTION_ATTEMPT_DELAY",
    "ClientCertificate",
    "Connector",
    "PeerAddress",
    "ProxyConnector",
    "ProxyScheme",
    "ProxyUrl",
    "Resolver",
    "SocketConnector",
    "SocketStream",
    "Stream",
    "StreamInfo",
    "TLS_EXPORTER",
    "TLS_SERVER_END_POINT",
    "TcpConnector",
    "TlsSettings",
    "TransportKind",
    "UnixConnector",
    "connector_kind",
    "parse_host_port",
    "proxy_from_env",
    "system_resolver",
    "tls_server_end_point",
]
