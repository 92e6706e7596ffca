"""asyncio connectors over TCP, unix and caller-supplied sockets, and their stream.

Layer: L3 (transport). May import L0 (``mailsdk.errors``) and the standard library only; must
never import ``mailsdk.protocol``, ``esmtp``, ``auth``, ``flows``, ``telemetry`` or ``client``.

Connections come from :meth:`loop.create_connection` / :meth:`loop.create_unix_connection`
with :class:`~mailsdk.transport._async_protocol.StreamProtocol` (not ``StreamReader``, see
there why), after Happy Eyeballs (``_async_dialer.py``) for TCP. The stream itself,
:class:`AsyncSocketStream`, lives in ``_async_stream.py`` and is re-exported here.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import typing

from mailsdk.errors import ConfigurationError, ConnectError, LocalProtocolError
from mailsdk.transport._addresses import CONNECTION_ATTEMPT_DELAY, Resolver
from mailsdk.transport._async_dialer import open_tcp_async
from mailsdk.transport._async_protocol import StreamProtocol
from mailsdk.transport._async_stream import CLOSE_GRACE, AsyncSocketStream, address_of, refuse_spent
from mailsdk.transport._errors import Operation, map_errors
from mailsdk.transport.base import (
    AsyncConnector,
    AsyncStream,
    TransportKind,
    check_tcp_target,
    format_address,
)
from mailsdk.transport.tls import require_server_hostname

__all__ = [
    "CLOSE_GRACE",
    "AsyncSocketConnector",
    "AsyncSocketStream",
    "AsyncTcpConnector",
    "AsyncUnixConnector",
]


OpenResult: typing.TypeAlias = tuple[asyncio.Transport, StreamProtocol]


async def _open(
    opener: typing.Callable[[asyncio.AbstractEventLoop], typing.Awaitable[OpenResult]],
    target: str | None,
    timeout: float | None,
    kind: TransportKind | None,
) -> AsyncSocketStream:
    async with map_errors(Operation.CONNECT, target):
        refuse_spent(timeout)
        async with asyncio.timeout(timeout):
            transport, protocol = await opener(asyncio.get_running_loop())
    return AsyncSocketStream(transport, protocol, kind=kind)


def _over_socket(
    sock: socket.socket, tls: ssl.SSLContext | None, server_hostname: str | None
) -> typing.Callable[[asyncio.AbstractEventLoop], typing.Awaitable[OpenResult]]:
    """The opener that hands a connected socket to the loop (with TLS when ``tls`` is set)."""

    def opener(loop: asyncio.AbstractEventLoop) -> typing.Awaitable[OpenResult]:
        return loop.create_connection(
            lambda: StreamProtocol(loop),
            sock=sock,
            ssl=tls,
            server_hostname=server_hostname if tls is not None else None,
        )

    return opener


class AsyncTcpConnector:
    """Connects over TCP with asyncio, optionally with implicit TLS (RFC 8314 §3, port 465).

    Args:
        host: a name, an IPv4 literal or an IPv6 literal (brackets allowed: ``"[::1]"``).
        port: the TCP port.
        source_address: a local ``(host, port)`` to bind before connecting.
        tls_context: when given, TLS starts right after the TCP connect (implicit TLS). The
            clients leave it unset and start TLS themselves on the plaintext stream.
        server_hostname: the name to verify and send as SNI (default: ``host``).
        resolver: the name lookup, run in the loop's executor (default: ``getaddrinfo``).
        attempt_delay: Happy Eyeballs' delay before the next address is tried while one is
            still pending (RFC 8305 §5: 250 ms).

    Raises:
        InvalidInputError: the port is outside 1-65535 or the host is empty.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        source_address: tuple[str, int] | None = None,
        tls_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        resolver: Resolver | None = None,
        attempt_delay: float = CONNECTION_ATTEMPT_DELAY,
    ) -> None:
        self.host = check_tcp_target(host, port)
        self.port = port
        self.source_address = source_address
        self.tls_context = tls_context
        self.server_hostname = server_hostname or self.host
        self.resolver = resolver
        self.attempt_delay = attempt_delay

    def __repr__(self) -> str:
        tls = " tls" if self.tls_context is not None else ""
        return f"<AsyncTcpConnector {format_address((self.host, self.port))}{tls}>"

    async def connect(self, timeout: float | None) -> AsyncSocketStream:
        """Resolve, connect with Happy Eyeballs (RFC 8305), and start implicit TLS if asked.

        Args:
            timeout: the total time for resolving, connecting and the TLS handshake.

        Returns:
            The connected stream.

        Raises:
            ConnectError: refused, unreachable or unresolvable; ``.attempts`` names every
                address tried.
            ConnectTimeout: the deadline passed (while resolving, too).
            TLSError: the implicit TLS handshake or verification failed.
        """
        target = format_address((self.host, self.port))
        async with map_errors(Operation.CONNECT, target):
            refuse_spent(timeout)
        loop = asyncio.get_running_loop()
        started = loop.time()
        sock = await open_tcp_async(
            self.host,
            self.port,
            timeout=timeout,
            source_address=self.source_address,
            resolver=self.resolver,
            attempt_delay=self.attempt_delay,
        )
        left = None if timeout is None else max(0.0, timeout - (loop.time() - started))
        tls = self.tls_context
        try:
            return await _open(_over_socket(sock, tls, self.server_hostname), target, left, "tcp")
        except BaseException:
            sock.close()
            raise


class AsyncUnixConnector:
    """Connects to a unix-domain socket with asyncio (e.g. an LMTP server, RFC 2033).

    Args:
        path: the socket path.
        tls_context: when given, TLS starts right after connecting.
        server_hostname: the name to verify (required when the context checks host names).

    Raises:
        ConfigurationError: unix sockets are unsupported here, or TLS host name checking is on
            and ``server_hostname`` is missing.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        tls_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        if not hasattr(socket, "AF_UNIX"):
            raise ConfigurationError("unix-domain sockets are not available on this platform")
        if tls_context is not None:
            require_server_hostname(tls_context, server_hostname)
        self.path = os.fspath(path)
        self.tls_context = tls_context
        self.server_hostname = server_hostname

    def __repr__(self) -> str:
        return f"<AsyncUnixConnector {self.path!r}>"

    async def connect(self, timeout: float | None) -> AsyncSocketStream:
        """Connect to the socket path (see :meth:`AsyncTcpConnector.connect` for the errors).

        Args:
            timeout: the total time for connecting (and a TLS handshake).

        Returns:
            The connected stream.
        """
        tls = self.tls_context
        path, name = self.path, self.server_hostname if tls is not None else None

        def opener(loop: asyncio.AbstractEventLoop) -> typing.Awaitable[OpenResult]:
            return loop.create_unix_connection(
                lambda: StreamProtocol(loop), path, ssl=tls, server_hostname=name
            )

        return await _open(opener, self.path, timeout, "unix")


class AsyncSocketConnector:
    """Hands a caller-supplied, already connected socket to asyncio as a stream (once).

    The stream takes ownership of the socket (asyncio makes it non-blocking).

    Args:
        sock: a connected ``SOCK_STREAM`` socket (TCP or unix; not an ``ssl.SSLSocket``).
        tls_context: when given, run a TLS handshake on the socket in :meth:`connect`.
        server_hostname: the name to verify (required when the context checks host names).

    Raises:
        ConfigurationError: ``sock`` is an ``ssl.SSLSocket``, or host name checking is on
            without ``server_hostname``.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        tls_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        if isinstance(sock, ssl.SSLSocket):
            raise ConfigurationError("asyncio cannot use an ssl.SSLSocket; pass the plain socket")
        if tls_context is not None:
            require_server_hostname(tls_context, server_hostname)
        self._sock: socket.socket | None = sock
        self.tls_context = tls_context
        self.server_hostname = server_hostname

    async def connect(self, timeout: float | None) -> AsyncSocketStream:
        """Return the stream over the supplied socket (after the TLS handshake, if any).

        Args:
            timeout: the time allowed for the TLS handshake.

        Returns:
            The stream.

        Raises:
            LocalProtocolError: called a second time (the socket was handed out already).
            ConnectError: the supplied socket is closed.
            TLSError: the handshake failed (the socket is closed).
            ConnectTimeout: the handshake did not finish in time.
        """
        sock, self._sock = self._sock, None
        if sock is None:
            raise LocalProtocolError("AsyncSocketConnector.connect() can only be called once")
        if sock.fileno() == -1:
            raise ConnectError("the supplied socket is already closed")
        tls = self.tls_context
        try:
            target = format_address(address_of(sock.getpeername()))
        except OSError:
            target = None
        try:
            return await _open(_over_socket(sock, tls, self.server_hostname), target, timeout, None)
        except BaseException:
            sock.close()
            raise


if typing.TYPE_CHECKING:  # mypy proves that the classes satisfy the protocols

    def _conforms(  # pyright: ignore[reportUnusedFunction]
        stream: AsyncSocketStream,
        tcp: AsyncTcpConnector,
        unix: AsyncUnixConnector,
        given: AsyncSocketConnector,
    ) -> tuple[AsyncStream, AsyncConnector, AsyncConnector, AsyncConnector]:
        return stream, tcp, unix, given
