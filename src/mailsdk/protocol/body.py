"""Message body encoding for DATA and BDAT: canonical CRLF, dot-stuffing, terminator, framing.

Layer: L1 (sans-IO protocol core). May import L0 (``mailsdk.errors``) and
``mailsdk.protocol.commands``; must never import socket, ssl, asyncio, selectors, threading,
time, logging, opentelemetry or msal.

SMTP smuggling defence
----------------------
RFC 5321 §2.3.8 says line ends are CRLF and "bare CR or LF characters" must not be sent; RFC 5321
§4.5.2 requires "transparency" (dot-stuffing) so a body line cannot end the data early. Servers
disagree about what ends DATA (``\\n.\\n``, ``\\r.\\r``, ``\\r\\n.\\r``...), which is the 2023 "SMTP
smuggling" attack. The encoder therefore first turns *every* bare CR and bare LF into CRLF and
only then doubles a ``.`` at the start of each line. Its output contains exactly one
``<CRLF>.<CRLF>``: the terminator added by :meth:`DataEncoder.finish`.

Streaming
---------
Chunks may be split anywhere, including between CR and LF and just before a line-start dot. The
encoder holds back a trailing CR until the next chunk shows whether an LF follows, and remembers
whether the output is at the start of a line; so the encoding of a body never depends on how it
was chunked. Work is done per chunk with ``bytes.replace`` (C speed), never per byte.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Iterator

from mailsdk.errors import InvalidInputError
from mailsdk.protocol.commands import Bdat

__all__ = [
    "BdatEncoder",
    "DataEncoder",
    "bdat_frames",
    "canonicalize_line_endings",
    "decode_data",
    "encode_data",
    "scan_content",
]

_CRLF: typing.Final = b"\r\n"
_TERMINATOR: typing.Final = b".\r\n"
DEFAULT_BDAT_CHUNK: typing.Final = 1 << 20


def canonicalize_line_endings(data: bytes) -> bytes:
    """Turn every bare CR and bare LF into CRLF; existing CRLF pairs are kept.

    Args:
        data: any bytes.

    Returns:
        The canonical form (RFC 5321 §2.3.8).
    """
    if b"\r" not in data:
        return data.replace(b"\n", _CRLF)
    # Already canonical (every CR starts a CRLF and every LF ends one): three C-speed counts
    # instead of three copies. Prepared messages are canonical before they are encoded.
    pairs = data.count(_CRLF)
    if pairs == data.count(b"\r") == data.count(b"\n"):
        return data
    return data.replace(_CRLF, b"\n").replace(b"\r", b"\n").replace(b"\n", _CRLF)


class _Canonicalizer:
    """Streaming CRLF canonicalisation that carries a trailing CR across chunk boundaries."""

    __slots__ = ("_pending_cr",)

    def __init__(self) -> None:
        self._pending_cr = False

    def feed(self, chunk: bytes) -> bytes:
        if self._pending_cr:
            chunk = b"\r" + chunk
            self._pending_cr = False
        if chunk.endswith(b"\r"):
            # The LF that would make this CR a CRLF may come in the next chunk.
            chunk = chunk[:-1]
            self._pending_cr = True
        return canonicalize_line_endings(chunk)

    @property
    def pending(self) -> bool:
        """A CR is held back, waiting for the next chunk's first byte."""
        return self._pending_cr

    def flush(self) -> bytes:
        if self._pending_cr:
            self._pending_cr = False
            return _CRLF
        return b""


def scan_content(chunks: Iterable[bytes]) -> tuple[int, bool]:
    """Measure content without holding it: its size once line endings are canonical CRLF
    (what ``SIZE=`` announces, RFC 1870) and whether it has bytes over 0x7F (8BITMIME).

    Args:
        chunks: the content, split anywhere.

    Returns:
        ``(size, eight_bit)``.
    """
    canon = _Canonicalizer()
    size = 0
    eight_bit = False
    for chunk in chunks:
        size += len(canon.feed(chunk))
        eight_bit = eight_bit or not chunk.isascii()
    return size + len(canon.flush()), eight_bit


class DataEncoder:
    """Streaming DATA body encoder: canonical CRLF, dot-stuffing and the terminator.

    Example::

        enc = DataEncoder()
        wire = enc.encode(b"Subject: x\\n\\n.hidden\\n") + enc.finish()
        # b"Subject: x\\r\\n\\r\\n..hidden\\r\\n.\\r\\n"
    """

    __slots__ = ("_at_line_start", "_canon", "_finished")

    def __init__(self) -> None:
        self._canon = _Canonicalizer()
        self._at_line_start = True
        self._finished = False

    def _stuff(self, data: bytes) -> bytes:
        if not data:
            return data
        # RFC 5321 §4.5.2: "if the first character of the line is a period, one additional
        # period is inserted at the beginning of the line".
        out = data.replace(b"\r\n.", b"\r\n..")
        if self._at_line_start and out.startswith(b"."):
            out = b"." + out
        self._at_line_start = out.endswith(_CRLF)
        return out

    def encode(self, chunk: bytes, *, canonical: bool = False) -> bytes:
        """Encode the next piece of the body.

        Args:
            chunk: raw message bytes of any size (may be empty).
            canonical: the caller knows every line ending in ``chunk`` is CRLF already (for
                instance, it canonicalised the bytes itself): they are not scanned again.

        Returns:
            The wire bytes for this chunk (possibly fewer bytes: a trailing CR is held back).

        Raises:
            InvalidInputError: called after :meth:`finish`.
        """
        if self._finished:
            raise InvalidInputError("DataEncoder.encode() called after finish()")
        if canonical and not self._canon.pending and not chunk.endswith(b"\r"):
            return self._stuff(chunk)
        return self._stuff(self._canon.feed(chunk))

    def finish(self) -> bytes:
        """End the body: flush a held CR, add CRLF if the body did not end with one, then ``.``.

        Returns:
            The remaining wire bytes including the ``.\\r\\n`` terminator (RFC 5321 §4.1.1.4).
        """
        if self._finished:
            raise InvalidInputError("DataEncoder.finish() called twice")
        self._finished = True
        tail = self._stuff(self._canon.flush())
        if not self._at_line_start:
            tail += _CRLF
        return tail + _TERMINATOR


def encode_data(body: bytes, *, canonical: bool = False) -> bytes:
    """Encode a whole body for DATA, terminator included (what :class:`DataEncoder` gives for
    it in one piece, without the streaming state).

    Args:
        body: the raw message.
        canonical: the caller knows every line ending in ``body`` is CRLF already.

    Returns:
        The canonical, dot-stuffed body followed by ``.\\r\\n``.
    """
    if not canonical or body.endswith(b"\r"):
        body = canonicalize_line_endings(body)
    if not body:
        return _TERMINATOR
    out = body.replace(b"\r\n.", b"\r\n..")  # RFC 5321 §4.5.2, as DataEncoder._stuff
    if out[0] == 0x2E:  # a "." starting the first line
        out = b"." + out
    if out.endswith(_CRLF):
        return out + _TERMINATOR
    return out + _CRLF + _TERMINATOR


def decode_data(wire: bytes) -> bytes:
    """Invert :func:`encode_data` (for tests and servers): strip the terminator, un-stuff dots.

    Args:
        wire: the bytes sent after the 354 reply, terminator included.

    Returns:
        The canonical message (CRLF line ends, ending in CRLF unless empty).

    Raises:
        InvalidInputError: the terminator is missing.
    """
    if wire == _TERMINATOR:
        return b""
    if not wire.endswith(b"\r\n.\r\n"):
        raise InvalidInputError("DATA body does not end with <CRLF>.<CRLF>")
    body = wire[:-3]
    if body.startswith(b"."):
        body = body[1:]
    return body.replace(b"\r\n..", b"\r\n.")


class BdatEncoder:
    """Streaming BDAT framing (RFC 3030 §2): canonical CRLF payload chunks, no dot-stuffing.

    Args:
        canonicalize: convert bare CR/LF to CRLF (default). Pass ``False`` for ``BODY=BINARYMIME``
            content that must go out byte for byte.
    """

    __slots__ = ("_canon", "_canonicalize", "_finished")

    def __init__(self, *, canonicalize: bool = True) -> None:
        self._canon = _Canonicalizer()
        self._canonicalize = canonicalize
        self._finished = False

    def payload(self, chunk: bytes, *, last: bool) -> bytes:
        """Return the payload bytes for ``chunk`` (a held CR is flushed when ``last``).

        Raises:
            InvalidInputError: called again after the ``last`` chunk.
        """
        if self._finished:
            raise InvalidInputError("BDAT LAST chunk already sent")
        self._finished = last
        if not self._canonicalize:
            return chunk
        data = self._canon.feed(chunk)
        return data + self._canon.flush() if last else data

    def frame(self, chunk: bytes, *, last: bool) -> tuple[Bdat, bytes]:
        """Frame one chunk.

        Args:
            chunk: raw message bytes.
            last: whether this is the final chunk (``BDAT n LAST``).

        Returns:
            ``(command, payload)``: the :class:`Bdat` header command and the payload bytes.
        """
        data = self.payload(chunk, last=last)
        return Bdat(len(data), last), data


def bdat_frames(
    body: bytes, chunk_size: int = DEFAULT_BDAT_CHUNK, *, canonicalize: bool = True
) -> Iterator[tuple[bytes, bytes]]:
    """Split a whole body into BDAT frames; the final one carries ``LAST``.

    Args:
        body: the raw message.
        chunk_size: maximum payload bytes per frame (> 0).
        canonicalize: convert bare CR/LF to CRLF first.

    Yields:
        ``(header_bytes, payload_bytes)`` pairs such as ``(b"BDAT 5 LAST\\r\\n", b"hi\\r\\n")``.
        An empty body gives a single ``BDAT 0 LAST`` frame.

    Raises:
        InvalidInputError: ``chunk_size`` is not positive.
    """
    if chunk_size <= 0:
        raise InvalidInputError("chunk_size must be positive")
    data = canonicalize_line_endings(body) if canonicalize else body
    if not data:
        yield Bdat(0, True).to_bytes(), b""
        return
    for start in range(0, len(data), chunk_size):
        part = data[start : start + chunk_size]
        last = start + chunk_size >= len(data)
        yield Bdat(len(part), last).to_bytes(), part
