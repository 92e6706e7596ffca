"""Streaming DKIM body hashing (RFC 6376 §3.4.3-§3.4.4, §3.7) and header/body splitting.

Layer: L2 (pure, beside ``mailsdk.esmtp``). May import ``mailsdk.protocol`` and L0; must never
import socket, ssl, asyncio, selectors, threading, time, logging, opentelemetry or msal.

The hash is taken over exactly what the receiver will see: the body is first given the same
CRLF canonicalisation the DATA/BDAT encoders apply on the wire (every bare CR or LF becomes
CRLF, and a body not ending in CRLF gets one), and only then DKIM's ``simple`` or ``relaxed``
body canonicalisation. So a signature over ``b"hi\\n"`` verifies on the ``b"hi\\r\\n"`` the
server stores. Chunks may be split anywhere (inside CRLF, inside a run of spaces, inside a run
of trailing empty lines); the digest never depends on the chunking, and memory stays bounded
by the longest line plus one chunk.
"""

from __future__ import annotations

import enum
import hashlib
import typing

from mailsdk.errors import InvalidInputError
from mailsdk.protocol.body import canonicalize_line_endings

__all__ = ["BodyHasher", "Canonicalization", "HeaderSplitter", "split_message"]

_CRLF: typing.Final = b"\r\n"
#: Bound on a message's header block when it is read from a stream (1 MiB; Postfix's default
#: header_size_limit is 100 KiB, so a real header never comes close).
MAX_HEADER_BYTES: typing.Final = 1 << 20
#: A line longer than this is hashed in pieces (bounded memory for hostile bodies).
_FLUSH_AT: typing.Final = 1 << 16


class Canonicalization(enum.Enum):
    """A DKIM canonicalisation algorithm (RFC 6376 §3.4)."""

    SIMPLE = "simple"
    RELAXED = "relaxed"


class BodyHasher:
    """Incremental ``bh=`` computation: feed raw body chunks, then read :meth:`digest`.

    Args:
        canonicalization: the body canonicalisation (the part after ``/`` in ``c=``).

    Example::

        hasher = BodyHasher(Canonicalization.RELAXED)
        for chunk in chunks:
            hasher.update(chunk)
        bh = hasher.digest()
    """

    __slots__ = (
        "_canonicalization",
        "_emitted",
        "_flush_at",
        "_hash",
        "_line_open",
        "_partial",
        "_pending_blank",
        "_pending_cr",
    )

    def __init__(
        self,
        canonicalization: Canonicalization = Canonicalization.RELAXED,
        *,
        flush_at: int = _FLUSH_AT,
    ) -> None:
        self._canonicalization = canonicalization
        self._hash = hashlib.sha256()
        self._partial = b""  # an incomplete last line (no CRLF seen yet)
        self._pending_cr = False  # a chunk ended in CR: its LF may start the next chunk
        self._pending_blank = 0  # empty lines held back: they count only if text follows
        self._line_open = False  # the start of the current line is hashed already
        self._emitted = False
        self._flush_at = flush_at

    def update(self, chunk: bytes) -> None:
        """Feed the next piece of the body (any size, split anywhere)."""
        if self._pending_cr:
            chunk = b"\r" + chunk
            self._pending_cr = False
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
            self._pending_cr = True
        data = self._partial + canonicalize_line_endings(chunk)
        end = data.rfind(_CRLF)
        if end < 0:
            self._partial = data
        else:
            self._partial = data[end + 2 :]
            self._lines(data[: end + 2])
        if len(self._partial) > self._flush_at:
            self._flush_partial()

    def _relaxed(self, data: bytes) -> bytes:
        # "Reduce all sequences of WSP within a line to a single SP character" and "ignore all
        # whitespace at the end of lines": tabs become spaces, runs are halved until single
        # (log2 of the longest run passes, each at C speed), and the one space a line may then
        # end with goes. Ten times faster than regular expressions on ordinary text.
        data = data.replace(b"\t", b" ")
        while b"  " in data:
            data = data.replace(b"  ", b" ")
        return data.replace(b" \r\n", _CRLF)

    def _emit(self, text: bytes) -> None:
        """Hash the held-back empty lines (in bounded pieces), then ``text``."""
        while self._pending_blank:
            count = min(self._pending_blank, _FLUSH_AT // 2)
            self._hash.update(_CRLF * count)
            self._pending_blank -= count
        self._hash.update(text)
        self._emitted = True

    def _lines(self, block: bytes) -> None:
        """Hash complete lines, holding back a trailing run of empty lines (§3.4.3, §3.4.4)."""
        if self._canonicalization is Canonicalization.RELAXED:
            block = self._relaxed(block)
        if self._line_open:
            # The first line end closes a line whose start was hashed by _flush_partial.
            end = block.find(_CRLF) + 2
            self._hash.update(block[:end])
            self._line_open = False
            block = block[end:]
            if not block:
                return
        text = block.rstrip(_CRLF)
        if not text:
            self._pending_blank += len(block) // 2
            return
        self._emit(text + _CRLF)
        self._pending_blank = (len(block) - len(text)) // 2 - 1

    def _flush_partial(self) -> None:
        """Hash the start of a very long line now, so memory stays bounded (a body may be
        one 100 MB line). Relaxed keeps back trailing spaces: the line may end right after
        them, or the next chunk may continue the run."""
        part = self._partial
        if self._canonicalization is Canonicalization.RELAXED:
            part = part.replace(b"\t", b" ")
            while b"  " in part:
                part = part.replace(b"  ", b" ")
            keep = part.rstrip(b" ")
        else:
            keep = part
        if keep:
            self._emit(keep)
            self._line_open = True
        # A run of spaces compresses to one: a line of nothing but WSP cannot grow either.
        self._partial = part[len(keep) :]

    def digest(self) -> bytes:
        """The SHA-256 body hash (raw bytes; ``bh=`` is its base64). Ends the stream.

        The wire encoders end a body that lacks a final CRLF with one, so an incomplete last
        line is hashed as a complete line, as the receiver will see it.
        """
        tail = self._partial + (_CRLF if self._pending_cr else b"")
        self._partial, self._pending_cr = b"", False
        if tail or self._line_open:
            self._lines(tail if tail.endswith(_CRLF) else tail + _CRLF)
        if not self._emitted and self._canonicalization is Canonicalization.SIMPLE:
            # §3.4.3: "If there is no body or no trailing CRLF on the message body, a CRLF is
            # added." (relaxed hashes an empty body as empty, §3.4.4 and erratum 1384).
            self._hash.update(_CRLF)
            self._emitted = True
        return self._hash.digest()


def split_message(data: bytes) -> tuple[bytes, bytes]:
    """Split a whole message into its header block and body.

    Args:
        data: the message (any line endings).

    Returns:
        ``(header_block, body)``: the header block in canonical CRLF form, every field line
        ending in CRLF, without the empty separator line; the body (canonical CRLF too).
    """
    splitter = HeaderSplitter(limit=None)
    found = splitter.feed(data)
    if found is None:
        return splitter.finish(), b""
    head, body = found
    # A trailing CR is handed back raw by the splitter (its LF could follow in a stream).
    return head, canonicalize_line_endings(body)


class HeaderSplitter:
    """Finds the end of the header block (the first empty line) in a stream of chunks.

    Line ends are canonicalised as the wire encoders do (a bare CR or LF is a line end), so
    the split is where the receiver will see it.

    Args:
        limit: the most header bytes to buffer before giving up (``None``: no limit).
    """

    __slots__ = ("_buffer", "_limit", "_pending_cr")

    def __init__(self, limit: int | None = MAX_HEADER_BYTES) -> None:
        self._buffer = b""
        self._pending_cr = False
        self._limit = limit

    def feed(self, chunk: bytes) -> tuple[bytes, bytes] | None:
        """Add a chunk; return ``(header_block, first_body_bytes)`` once the header ends.

        Raises:
            InvalidInputError: the header grew beyond ``limit`` without an empty line.
        """
        if self._pending_cr:
            chunk = b"\r" + chunk
            self._pending_cr = False
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
            self._pending_cr = True
        searched = max(0, len(self._buffer) - 3)
        self._buffer += canonicalize_line_endings(chunk)
        if self._buffer.startswith(_CRLF):
            end, body_start = 0, 2
        else:
            index = self._buffer.find(b"\r\n\r\n", searched)
            if index < 0:
                if self._limit is not None and len(self._buffer) > self._limit:
                    raise InvalidInputError(
                        f"the message header is longer than {self._limit} bytes (no empty line)"
                    )
                return None
            end, body_start = index + 2, index + 4
        head, body = self._buffer[:end], self._buffer[body_start:]
        if self._pending_cr:
            body += b"\r"
            self._pending_cr = False
        self._buffer = b""
        return head, body

    def finish(self) -> bytes:
        """The header block of a message that has no body (no empty line at all)."""
        head = self._buffer + (_CRLF if self._pending_cr else b"")
        self._buffer, self._pending_cr = b"", False
        if head and not head.endswith(_CRLF):
            head += _CRLF
        return head
