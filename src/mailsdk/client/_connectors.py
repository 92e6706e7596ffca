"""Which connector a configuration asks for, and opening a session's stream (blocking, asyncio).

Layer: L5 client (private). May import L0-L4. This is the one place that turns an endpoint into
a stream. Connectors return *plaintext* streams (a TCP connection, a unix socket, a proxy
tunnel, the caller's own ``ClientConfig.connector``); the client starts TLS itself, implicit
TLS included, so every connector gets the same TLS policy and the certificate is checked
against ``ClientConfig.verify_name``: the mail server's name, never a proxy's. One connect
deadline covers resolving, connecting, a proxy handshake and the implicit TLS handshake.

``mailsdk.connect`` (client, host, port) is raised as an audit event (PEP 578) before a
connection is opened, as smtplib raises ``smtplib.connect``.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
import time
import typing

from mailsdk.errors import ConfigurationError
from mailsdk.flows import TlsMode
from mailsdk.transport import (
    AsyncConnector,
    AsyncProxyConnector,
    AsyncSocketConnector,
    AsyncSocketStream,
    AsyncStream,
    AsyncTcpConnector,
    AsyncUnixConnector,
    Connector,
    ProxyConnector,
    SocketConnector,
    Stream,
    TcpConnector,
    UnixConnector,
    connector_kind,
)

if typing.TYPE_CHECKING:
    from mailsdk.config import ClientConfig

__all__ = ["async_connector", "audit_connect", "connector", "open_stream", "open_stream_async"]

#: Longer timeouts than this mean "no limit" (the transports treat them the same way).
_NO_LIMIT: typing.Final = 1e8


def audit_connect(client: object, config: ClientConfig) -> None:
    """Raise ``mailsdk.connect`` with smtplib's shape: ``(client, host, port)``.

    The host and port are the mail server's (also through a proxy); a unix endpoint gives its
    path and ``None``, a caller-supplied socket ``None, None``.
    """
    ep = config.endpoint
    if ep.host is not None:
        sys.audit("mailsdk.connect", client, ep.host, config.port)
    else:
        sys.audit("mailsdk.connect", client, ep.path, None)


def connector(config: ClientConfig) -> Connector:
    """The blocking connector for ``config``; it returns a plaintext stream.

    Raises:
        ConfigurationError: ``config.connector`` is an asyncio connector.
    """
    custom = config.connector
    if custom is not None:
        if connector_kind(custom) == "blocking":
            return typing.cast("Connector", custom)
        raise ConfigurationError("the blocking client needs a blocking Connector")
    ep = config.endpoint
    if ep.sock is not None:
        return SocketConnector(ep.sock)
    if ep.path is not None:
        return UnixConnector(ep.path)
    assert ep.host is not None
    if config.proxy is not None:
        return ProxyConnector(config.proxy, ep.host, config.port, source_address=ep.source_address)
    return TcpConnector(ep.host, config.port, source_address=ep.source_address)


def async_connector(config: ClientConfig) -> AsyncConnector:
    """The asyncio connector for ``config``; it returns a plaintext stream.

    Raises:
        ConfigurationError: ``config.connector`` is a blocking connector.
    """
    custom = config.connector
    if custom is not None:
        if connector_kind(custom) == "async":
            return typing.cast("AsyncConnector", custom)
        raise ConfigurationError("the asyncio client needs an AsyncConnector")
    ep = config.endpoint
    if ep.sock is not None:
        return AsyncSocketConnector(ep.sock)
    if ep.path is not None:
        return AsyncUnixConnector(ep.path)
    assert ep.host is not None
    if config.proxy is not None:
        return AsyncProxyConnector(
            config.proxy, ep.host, config.port, source_address=ep.source_address
        )
    return AsyncTcpConnector(ep.host, config.port, source_address=ep.source_address)


def _left(timeout: float | None, started: float, now: float) -> float | None:
    if timeout is None or timeout > _NO_LIMIT:
        return None
    return max(0.0, timeout - (now - started))


def _implicit_context(config: ClientConfig, context: ssl.SSLContext | None) -> ssl.SSLContext:
    if context is None:  # pragma: no cover - TlsContextCache gives one for every TLS mode
        raise ConfigurationError("implicit TLS needs a TLS context")
    return context


def open_stream(client: object, config: ClientConfig, context: ssl.SSLContext | None) -> Stream:
    """Connect (audited) and, for implicit TLS, start TLS: all within the connect deadline.

    Raises:
        ConnectError, ConnectTimeout, ProxyError, TLSError: the stream could not be opened.
        ConfigurationError: a supplied socket already runs TLS while implicit TLS is asked.
    """
    audit_connect(client, config)
    timeout = config.timeouts.connect
    started = time.monotonic()
    stream = connector(config).connect(timeout)
    if config.tls_mode is not TlsMode.IMPLICIT:
        return stream
    try:
        if stream.is_tls:
            raise ConfigurationError("the socket already uses TLS; use tls_mode none or starttls")
        tls = _implicit_context(config, context)
        left = _left(timeout, started, time.monotonic())
        return stream.start_tls(tls, config.verify_name, left)
    except BaseException:
        stream.close()
        raise


async def open_stream_async(
    client: object, config: ClientConfig, context: ssl.SSLContext | None
) -> AsyncStream:
    """The asyncio twin of :func:`open_stream`."""
    audit_connect(client, config)
    timeout = config.timeouts.connect
    loop = asyncio.get_running_loop()
    started = loop.time()
    stream = await async_connector(config).connect(timeout)
    if config.tls_mode is not TlsMode.IMPLICIT:
        return stream
    try:
        if stream.is_tls:
            raise ConfigurationError("the socket already uses TLS; use tls_mode none or starttls")
        tls = _implicit_context(config, context)
        left = _left(timeout, started, loop.time())
        if isinstance(stream, AsyncSocketStream):
            # The greeting may follow the handshake at once: not a STARTTLS injection.
            return await stream.start_tls(tls, config.verify_name, left, implicit=True)
        return await stream.start_tls(tls, config.verify_name, left)
    except BaseException:
        await stream.aclose()
        raise
