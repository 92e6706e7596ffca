"""The transport seam: Stream / AsyncStream and Connector / AsyncConnector protocols, StreamInfo.

Layer: L3 (transport). May import L0 (``mailsdk.errors``) and the standard library only; must
never import ``mailsdk.protocol``, ``esmtp``, ``auth``, ``flows``, ``telemetry`` or ``client``.

The shape follows httpcore's network backends: ``receive(max_bytes, timeout)``,
``send_all(data, timeout)``, ``start_tls(...)`` returning a *new* stream, ``close()``. Timeouts
are the remaining time of a total deadline that the caller computes (deadlines are total per
command: docs/architecture.md, "Deadlines"); ``None`` (or ``math.inf``) waits forever; NaN is an
:class:`~mailsdk.errors.InvalidInputError`.
"""

from __future__ import annotations

import inspect
import ipaddress
import ssl
import typing

import attrs

from mailsdk.errors import InvalidInputError

__all__ = [
    "AsyncConnector",
    "AsyncStream",
    "Connector",
    "PeerAddress",
    "Stream",
    "StreamInfo",
    "TransportKind",
    "check_tcp_target",
    "connector_kind",
    "format_address",
    "parse_host_port",
]

#: How a stream reaches its peer.
TransportKind: typing.TypeAlias = typing.Literal["tcp", "unix"]

#: A socket address as the OS reports it: ``(host, port)`` (IPv4), ``(host, port, flowinfo,
#: scope_id)`` (IPv6), a path (unix sockets), or ``None`` when unknown/unnamed.
PeerAddress: typing.TypeAlias = tuple[typing.Any, ...] | str | None


@attrs.frozen
class StreamInfo:
    """What is known about an open stream (for logs, telemetry and ``Received:`` policy).

    Attributes:
        peer_address: the server's address (see :data:`PeerAddress`).
        local_address: our end of the connection.
        transport: ``"tcp"`` or ``"unix"``.
        tls_version: e.g. ``"TLSv1.3"`` once TLS is active, else ``None``.
        tls_cipher: the negotiated cipher suite name once TLS is active, else ``None``.
    """

    peer_address: PeerAddress
    local_address: PeerAddress
    transport: TransportKind
    tls_version: str | None = None
    tls_cipher: str | None = None


@typing.runtime_checkable
class Stream(typing.Protocol):
    """A connected, blocking byte stream to one server.

    After :meth:`start_tls` returns, only the returned stream may be used; the old object raises
    :class:`~mailsdk.errors.LocalProtocolError`. Every failure is a :mod:`mailsdk.errors` type.
    """

    @property
    def info(self) -> StreamInfo:
        """Addresses, transport kind and TLS parameters of the connection."""
        ...

    @property
    def is_tls(self) -> bool:
        """True when the stream is protected by TLS."""
        ...

    def send_all(self, data: bytes, timeout: float | None, *, stall: float | None = None) -> None:
        """Send every byte of ``data`` within ``timeout`` seconds, and fail sooner when the peer
        takes no byte at all for ``stall`` seconds (``None``: no such bound).

        Raises:
            WriteTimeout: the deadline passed; the stream is then closed (it may hold a partial
                command).
            ConnectionLost: the peer reset or closed the connection.
        """
        ...

    def receive(self, max_bytes: int, timeout: float | None) -> bytes:
        """Return up to ``max_bytes`` bytes, waiting at most ``timeout`` seconds; ``b""`` on EOF.

        Raises:
            ReadTimeout: nothing arrived before the deadline (the stream stays usable).
            ConnectionLost: the connection was reset.
        """
        ...

    def start_tls(
        self, context: ssl.SSLContext, server_hostname: str | None, timeout: float | None
    ) -> Stream:
        """Run a TLS client handshake over this connection and return the new TLS stream.

        Raises:
            TLSError: the handshake or the certificate verification failed.
            ConnectTimeout: the handshake did not finish in time.
        """
        ...

    def channel_binding(self, kind: str) -> bytes | None:
        """Channel-binding data of ``kind`` (RFC 5056) or ``None`` when unavailable."""
        ...

    def close(self) -> None:
        """Close the connection (idempotent, never blocks on the peer)."""
        ...


@typing.runtime_checkable
class AsyncStream(typing.Protocol):
    """The asyncio twin of :class:`Stream`; closes with :meth:`aclose`."""

    @property
    def info(self) -> StreamInfo:
        """Addresses, transport kind and TLS parameters of the connection."""
        ...

    @property
    def is_tls(self) -> bool:
        """True when the stream is protected by TLS."""
        ...

    async def send_all(
        self, data: bytes, timeout: float | None, *, stall: float | None = None
    ) -> None:
        """Send ``data``; wait until the transport buffer drained (see :meth:`Stream.send_all`)."""
        ...

    async def receive(self, max_bytes: int, timeout: float | None) -> bytes:
        """Return up to ``max_bytes`` bytes; ``b""`` on EOF (see :meth:`Stream.receive`)."""
        ...

    async def start_tls(
        self, context: ssl.SSLContext, server_hostname: str | None, timeout: float | None
    ) -> AsyncStream:
        """Upgrade to TLS and return the new stream (see :meth:`Stream.start_tls`)."""
        ...

    def channel_binding(self, kind: str) -> bytes | None:
        """Channel-binding data of ``kind`` or ``None`` (no I/O, hence not a coroutine)."""
        ...

    async def aclose(self) -> None:
        """Close the connection (idempotent; aborts after a short grace, never hangs)."""
        ...


@typing.runtime_checkable
class Connector(typing.Protocol):
    """Opens a :class:`Stream` (a TCP host, a unix socket, a proxy tunnel, a caller's socket...).

    The clients use connectors that return *plaintext* streams and start TLS themselves
    (implicit TLS included), so a custom connector needs no TLS code of its own.
    """

    def connect(self, timeout: float | None) -> Stream:
        """Connect (and, if the connector was given a TLS context, handshake) in ``timeout`` s.

        Raises:
            ConnectError: the connection was refused or the name did not resolve.
            ConnectTimeout: the deadline passed.
            TLSError: implicit TLS failed.
        """
        ...


@typing.runtime_checkable
class AsyncConnector(typing.Protocol):
    """Opens an :class:`AsyncStream`."""

    async def connect(self, timeout: float | None) -> AsyncStream:
        """Connect within ``timeout`` seconds (see :meth:`Connector.connect`)."""
        ...


def connector_kind(connector: object) -> typing.Literal["blocking", "async"] | None:
    """Which kind of connector ``connector`` is: ``"async"`` when its ``connect`` is a
    coroutine function, ``"blocking"`` when it is a plain callable, ``None`` when it has none.

    The two protocols share their member name, so ``isinstance`` cannot tell them apart; the
    builder (at build time) and the clients (at connect time) both decide with this.
    """
    connect = getattr(connector, "connect", None)
    if connect is None or not callable(connect):
        return None
    return "async" if inspect.iscoroutinefunction(connect) else "blocking"


def parse_host_port(value: str, default_port: int) -> tuple[str, int]:
    """Split ``"host"``, ``"host:port"``, ``"[v6]:port"``, ``"[v6]"`` or a bare IPv6 literal.

    Args:
        value: the text to parse, e.g. ``"mx.example.com:587"`` or ``"[::1]:25"``.
        default_port: the port when ``value`` names none.

    Returns:
        ``(host, port)`` with IPv6 brackets removed.

    Raises:
        InvalidInputError: empty host, unbalanced brackets, or a port outside 1-65535.
    """
    text = value.strip()
    port_text: str | None = None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise InvalidInputError(f"malformed bracketed address: {value!r}")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host = text  # a name, an IPv4 literal, or a bare IPv6 literal (two or more colons)
    if not host:
        raise InvalidInputError(f"no host in {value!r}")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise InvalidInputError(f"malformed IPv6 address: {value!r}") from None
    return host, _check_port(port_text, default_port, value)


def _check_port(port_text: str | None, default_port: int, value: str) -> int:
    if port_text is None:
        port = default_port
    elif not port_text.isascii() or not port_text.isdigit():
        raise InvalidInputError(f"malformed port in {value!r}")
    else:
        port = int(port_text)
    if not 0 < port < 65536:
        raise InvalidInputError(f"port out of range in {value!r}")
    return port


def check_tcp_target(host: str, port: int) -> str:
    """Validate a connector's host and port; return the host without IPv6 brackets.

    Raises:
        InvalidInputError: the host is empty or contains whitespace or control characters, or
            the port is outside 1-65535.
    """
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise InvalidInputError("a TCP connector needs a host")
    if any(c.isspace() or c < "\x20" or "\x7f" <= c <= "\x9f" for c in host):
        # A NUL would end the name early in C (asyncio raises a bare ValueError for it).
        raise InvalidInputError(f"the host {host!r} contains whitespace or control characters")
    if not 0 < port < 65536:
        raise InvalidInputError(f"port out of range: {port}")
    return host


def format_address(address: PeerAddress) -> str | None:
    """Render a socket address as ``host:port``, ``[v6]:port`` or the socket path (for messages)."""
    if address is None or isinstance(address, str):
        return address
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
