"""ReplyParser: the incremental, bounded assembler of server replies (RFC 5321 §4.2).

Layer: L1 (sans-IO protocol core). May import L0 (``mailsdk.errors``), ``mailsdk.protocol.reply``
and attrs only; must never import socket, ssl, asyncio, selectors, threading, time, logging,
opentelemetry or msal.

Strategy
--------
Bytes are appended to one ``bytearray``; :meth:`ReplyParser.next_reply` scans it for complete
lines with ``bytearray.find`` (C speed, O(n) over the whole input because the scan position only
moves forward). Lines of the reply being assembled are validated as they complete, so a hostile
server is caught on the first bad line:

* the code is three digits shaped like RFC 5321 §4.2 ``Reply-code = %x32-35 %x30-35 %x30-39``;
* the separator is ``" "`` (last line), ``"-"`` (continuation) or nothing at all (``b"250"``);
* every line of a multiline reply carries the same code (RFC 5321 §4.2.1: "the same code
  on each line");
* bare LF is accepted as a line end (lenient, as smtplib and most MTAs are).

Limits (lenient per line, strict per reply: see docs/architecture.md, "Decisions"). A line longer
than ``max_line_length`` (8 KiB like smtplib's ``_MAXLINE``) fails *as soon as the buffered tail
exceeds it*, even before its newline arrives, so the client can never be made to buffer without
bound; so do more than ``max_lines`` lines or more than ``max_reply_bytes`` bytes in one reply.
Every violation raises :class:`~mailsdk.errors.RemoteProtocolError`.

Reply text is kept as raw bytes (non-UTF-8 text is never lost nor a reason to fail); decoding
happens lazily in :attr:`Reply.text` with ``errors="replace"``.
"""

from __future__ import annotations

import re
import typing

import attrs

from mailsdk.errors import ConfigurationError, RemoteProtocolError
from mailsdk.protocol.reply import EnhancedStatus, Reply

__all__ = ["ReplyLimits", "ReplyParser"]

# RFC 5321 §4.2: Reply-code = %x32-35 %x30-35 %x30-39
_CODE_RE: typing.Final = re.compile(rb"[2-5][0-5][0-9]")
#: Every valid code as its three bytes (the single-line fast path looks codes up here).
_CODES: typing.Final = {
    b"%d%d%d" % (a, b, c): 100 * a + 10 * b + c
    for a in range(2, 6)
    for b in range(6)
    for c in range(10)
}
_ENHANCED_CACHE_LIMIT: typing.Final = 256
_SHOW: typing.Final = 60  # how many bytes of an offending line an error message quotes


def _validate_positive(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ConfigurationError(f"{attribute.name} must be >= 1, got {value}")


@attrs.frozen
class ReplyLimits:
    """Bounds applied to every reply the parser assembles.

    The defaults accept what real servers send and smtplib accepts (smtplib bounds only the
    line, at 8 KiB): an EHLO reply of thousands of keyword lines, an EXPN of a large list. What
    bounds memory is ``max_reply_bytes`` (1 MiB); ``max_lines`` is a backstop above it.

    Attributes:
        max_line_length: longest reply line, excluding its CRLF (smtplib uses 8192).
        max_lines: most lines in one (multiline) reply.
        max_reply_bytes: most bytes in one reply, line ends included.
    """

    max_line_length: int = attrs.field(default=8192, validator=_validate_positive)
    max_lines: int = attrs.field(default=16_384, validator=_validate_positive)
    max_reply_bytes: int = attrs.field(default=1 << 20, validator=_validate_positive)


def _excerpt(line: bytes | bytearray) -> str:
    shown = bytes(line[:_SHOW])
    suffix = "..." if len(line) > _SHOW else ""
    return f"{shown!r}{suffix}"


_KNOWN_LIMIT: typing.Final = 64  # one-line replies remembered (bounded: see next_reply)
#: Only short lines are remembered (the repeated ones are: "250 2.1.5 Ok"), so what a parser
#: keeps after returning its replies stays a few KiB, whatever the line limit.
_KNOWN_LINE: typing.Final = 128


class ReplyParser:
    """Assemble :class:`~mailsdk.protocol.reply.Reply` objects from received bytes.

    Args:
        limits: the bounds to enforce (defaults: 8 KiB lines, 16,384 lines, 1 MiB per reply).
        parse_enhanced: set when the server advertised ``ENHANCEDSTATUSCODES`` (RFC 2034); see
            :attr:`parse_enhanced`.

    Example::

        parser = ReplyParser()
        parser.feed(b"250-mx.example\\r\\n250 SIZE 1000\\r\\n")
        reply = parser.next_reply()   # Reply(code=250, lines=(b"mx.example", b"SIZE 1000"))
    """

    def __init__(self, limits: ReplyLimits | None = None, *, parse_enhanced: bool = False) -> None:
        self.limits: ReplyLimits = limits if limits is not None else ReplyLimits()
        #: When ``True`` (server advertised ENHANCEDSTATUSCODES) the RFC 3463 code at the start of
        #: the first line is always parsed. When ``False`` it is parsed only if its class digit
        #: matches the reply code's first digit (RFC 3463 §2), so a banner such as
        #: ``220 4.2.1 version`` is not misread.
        self.parse_enhanced: bool = parse_enhanced
        self._buf = bytearray()
        self._pos = 0  # scan position in _buf: bytes before it belong to _lines
        self._tail_start = 0  # just past the last LF in _buf: where the incomplete line starts
        self._code: bytes | None = None
        self._lines: list[bytes] = []
        self._reply_bytes = 0
        self._enhanced_cache: dict[bytes, EnhancedStatus | None] = {}
        #: One-line replies already parsed, by their line, for each value of parse_enhanced
        #: (a Reply is immutable, so the same line gives the same object).
        self._known: tuple[dict[bytes, Reply], dict[bytes, Reply]] = ({}, {})

    # -- input ----------------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Append received bytes.

        Args:
            data: bytes read from the server (may be empty).

        Raises:
            RemoteProtocolError: the incomplete last line already exceeds the line limit.
        """
        if not data:
            return
        self._buf += data
        nl = data.rfind(b"\n")  # only the new bytes are searched: O(n) over the whole input
        if nl != -1:
            self._tail_start = len(self._buf) - len(data) + nl + 1
        # +1 leaves room for a CR whose LF has not arrived yet.
        if len(self._buf) - self._tail_start > self.limits.max_line_length + 1:
            raise RemoteProtocolError(
                f"reply line longer than {self.limits.max_line_length} bytes: "
                f"{_excerpt(self._buf[self._tail_start :])}"
            )

    @property
    def holds_bytes(self) -> bool:
        """Some received byte is not yet returned as part of a reply (:attr:`buffered` is
        not empty), told without copying them."""
        return self._pos - self._reply_bytes < len(self._buf)

    @property
    def buffered(self) -> bytes:
        """Every received byte not yet returned as part of a reply (partial lines included)."""
        start = self._pos - self._reply_bytes
        return bytes(self._buf[start:])

    def clear(self) -> None:
        """Forget everything buffered (used when TLS starts: RFC 3207 §4.2)."""
        self._buf.clear()
        self._pos = 0
        self._tail_start = 0
        self._code = None
        self._lines = []
        self._reply_bytes = 0

    # -- output ---------------------------------------------------------------------------------

    def next_reply(self) -> Reply | None:
        """Return the next complete reply, or ``None`` if more bytes are needed.

        Returns:
            The parsed :class:`~mailsdk.protocol.reply.Reply`, or ``None``.

        Raises:
            RemoteProtocolError: a malformed, mixed-code or oversized reply.
        """
        limits = self.limits
        buf = self._buf
        pos = self._pos
        if self._code is None and pos < self._tail_start:
            # The common case, one whole "ddd text" line: no per-line bookkeeping. Anything
            # else (multiline, bad code, over a limit) falls through to the general loop.
            nl = buf.find(b"\n", pos)
            end = nl - 1 if nl > pos and buf[nl - 1] == 0x0D else nl
            if (
                4 <= end - pos <= limits.max_line_length
                and buf[pos + 3] == 0x20
                and nl + 1 - pos <= limits.max_reply_bytes
            ):
                line = bytes(buf[pos:end])
                known = self._known[self.parse_enhanced]
                reply = known.get(line)
                if reply is not None:  # a line seen before ("250 2.1.5 Ok" for every RCPT)
                    del buf[: nl + 1]
                    self._pos = 0
                    self._tail_start -= nl + 1
                    return reply
                code = _CODES.get(line[:3])
                if code is not None:
                    del buf[: nl + 1]
                    self._pos = 0
                    self._tail_start -= nl + 1
                    if len(known) >= _KNOWN_LIMIT:  # queue ids make every final reply new
                        known.clear()
                    text = line[4:]
                    # _enhanced, its cache hit inlined (servers repeat the same few texts).
                    cache = self._enhanced_cache
                    key = text[:10]
                    if key not in cache:
                        reply = Reply(code, (text,), self._enhanced(code, text))
                    else:
                        enhanced = cache[key]
                        if (
                            enhanced is not None
                            and not self.parse_enhanced
                            and enhanced.klass != code // 100
                        ):
                            enhanced = None
                        reply = Reply(code, (text,), enhanced)
                    if len(line) <= _KNOWN_LINE:
                        known[line] = reply
                    return reply
        while True:
            # _tail_start is just past the last LF buffered: no complete line unless _pos is before.
            nl = buf.find(b"\n", self._pos) if self._pos < self._tail_start else -1
            if nl == -1:
                if len(buf) - self._pos > limits.max_line_length + 1:
                    raise RemoteProtocolError(
                        f"reply line longer than {limits.max_line_length} bytes: "
                        f"{_excerpt(buf[self._pos :])}"
                    )
                if self._pos > self._reply_bytes:  # _compact's own test: skip the call
                    self._compact()
                return None
            end = nl - 1 if nl > self._pos and buf[nl - 1] == 0x0D else nl
            line = bytes(buf[self._pos : end])
            self._reply_bytes += nl + 1 - self._pos
            self._pos = nl + 1
            if len(line) > limits.max_line_length:
                raise RemoteProtocolError(
                    f"reply line longer than {limits.max_line_length} bytes: {_excerpt(line)}"
                )
            if self._reply_bytes > limits.max_reply_bytes:
                raise RemoteProtocolError(f"reply longer than {limits.max_reply_bytes} bytes")
            final = self._take_line(line)
            if len(self._lines) > limits.max_lines:
                raise RemoteProtocolError(f"reply has more than {limits.max_lines} lines")
            if final:
                return self._finish()

    def _take_line(self, line: bytes) -> bool:
        """Validate one line, store its text; return True when it ends the reply."""
        code = line[:3]
        if len(line) < 3 or _CODE_RE.fullmatch(code) is None:
            raise RemoteProtocolError(f"malformed reply line (bad code): {_excerpt(line)}")
        if len(line) == 3 or line[3] == 0x20:
            final = True
        elif line[3] == 0x2D:  # "-"
            final = False
        else:
            raise RemoteProtocolError(f"malformed reply line (bad separator): {_excerpt(line)}")
        if self._code is None:
            self._code = code
        elif code != self._code:
            # RFC 5321 §4.2.1: every line of a multiline reply carries the same code.
            raise RemoteProtocolError(
                f"mixed reply codes in one reply: {self._code.decode()} then {code.decode()}"
            )
        self._lines.append(line[4:])
        return final

    def _enhanced(self, code: int, first_line: bytes) -> EnhancedStatus | None:
        """The RFC 3463 status of a reply's first line (cached: servers repeat a few)."""
        # The status with its lookahead fits in 10 bytes, so they decide the parse.
        key = first_line[:10]
        cache = self._enhanced_cache
        if key in cache:
            enhanced = cache[key]
        else:
            enhanced = EnhancedStatus.parse(key)
            if len(cache) < _ENHANCED_CACHE_LIMIT:
                cache[key] = enhanced
        if enhanced is not None and not self.parse_enhanced and enhanced.klass != code // 100:
            return None
        return enhanced

    def _finish(self) -> Reply:
        assert self._code is not None
        code = int(self._code)
        lines = tuple(self._lines)
        enhanced = self._enhanced(code, lines[0]) if lines else None
        self._code = None
        self._lines = []
        self._reply_bytes = 0
        self._compact()
        return Reply(code, lines, enhanced)

    def _compact(self) -> None:
        """Drop consumed bytes once no partial reply refers to them (keeps memory bounded)."""
        drop = self._pos - self._reply_bytes
        if drop > 0:
            del self._buf[:drop]
            self._pos -= drop
            self._tail_start = max(0, self._tail_start - drop)


def unsolicited_reply(parser: ReplyParser) -> RemoteProtocolError | None:
    """The error for reply bytes buffered while no command is owed (they arrived before the
    command about to be written, so cannot answer it), or ``None``: nothing is buffered, or only
    the start of a 421, which RFC 5321 §3.8 lets a server send ahead of the next command."""
    if not parser.holds_bytes:  # the usual case (checked per message): no copy made
        return None
    buffered = parser.buffered
    if buffered and not b"421".startswith(buffered[:3]):
        return RemoteProtocolError(
            "the server sent a reply before the command it would answer was sent: "
            f"{buffered[:60]!r}",
            unsolicited=True,
        )
    return None
