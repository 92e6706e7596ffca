"""Which transport connector a configuration asks for (blocking and asyncio).

Layer: L5 client (private). May import L0-L4. Builds connectors; connecting is the drivers'
business. This is the one place that turns an endpoint into a stream, so a pluggable connector
(``ClientConfig.connector``) or a client-side TLS start lands here.
"""

from __future__ import annotations

import ssl
import typing

from mailsdk.flows import TlsMode
from mailsdk.transport import (
    AsyncConnector,
    AsyncSocketConnector,
    AsyncTcpConnector,
    AsyncUnixConnector,
    Connector,
    SocketConnector,
    TcpConnector,
    UnixConnector,
)

if typing.TYPE_CHECKING:
    from mailsdk.config import ClientConfig

__all__ = ["async_connector", "connector"]


def connector(config: ClientConfig, context: ssl.SSLContext | None) -> Connector:
    """The blocking connector for ``config`` (implicit TLS wraps at connect)."""
    ep = config.endpoint
    implicit = context if config.tls_mode is TlsMode.IMPLICIT else None
    if ep.sock is not None:
        return SocketConnector(ep.sock, tls_context=implicit, server_hostname=config.verify_name)
    if ep.path is not None:
        return UnixConnector(ep.path, tls_context=implicit, server_hostname=config.verify_name)
    assert ep.host is not None
    return TcpConnector(
        ep.host,
        config.port,
        source_address=ep.source_address,
        tls_context=implicit,
        server_hostname=config.verify_name,
    )


def async_connector(config: ClientConfig, context: ssl.SSLContext | None) -> AsyncConnector:
    """The asyncio connector for ``config``."""
    ep = config.endpoint
    implicit = context if config.tls_mode is TlsMode.IMPLICIT else None
    if ep.sock is not None:
        return AsyncSocketConnector(
            ep.sock, tls_context=implicit, server_hostname=config.verify_name
        )
    if ep.path is not None:
        return AsyncUnixConnector(ep.path, tls_context=implicit, server_hostname=config.verify_name)
    assert ep.host is not None
    return AsyncTcpConnector(
        ep.host,
        config.port,
        source_address=ep.source_address,
        tls_context=implicit,
        server_hostname=config.verify_name,
    )
