"""Blocking reply reading for ``mailsdk.compat.smtplib``: a deadline-aware line reader and the
reply assembler built on :class:`mailsdk.protocol.ReplyParser`.

Layer: L7 (compat, private). May import ``mailsdk.protocol`` and L0 plus the standard library;
must never import ``mailsdk.api`` (a sibling) nor anything above L7.

Why not ``sock.makefile('rb')`` as smtplib does? A buffered file restarts the socket timeout
on every ``recv``, so a server trickling one byte at a time keeps a single ``readline`` alive
for ``8192 x timeout`` seconds. :class:`SocketLineReader` reads with ``sock.recv`` and re-arms
the socket timeout with the time *left* before each call, so a whole reply is bounded by one
deadline (deadlines are total per command: docs/architecture.md, "Deadlines"). It only needs
``recv``, ``gettimeout`` and ``settimeout``, which CPython's ``test.mock_socket`` double also
provides.

Replies are assembled by :class:`ReplyAssembler`:

* lines that follow RFC 5321 §4.2 go through the sans-IO :class:`~mailsdk.protocol.ReplyParser`
  (code syntax, continuation, same code on every line);
* a reply the RFC grammar rejects (a ``199`` code, a mixed-code multiline reply, a non-numeric
  code...) is read with smtplib's historical rules instead (code ``-1`` when not numeric, the
  last line decides), because a drop-in replacement must return what smtplib returned;
* either way the reply is bounded in lines and bytes (:data:`COMPAT_LIMITS`), beyond smtplib's
  per-line ``_MAXLINE``: a server can never make the client buffer without limit.
"""

from __future__ import annotations

import time
import typing

from mailsdk.errors import RemoteProtocolError
from mailsdk.protocol import ReplyLimits, ReplyParser

if typing.TYPE_CHECKING:
    import socket

__all__ = ["COMPAT_LIMITS", "ReplyAssembler", "ReplyTooLongError", "SocketLineReader"]

#: Limits for compat replies: the native client's (smtplib's 8 KiB per line and, unlike smtplib,
#: a 1 MiB bound per reply). Generous on purpose: EXPN of a large list is a long, legitimate
#: reply, and so is an EHLO reply of thousands of keywords.
COMPAT_LIMITS: typing.Final = ReplyLimits()
_RECV_SIZE: typing.Final = 8192
_STRIP: typing.Final = b" \t\r\n"


class SocketLineReader:
    """A minimal file-like reader over a socket with an optional overall deadline.

    Args:
        sock: a connected socket (or any object with ``recv``/``gettimeout``/``settimeout``).
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()
        self._eof = False

    def readline(self, limit: int = -1, deadline: float | None = None) -> bytes:
        """Return the next line (with its line end), like ``BufferedReader.readline``.

        Args:
            limit: return at most this many bytes (a longer line is cut); ``-1`` for no limit.
            deadline: a ``time.monotonic()`` instant after which reading fails.

        Returns:
            The line; a partial line at end of file; ``b""`` at end of file.

        Raises:
            TimeoutError: the deadline passed.
            OSError: the socket failed.
        """
        while True:
            nl = self._buf.find(b"\n")
            if nl != -1 and (limit < 0 or nl < limit):
                return self._take(nl + 1)
            if 0 <= limit <= len(self._buf):
                return self._take(limit)
            if self._eof:
                return self._take(len(self._buf))
            data = self._recv(deadline)
            if data:
                self._buf += data
            else:
                self._eof = True

    def _take(self, n: int) -> bytes:
        line = bytes(self._buf[:n])
        del self._buf[:n]
        return line

    def _recv(self, deadline: float | None) -> bytes:
        if deadline is None:
            return self._sock.recv(_RECV_SIZE)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out")
        previous = self._sock.gettimeout()
        self._sock.settimeout(remaining)
        try:
            return self._sock.recv(_RECV_SIZE)
        finally:
            self._sock.settimeout(previous)

    def close(self) -> None:
        """Drop buffered bytes (the socket itself belongs to the SMTP object)."""
        self._buf.clear()
        self._eof = True


class ReplyTooLongError(Exception):
    """A reply exceeded the line-count or byte limit (internal; mapped to SMTPResponseException)."""


def lenient_code(line: bytes) -> int:
    """smtplib's reading of a reply code: ``int(line[:3])``, or ``-1`` when not a number."""
    try:
        return int(line[:3])
    except ValueError:
        return -1


class ReplyAssembler:
    """Turn reply lines into smtplib's ``(code, message)`` pairs; one reply at a time.

    Args:
        limits: the bounds; :data:`COMPAT_LIMITS` by default.
    """

    def __init__(self, limits: ReplyLimits = COMPAT_LIMITS) -> None:
        self.limits = limits
        self._parser = ReplyParser(limits)
        self._lines: list[bytes] = []
        self._size = 0
        self._lenient = False

    def reset(self) -> None:
        """Forget any partial reply (called before reading a new one)."""
        self._parser.clear()
        self._lines = []
        self._size = 0
        self._lenient = False

    def add(self, line: bytes) -> tuple[int, bytes] | None:
        """Add one received line.

        Args:
            line: a line as read (line end included, or a partial last line at end of file).

        Returns:
            ``(code, message)`` when the line completes the reply (message lines stripped and
            joined by ``\\n``, as smtplib returns them), else ``None``.

        Raises:
            ReplyTooLongError: more than ``limits.max_lines`` lines or ``max_reply_bytes`` bytes.
        """
        self._lines.append(line)
        self._size += len(line)
        if len(self._lines) > self.limits.max_lines or self._size > self.limits.max_reply_bytes:
            raise ReplyTooLongError(
                f"reply longer than {self.limits.max_lines} lines or "
                f"{self.limits.max_reply_bytes} bytes"
            )
        if not self._lenient:
            try:
                self._parser.feed(line if line.endswith(b"\n") else line + b"\r\n")
                reply = self._parser.next_reply()
            except RemoteProtocolError:
                # Not RFC 5321 §4.2 syntax: fall back to smtplib's rules for this reply.
                self._parser.clear()
                self._lenient = True
            else:
                if reply is None:
                    return None
                return reply.code, b"\n".join(text.strip(_STRIP) for text in reply.lines)
        code = lenient_code(line)
        if code == -1 or line[3:4] != b"-":
            return code, b"\n".join(raw[4:].strip(_STRIP) for raw in self._lines)
        return None
