"""Blocking streams over TCP, unix-domain and caller-supplied sockets; implicit TLS and STARTTLS.

Layer: L3 (transport). May import L0 (``mailsdk.errors``) and the standard library only; must
never import ``mailsdk.protocol``, ``esmtp``, ``auth``, ``flows``, ``telemetry`` or ``client``.

Timeouts are the remaining time of the caller's total deadline. ``receive`` uses one socket
timeout (CPython applies it to the whole ``recv``/SSL read); ``send_all`` loops ``send`` under a
deadline of its own, because ``SSLSocket.sendall`` restarts the timeout on every chunk.
"""

from __future__ import annotations

import math
import os
import socket
import ssl
import time
import types
import typing

from mailsdk.errors import (
    ConfigurationError,
    ConnectError,
    ConnectionLost,
    InvalidInputError,
    LocalProtocolError,
)
from mailsdk.transport._addresses import CONNECTION_ATTEMPT_DELAY, Resolver
from mailsdk.transport._dialer import open_tcp
from mailsdk.transport._errors import Operation, map_errors, translate
from mailsdk.transport.base import (
    Connector,
    PeerAddress,
    Stream,
    StreamInfo,
    TransportKind,
    check_tcp_target,
    format_address,
)
from mailsdk.transport.tls import channel_binding_for, require_server_hostname, tls_details

__all__ = ["SocketConnector", "SocketStream", "TcpConnector", "UnixConnector"]


#: Longer timeouts (``math.inf`` included) mean "no limit": ``socket.settimeout`` raises a bare
#: ``OverflowError`` for anything its platform ``time_t`` cannot hold (about 1e11 s on Linux).
_MAX_SOCKET_TIMEOUT: typing.Final = 1e8


#: ``receive`` keeps the socket's timeout while it is at least this share of the time left.
_KEEP_TIMEOUT: typing.Final = 0.5


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if math.isnan(timeout):
        raise InvalidInputError("a timeout must be a number of seconds or None, not NaN")
    if timeout > _MAX_SOCKET_TIMEOUT:
        return None
    return time.monotonic() + timeout


def _remaining(deadline: float | None) -> float | None:
    """Time left before ``deadline``; raises the builtin TimeoutError (mapped by the caller)."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left


def _stall(stall: float | None) -> float | None:
    if stall is None or stall > _MAX_SOCKET_TIMEOUT:
        return None
    if not stall > 0:  # also refuses NaN
        raise InvalidInputError(f"a stall timeout must be a positive number or None, not {stall!r}")
    return stall


def _address(get: typing.Callable[[], typing.Any]) -> PeerAddress:
    try:
        value = get()
    except OSError:
        return None
    if isinstance(value, bytes):  # Linux abstract unix socket names
        value = os.fsdecode(value)
    return value or None


def _handshake(
    sock: socket.socket,
    context: ssl.SSLContext,
    server_hostname: str | None,
    deadline: float | None,
) -> ssl.SSLSocket:
    """Wrap ``sock`` (detached into the result); finish the handshake by ``deadline``."""
    if server_hostname is not None:
        # What wrap_socket() does, but *after* detaching ``sock``: a name IDNA cannot encode
        # would then leak the descriptor in a half-built SSLSocket. Fail while we still own it.
        server_hostname.encode("idna")
    sock.settimeout(_remaining(deadline))
    tls = context.wrap_socket(sock, server_hostname=server_hostname, do_handshake_on_connect=False)
    try:
        tls.settimeout(_remaining(deadline))
        tls.do_handshake()
    except BaseException:
        tls.close()
        raise
    return tls


class SocketStream:
    """A :class:`~mailsdk.transport.Stream` over a connected blocking socket (plain or TLS).

    The stream owns the socket: :meth:`close` closes it.

    Args:
        sock: a connected ``SOCK_STREAM`` socket (an ``ssl.SSLSocket`` counts as TLS).
        transport: ``"tcp"`` or ``"unix"``; detected from the socket family when omitted.
    """

    def __init__(self, sock: socket.socket, *, transport: TransportKind | None = None) -> None:
        self._sock: socket.socket | None = sock
        self._upgraded = False
        #: The socket's current timeout, as last set by this stream (``settimeout`` is skipped
        #: when it would not change it).
        self._timeout: float | None = sock.gettimeout()
        self._is_tls = isinstance(sock, ssl.SSLSocket)
        if transport is None:
            is_unix = getattr(socket, "AF_UNIX", None) == sock.family
            transport = "unix" if is_unix else "tcp"
        version, cipher = tls_details(sock) if isinstance(sock, ssl.SSLSocket) else (None, None)
        self._info = StreamInfo(
            peer_address=_address(sock.getpeername),
            local_address=_address(sock.getsockname),
            transport=transport,
            tls_version=version,
            tls_cipher=cipher,
        )
        self._target = format_address(self._info.peer_address)

    def __repr__(self) -> str:
        state = "closed" if self._sock is None else ("tls" if self.is_tls else "open")
        return f"<SocketStream {self._info.transport} {self._target or '?'} {state}>"

    @property
    def info(self) -> StreamInfo:
        """Addresses, transport kind and TLS parameters (captured when the stream was made)."""
        return self._info

    @property
    def is_tls(self) -> bool:
        """True when the socket is an ``ssl.SSLSocket``."""
        return self._is_tls

    def _require_open(self) -> socket.socket:
        if self._upgraded:
            raise LocalProtocolError("this stream was upgraded by start_tls(); use the new stream")
        if self._sock is None:
            raise ConnectionLost("the stream is closed")
        return self._sock

    def send_all(self, data: bytes, timeout: float | None, *, stall: float | None = None) -> None:
        """Send all of ``data`` before ``timeout`` seconds pass.

        Args:
            data: the bytes to send.
            timeout: the remaining time of the caller's deadline (``None``: no limit).
            stall: also fail when the peer accepts no byte at all for this long (a server
                that stopped reading), however much of ``timeout`` is left.

        Raises:
            WriteTimeout: the deadline passed. If any write had started, the stream is closed,
                because a partial command (or TLS record) may be on the wire.
            ConnectionLost: the peer reset or closed the connection (the stream is closed), or
                the stream was already closed.
            LocalProtocolError: the stream was replaced by :meth:`start_tls`.
        """
        sock = self._sock
        if sock is None or self._upgraded:
            sock = self._require_open()
        view = memoryview(data).cast("B")
        try:  # map_errors, spelled out: this runs for every write
            deadline = _deadline(timeout)
            left = None if deadline is None else timeout
            if left is not None and left <= 0:  # a spent deadline fails before any write
                raise TimeoutError("deadline passed")
            stall = _stall(stall)
            try:
                while view:
                    # One send() returns as soon as some bytes are taken: a per-call timeout
                    # of ``stall`` is "no progress for that long".
                    limit = left if stall is None or (left is not None and left < stall) else stall
                    if limit != self._timeout:  # settimeout costs a system call: skip repeats
                        sock.settimeout(limit)
                        self._timeout = limit
                    sent = sock.send(view)
                    view = view[sent:]
                    if view:
                        left = _remaining(deadline)
            except BaseException:
                self.close()
                raise
        except BaseException as exc:
            mapped = translate(exc, Operation.WRITE, self._target)
            if mapped is None:
                raise
            raise mapped from exc

    def receive(self, max_bytes: int, timeout: float | None) -> bytes:
        """Receive up to ``max_bytes`` bytes.

        Args:
            max_bytes: the most bytes to return (at least 1).
            timeout: the remaining time of the caller's deadline (``None``: no limit).

        Returns:
            The bytes read, or ``b""`` when the peer closed the connection cleanly.

        Raises:
            ReadTimeout: nothing arrived in time; the stream stays usable.
            ConnectionLost: the connection was reset, or the stream was already closed.
            TLSError: a TLS record failed to decrypt or verify.
            InvalidInputError: ``max_bytes`` is below 1.
            LocalProtocolError: the stream was replaced by :meth:`start_tls`.
        """
        if max_bytes < 1:
            raise InvalidInputError("max_bytes must be at least 1")
        sock = self._sock
        if sock is None or self._upgraded:
            sock = self._require_open()
        try:  # map_errors, spelled out: this runs for every read
            deadline = _deadline(timeout)
            left = None if deadline is None else timeout
            if left is not None and left <= 0:
                raise TimeoutError("deadline passed")
            while True:
                current = self._timeout
                # settimeout costs a system call, and the time left differs on every call:
                # the socket's timeout is kept while it is at most what is left (the read can
                # never outlast the deadline) and not far below it; when it fires early, the
                # read is retried with what is left.
                if left is None:
                    if current is not None:
                        sock.settimeout(None)
                        self._timeout = None
                elif current is None or not (left * _KEEP_TIMEOUT <= current <= left):
                    sock.settimeout(left)
                    self._timeout = left
                try:
                    return sock.recv(max_bytes)
                except TimeoutError:
                    if self._timeout == left:
                        raise
                left = _remaining(deadline)  # raises TimeoutError once the deadline passed
        except BaseException as exc:
            mapped = translate(exc, Operation.READ, self._target)
            if mapped is None:
                raise
            raise mapped from exc

    def start_tls(
        self, context: ssl.SSLContext, server_hostname: str | None, timeout: float | None
    ) -> SocketStream:
        """Upgrade the connection to TLS (RFC 3207 §4) and return the new stream.

        This stream is unusable afterwards, whatever the outcome; on failure the connection is
        closed (falling back to plaintext would let an attacker strip TLS).

        Args:
            context: the client context (see :meth:`TlsSettings.create_context`).
            server_hostname: the name (or IP literal) to verify and to send as SNI.
            timeout: the remaining time for the handshake.

        Returns:
            The TLS stream.

        Raises:
            TLSError: the handshake or certificate verification failed.
            ConnectTimeout: the handshake did not finish in time (``phase="tls_handshake"``).
            ConnectionLost: the peer closed or reset the connection.
            ConfigurationError: host name checking is on and ``server_hostname`` is missing.
            LocalProtocolError: the stream already uses TLS or was replaced.
        """
        sock = self._require_open()
        if self.is_tls:
            raise LocalProtocolError("the stream already uses TLS")
        require_server_hostname(context, server_hostname)
        self._upgraded = True
        self._sock = None  # ssl.wrap_socket detaches the socket into the new object
        try:
            with map_errors(Operation.TLS_HANDSHAKE, self._target):
                tls = _handshake(sock, context, server_hostname, _deadline(timeout))
        except BaseException:
            sock.close()
            raise
        return SocketStream(tls, transport=self._info.transport)

    def channel_binding(self, kind: str) -> bytes | None:
        """Return channel-binding data (see :func:`mailsdk.transport.tls.channel_binding_for`).

        Args:
            kind: ``"tls-server-end-point"`` (supported) or ``"tls-exporter"`` (always ``None``).

        Returns:
            The binding data, or ``None`` for plaintext, closed streams and unsupported kinds.
        """
        sock = self._sock
        return channel_binding_for(sock if isinstance(sock, ssl.SSLSocket) else None, kind)

    def close(self) -> None:
        """Close the socket. Idempotent; TLS is not unwrapped, so a dead peer cannot block it."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def __enter__(self) -> typing.Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.close()


class TcpConnector:
    """Connects over TCP, optionally with implicit TLS (RFC 8314 §3, port 465).

    Args:
        host: a name, an IPv4 literal or an IPv6 literal (brackets allowed: ``"[::1]"``).
        port: the TCP port.
        source_address: a local ``(host, port)`` to bind before connecting.
        tls_context: when given, TLS starts right after the TCP connect (implicit TLS). The
            clients leave it unset and start TLS themselves on the plaintext stream.
        server_hostname: the name to verify and send as SNI (default: ``host``).
        resolver: the name lookup (default: the system's ``getaddrinfo``); see
            :data:`~mailsdk.transport.Resolver`.
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
        return f"<TcpConnector {format_address((self.host, self.port))}{tls}>"

    def connect(self, timeout: float | None) -> SocketStream:
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
        deadline = _deadline(timeout)
        target = format_address((self.host, self.port))
        with map_errors(Operation.CONNECT, target):
            sock = open_tcp(
                self.host,
                self.port,
                deadline=deadline,
                source_address=self.source_address,
                resolver=self.resolver,
                attempt_delay=self.attempt_delay,
            )
            if self.tls_context is not None:
                try:
                    sock = _handshake(sock, self.tls_context, self.server_hostname, deadline)
                except BaseException:
                    sock.close()
                    raise
        return SocketStream(sock, transport="tcp")


class UnixConnector:
    """Connects to a unix-domain socket (e.g. an LMTP server, RFC 2033).

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
        return f"<UnixConnector {self.path!r}>"

    def connect(self, timeout: float | None) -> SocketStream:
        """Connect to the socket path (see :meth:`TcpConnector.connect` for the errors).

        Args:
            timeout: the total time for connecting (and a TLS handshake).

        Returns:
            The connected stream.
        """
        deadline = _deadline(timeout)
        with map_errors(Operation.CONNECT, self.path):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(_remaining(deadline))
                sock.connect(self.path)
                if self.tls_context is not None:
                    sock = _handshake(sock, self.tls_context, self.server_hostname, deadline)
            except BaseException:
                sock.close()
                raise
        return SocketStream(sock, transport="unix")


class SocketConnector:
    """Hands out a caller-supplied, already connected socket as a stream (once).

    The stream takes ownership of the socket. A plain socket may get TLS at "connect" time.

    Args:
        sock: a connected ``SOCK_STREAM`` socket (TCP, unix, or an ``ssl.SSLSocket``).
        tls_context: when given, run a TLS handshake on the socket in :meth:`connect`.
        server_hostname: the name to verify (required when the context checks host names).

    Raises:
        ConfigurationError: ``tls_context`` with an ``ssl.SSLSocket``, or host name checking
            without ``server_hostname``.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        tls_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        if tls_context is not None:
            if isinstance(sock, ssl.SSLSocket):
                raise ConfigurationError("the socket already uses TLS")
            require_server_hostname(tls_context, server_hostname)
        self._sock: socket.socket | None = sock
        self.tls_context = tls_context
        self.server_hostname = server_hostname

    def connect(self, timeout: float | None) -> SocketStream:
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
            raise LocalProtocolError("SocketConnector.connect() can only be called once")
        if sock.fileno() == -1:
            raise ConnectError("the supplied socket is already closed")
        if self.tls_context is not None:
            target = format_address(_address(sock.getpeername))
            with map_errors(Operation.CONNECT, target):
                try:
                    sock = _handshake(
                        sock, self.tls_context, self.server_hostname, _deadline(timeout)
                    )
                except BaseException:
                    sock.close()
                    raise
        return SocketStream(sock)


if typing.TYPE_CHECKING:  # mypy proves that the classes satisfy the protocols

    def _conforms(  # pyright: ignore[reportUnusedFunction]
        stream: SocketStream, tcp: TcpConnector, unix: UnixConnector, given: SocketConnector
    ) -> tuple[Stream, Connector, Connector, Connector]:
        return stream, tcp, unix, given
