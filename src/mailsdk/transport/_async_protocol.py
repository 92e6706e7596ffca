"""The asyncio protocol under :class:`~mailsdk.transport.AsyncSocketStream`: buffer and waiters.

Layer: L3 (transport). May import L0 (``mailsdk.errors``) and the standard library only; must
never import ``mailsdk.protocol``, ``esmtp``, ``auth``, ``flows``, ``telemetry`` or ``client``.

Why not ``StreamReader``/``StreamWriter``: every deadline there needs ``asyncio.timeout`` (a
timer, a context object and task bookkeeping per read) and every read and drain is an await
even when the bytes are already there. An SMTP session reads a few short replies per message,
so that machinery cost more than the protocol work. This protocol keeps a receive buffer, one
waiter future for readers and one for writers, and enforces deadlines with a single re-armed
``loop.call_at`` timer: waits with later deadlines (the usual case: each reply restarts the
command deadline) reuse the armed timer instead of creating one per read.

The waiters only ever get results (``True``: woken, ``False``: deadline passed), never
exceptions, so that an abandoned future cannot log "exception was never retrieved"; the
connection's fate is kept in :attr:`StreamProtocol.lost` / :attr:`StreamProtocol.error`.
"""

from __future__ import annotations

import asyncio
import typing

__all__ = ["READ_LIMIT", "StreamProtocol"]

#: Reading from the socket pauses while more than twice this much is buffered unread (a server
#: that floods a client which stopped reading must not grow its memory without bound).
READ_LIMIT: typing.Final = 64 * 1024


class StreamProtocol(asyncio.Protocol):
    """Buffers what arrives and wakes the one task waiting on the connection.

    Args:
        loop: the running loop (its clock drives the deadlines).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        #: The transport carrying the bytes: the plain one, then the TLS one after an upgrade.
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        #: The peer ended its side (EOF) or the connection is gone.
        self.eof = False
        #: The connection is gone (``connection_lost`` ran); :attr:`error` says why, if not clean.
        self.lost = False
        self.error: BaseException | None = None
        #: The transport asked us to stop writing (its buffer is above the high-water mark).
        self.paused = False
        self.over_ssl = False
        self._read_paused = False
        self._waiter: asyncio.Future[bool] | None = None
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed: asyncio.Future[None] = loop.create_future()

    # --- asyncio.Protocol callbacks ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast("asyncio.Transport", transport)
        self.over_ssl = transport.get_extra_info("sslcontext") is not None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self._read_paused and len(self.buffer) > 2 * READ_LIMIT:
            transport = self.transport
            if transport is not None:
                try:
                    transport.pause_reading()
                    self._read_paused = True
                except NotImplementedError:  # a transport without flow control
                    pass
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        # A plain socket stays open for writing (a QUIT may still go out); asyncio ignores the
        # answer for TLS, and warns when it is True.
        return not self.over_ssl

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = self.eof = True
        self.error = exc
        self.paused = False
        self._wake()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._wake()

    # --- used by the stream -----------------------------------------------------------------

    def take(self, max_bytes: int) -> bytes:
        """Remove and return up to ``max_bytes`` buffered bytes (``b""`` when none)."""
        buffer = self.buffer
        if len(buffer) <= max_bytes:
            data = bytes(buffer)
            buffer.clear()
        else:
            data = bytes(buffer[:max_bytes])
            del buffer[:max_bytes]
        if self._read_paused and len(buffer) <= READ_LIMIT:
            self._read_paused = False
            if self.transport is not None and not self.lost:
                self.transport.resume_reading()
        return data

    async def wait(self, deadline: float | None) -> bool:
        """Wait for the next wake-up (data, EOF, loss, drained buffer) until ``deadline``.

        Returns:
            False when the deadline (``loop.time()`` units) passed first.

        Cancelling the waiting task leaves the buffer untouched (nothing is half-read).
        """
        if self._waiter is not None:  # the stream runs one operation at a time
            raise RuntimeError("another task is already waiting on this connection")
        waiter = self._loop.create_future()
        self._waiter = waiter
        self._deadline = deadline
        if deadline is not None:
            timer = self._timer
            if timer is None or timer.when() > deadline:
                if timer is not None:
                    timer.cancel()
                self._timer = self._loop.call_at(deadline, self._on_timer)
        try:
            woken: bool = await waiter
            return woken
        finally:
            self._waiter = None
            self._deadline = None

    async def wait_closed(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for ``connection_lost``; False when it did not come."""
        if self._closed.done():
            return True
        done, _ = await asyncio.wait([self._closed], timeout=seconds)
        return bool(done)

    def cancel_timer(self) -> None:
        """Drop the armed deadline timer (the stream is closing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    def _on_timer(self) -> None:
        # The timer is shared by consecutive waits: it fires at the earliest deadline armed
        # and re-arms itself when the current wait's deadline is later (or leaves it unarmed
        # when nobody waits, so that an idle session costs no timer).
        self._timer = None
        waiter, deadline = self._waiter, self._deadline
        if waiter is None or waiter.done() or deadline is None:
            return
        if self._loop.time() >= deadline:
            waiter.set_result(False)
        else:
            self._timer = self._loop.call_at(deadline, self._on_timer)
