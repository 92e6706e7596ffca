"""The asyncio stream: :class:`AsyncSocketStream` over a transport and a lean protocol.

Layer: L3 (transport). May import L0 (``mailsdk.errors``) and the standard library only; must
never import ``mailsdk.protocol``, ``esmtp``, ``auth``, ``flows``, ``telemetry`` or ``client``.

A read whose bytes are already buffered, and a write that stays below the transport's
high-water mark, complete without suspending the task; waits are bounded by the protocol's
deadline timer (no ``asyncio.timeout`` per call). :meth:`AsyncSocketStream.aclose` gives the
peer a short grace (``CLOSE_GRACE``) and then aborts the transport, so it never hangs. The
connectors that make these streams are in ``asyncio_streams.py``.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import ssl
import types
import typing

from mailsdk.errors import (
    ConnectionLost,
    InvalidInputError,
    LocalProtocolError,
    RemoteProtocolError,
)
from mailsdk.transport._async_protocol import StreamProtocol
from mailsdk.transport._errors import Operation, map_errors, translate
from mailsdk.transport.base import PeerAddress, StreamInfo, TransportKind, format_address
from mailsdk.transport.tls import channel_binding_for, require_server_hostname, tls_details

__all__ = ["CLOSE_GRACE", "AsyncSocketStream", "address_of", "refuse_spent"]

#: Seconds :meth:`AsyncSocketStream.aclose` waits for an orderly close before aborting.
CLOSE_GRACE: typing.Final = 0.5


def refuse_spent(timeout: float | None) -> None:
    """Raise the builtin TimeoutError (mapped by the caller) for an already spent deadline."""
    if timeout is not None and not timeout > 0:
        if math.isnan(timeout):
            # A NaN deadline would compare as "never due": it must not mean "no limit".
            raise InvalidInputError("a timeout must be a number of seconds or None, not NaN")
        raise TimeoutError("deadline passed")


def _check_stall(stall: float | None) -> float | None:
    if stall is None or math.isinf(stall):
        return None
    if not stall > 0:  # also refuses NaN
        raise InvalidInputError(f"a stall timeout must be a positive number or None, not {stall!r}")
    return stall


def address_of(value: typing.Any) -> PeerAddress:
    """A transport's ``peername``/``sockname`` as a :data:`PeerAddress` (``None`` if unnamed)."""
    if isinstance(value, bytes):  # Linux abstract unix socket names
        value = os.fsdecode(value)
    return value or None


class AsyncSocketStream:
    """An :class:`~mailsdk.transport.AsyncStream` over an asyncio transport.

    The stream owns the transport: :meth:`aclose` closes it. Streams are made by the
    connectors in this module (and by :meth:`start_tls`).

    Args:
        transport: the connection's transport.
        protocol: the :class:`StreamProtocol` the transport delivers to.
        kind: ``"tcp"`` or ``"unix"``; detected from the socket family when omitted.
    """

    def __init__(
        self,
        transport: asyncio.Transport,
        protocol: StreamProtocol,
        *,
        kind: TransportKind | None = None,
    ) -> None:
        self._transport: asyncio.Transport | None = transport
        self._protocol = protocol
        self._loop = asyncio.get_running_loop()
        self._upgraded = False
        if kind is None:
            sock = transport.get_extra_info("socket")
            is_unix = sock is not None and getattr(socket, "AF_UNIX", None) == sock.family
            kind = "unix" if is_unix else "tcp"
        tls = transport.get_extra_info("ssl_object")
        self._tls: ssl.SSLObject | None = tls if isinstance(tls, ssl.SSLObject) else None
        version, cipher = tls_details(self._tls) if self._tls is not None else (None, None)
        self._info = StreamInfo(
            peer_address=address_of(transport.get_extra_info("peername")),
            local_address=address_of(transport.get_extra_info("sockname")),
            transport=kind,
            tls_version=version,
            tls_cipher=cipher,
        )
        self._target = format_address(self._info.peer_address)

    def __repr__(self) -> str:
        state = "closed" if self._transport is None else ("tls" if self.is_tls else "open")
        return f"<AsyncSocketStream {self._info.transport} {self._target or '?'} {state}>"

    @property
    def info(self) -> StreamInfo:
        """Addresses, transport kind and TLS parameters (captured when the stream was made)."""
        return self._info

    @property
    def is_tls(self) -> bool:
        """True when the transport runs TLS."""
        return self._tls is not None

    def _require_open(self) -> asyncio.Transport:
        transport = self._transport
        if transport is None:
            if self._upgraded:
                raise LocalProtocolError(
                    "this stream was upgraded by start_tls(); use the new stream"
                )
            raise ConnectionLost("the stream is closed")
        return transport

    def _abort(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            self._protocol.cancel_timer()
            transport.abort()

    def _lost(self, operation: Operation) -> ConnectionLost:
        """The error for a connection that is gone (reset, or closed by the peer)."""
        error = self._protocol.error
        if error is not None:
            mapped = translate(error, operation, self._target)
            if isinstance(mapped, ConnectionLost):
                mapped.__cause__ = error
                return mapped
        where = f" ({self._target})" if self._target else ""
        return ConnectionLost(f"the connection was closed by the peer{where}")

    def _deadline(self, timeout: float | None) -> float | None:
        return None if timeout is None else self._loop.time() + timeout

    def _timed_out(self, operation: Operation, why: str) -> BaseException:
        # translate() maps every TimeoutError (to the operation's timeout class).
        return typing.cast("BaseException", translate(TimeoutError(why), operation, self._target))

    async def send_all(
        self, data: bytes, timeout: float | None, *, stall: float | None = None
    ) -> None:
        """Write ``data``; wait only when the transport's buffer is above its high-water mark.

        Args:
            data: the bytes to send.
            timeout: the remaining time of the caller's deadline (``None``: no limit).
            stall: also fail when the transport's buffer does not shrink at all for this long
                (a server that stopped reading), however much of ``timeout`` is left.

        Raises:
            WriteTimeout: the buffer did not drain in time; the transport is aborted, since a
                partial command may be on the wire.
            ConnectionLost: the peer reset or closed the connection (the transport is aborted),
                or the stream was already closed.
            LocalProtocolError: the stream was replaced by :meth:`start_tls`.
        """
        transport = self._transport or self._require_open()  # (no call when open: per message)
        protocol = self._protocol
        if timeout is not None and not timeout > 0:
            with map_errors(Operation.WRITE, self._target):
                refuse_spent(timeout)  # nothing written yet: the stream stays usable
        if stall is not None and not 0.0 < stall < math.inf:  # the usual finite one: no call
            stall = _check_stall(stall)
        try:
            # A transport that is closing would drop the bytes silently (asyncio only logs).
            if not (protocol.lost or transport.is_closing()):
                transport.write(data)
                if protocol.paused:
                    await self._drain(transport, timeout, stall)
                if not transport.is_closing():
                    return
            raise await self._closing_reason()
        except BaseException:  # including cancellation: the wire state is unknown
            self._abort()
            raise

    async def _closing_reason(self) -> ConnectionLost:
        """The error for a transport that is closing under us (a send failed: a reset).

        asyncio reports why only in ``connection_lost``, one loop turn later: wait for it
        (briefly), so that the error names the cause (``ECONNRESET``) instead of guessing.
        """
        protocol = self._protocol
        deadline = self._loop.time() + CLOSE_GRACE
        while not protocol.lost and await protocol.wait(deadline):
            pass  # woken by data that was on its way: keep waiting for the loss
        return self._lost(Operation.WRITE)

    async def _drain(
        self, transport: asyncio.Transport, timeout: float | None, stall: float | None
    ) -> None:
        """Wait until the transport resumes writing, failing on the deadline or a stall."""
        protocol, loop = self._protocol, self._loop
        deadline = self._deadline(timeout)
        size = transport.get_write_buffer_size()
        progress_at = loop.time()
        while protocol.paused:
            until = deadline
            if stall is not None and (until is None or progress_at + stall < until):
                until = progress_at + stall
            woken = await protocol.wait(until)
            now = loop.time()
            left = transport.get_write_buffer_size()
            if left < size:  # the peer took bytes: the stall window starts again
                size, progress_at = left, now
            if woken or not protocol.paused:
                continue
            if deadline is not None and now >= deadline:
                raise self._timed_out(Operation.WRITE, "the write did not finish in time")
            if stall is not None and now >= progress_at + stall:
                raise self._timed_out(Operation.WRITE, "the peer stopped reading")
        if protocol.lost:
            raise self._lost(Operation.WRITE)

    async def receive(self, max_bytes: int, timeout: float | None) -> bytes:
        """Receive up to ``max_bytes`` bytes (at once when some are buffered already).

        Args:
            max_bytes: the most bytes to return (at least 1).
            timeout: the remaining time of the caller's deadline (``None``: no limit).

        Returns:
            The bytes read, or ``b""`` at end of stream.

        Raises:
            ReadTimeout: nothing arrived in time (or ``timeout <= 0``); the stream stays usable.
            ConnectionLost: the connection was reset, or the stream was already closed.
            InvalidInputError: ``max_bytes`` is below 1.
            LocalProtocolError: the stream was replaced by :meth:`start_tls`.
        """
        if max_bytes < 1:
            raise InvalidInputError("max_bytes must be at least 1")
        if self._transport is None:
            self._require_open()
        protocol = self._protocol
        if timeout is not None and not timeout > 0:
            with map_errors(Operation.READ, self._target):
                refuse_spent(timeout)
        if not protocol.buffer:
            if not protocol.eof:
                deadline = self._deadline(timeout)
                # Cancelling this wait takes nothing from the buffer: the stream stays in step.
                while not protocol.buffer and not protocol.eof:
                    if not await protocol.wait(deadline):
                        raise self._timed_out(Operation.READ, "nothing arrived in time")
                    if self._transport is None:  # closed by another task meanwhile
                        self._require_open()
            if not protocol.buffer:
                if protocol.error is not None:
                    self._abort()
                    raise self._lost(Operation.READ)
                return b""
        return protocol.take(max_bytes)

    async def start_tls(
        self,
        context: ssl.SSLContext,
        server_hostname: str | None,
        timeout: float | None,
        *,
        implicit: bool = False,
    ) -> AsyncSocketStream:
        """Upgrade the connection to TLS (RFC 3207 §4) and return the new stream.

        This stream is unusable afterwards, whatever the outcome; on failure the transport is
        aborted. Bytes the server sent after its STARTTLS reply and that were already read into
        the receive buffer are refused (STARTTLS command injection, RFC 3207 §4.2: such bytes
        would otherwise be taken as TLS-protected), as are bytes present right after the
        handshake (the server must wait for the client's EHLO).

        Args:
            context: the client context (see :meth:`TlsSettings.create_context`).
            server_hostname: the name (or IP literal) to verify and to send as SNI.
            timeout: the remaining time for the handshake.
            implicit: implicit TLS (RFC 8314) on a fresh connection: the server speaks first
                once the handshake is done, so data right after it is its greeting, not an
                injection.

        Returns:
            The TLS stream.

        Raises:
            TLSError: the handshake or certificate verification failed.
            ConnectTimeout: the handshake did not finish in time (``phase="tls_handshake"``).
            ConnectionLost: the peer closed or reset the connection.
            RemoteProtocolError: unread plaintext was buffered around the handshake.
            ConfigurationError: host name checking is on and ``server_hostname`` is missing.
            LocalProtocolError: the stream already uses TLS or was replaced.
        """
        transport = self._require_open()
        if self.is_tls:
            raise LocalProtocolError("the stream already uses TLS")
        require_server_hostname(context, server_hostname)
        self._upgraded = True
        self._transport = None
        protocol = self._protocol
        try:
            async with map_errors(Operation.TLS_HANDSHAKE, self._target):
                if protocol.buffer:
                    raise RemoteProtocolError(
                        "the server sent data after its STARTTLS reply "
                        "(STARTTLS injection, RFC 3207 §4.2)"
                    )
                refuse_spent(timeout)
                if protocol.lost:
                    raise self._lost(Operation.TLS_HANDSHAKE)
                async with asyncio.timeout(timeout):
                    upgraded = await self._loop.start_tls(
                        transport, protocol, context, server_hostname=server_hostname
                    )
                if upgraded is None or protocol.lost:
                    raise self._lost(Operation.TLS_HANDSHAKE)
                if not implicit and protocol.buffer:
                    raise RemoteProtocolError(
                        "unexpected data right after the TLS handshake "
                        "(STARTTLS injection, RFC 3207 §4.2)"
                    )
        except BaseException:
            protocol.cancel_timer()
            transport.abort()
            # abort() closes the socket in a loop callback: give it that turn, or a caller
            # that ends its loop right after the failure leaves the socket unclosed.
            await asyncio.sleep(0)
            raise
        protocol.transport = upgraded
        protocol.over_ssl = True
        return AsyncSocketStream(upgraded, protocol, kind=self._info.transport)

    def channel_binding(self, kind: str) -> bytes | None:
        """Return channel-binding data (see :func:`mailsdk.transport.tls.channel_binding_for`).

        Args:
            kind: ``"tls-server-end-point"`` (supported) or ``"tls-exporter"`` (always ``None``).

        Returns:
            The binding data, or ``None`` for plaintext, closed streams and unsupported kinds.
        """
        return channel_binding_for(self._tls if self._transport is not None else None, kind)

    async def aclose(self) -> None:
        """Close the connection: an orderly close for up to ``CLOSE_GRACE`` seconds, then abort.

        Idempotent and never raises an I/O error. With TLS the orderly close sends a
        close_notify; a dead peer only costs the grace period.
        """
        transport, self._transport = self._transport, None
        if transport is None:
            return
        protocol = self._protocol
        protocol.cancel_timer()
        closed = False
        try:
            transport.close()
            closed = await protocol.wait_closed(CLOSE_GRACE)
        except Exception:  # noqa: S110 - OSError or ssl errors while closing: abort below
            pass
        finally:
            if not closed:
                transport.abort()

    async def __aenter__(self) -> typing.Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        await self.aclose()
