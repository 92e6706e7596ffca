"""Reply and EnhancedStatus: the structured server reply (RFC 5321 §4.2, RFC 3463).

Layer: L1 (sans-IO protocol core). May import L0 and attrs only; never socket, ssl, asyncio,
time, logging, opentelemetry or msal.
"""

from __future__ import annotations

import enum
import re
import typing

import attrs

from mailsdk.protocol.retry import ReplyVerdict, classify_reply

__all__ = ["EnhancedStatus", "Reply", "ReplyClass"]

# RFC 3463 §2: class "." subject "." detail; class is 2, 4 or 5; subject 1-3 digits, detail 1-3.
_ENHANCED_RE: typing.Final = re.compile(rb"^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")


class ReplyClass(enum.Enum):
    """The first digit of a reply code (RFC 5321 §4.2.1)."""

    POSITIVE_COMPLETION = 2
    POSITIVE_INTERMEDIATE = 3
    TRANSIENT_NEGATIVE = 4
    PERMANENT_NEGATIVE = 5


@attrs.frozen(order=False)
class EnhancedStatus:
    """An RFC 3463 enhanced status code ``class.subject.detail`` such as ``5.1.1``."""

    klass: int
    subject: int
    detail: int

    @classmethod
    def parse(cls, text: bytes | str) -> EnhancedStatus | None:
        """Parse an enhanced status at the start of ``text``; ``None`` when there is none."""
        raw = text.encode("ascii", "replace") if isinstance(text, str) else text
        m = _ENHANCED_RE.match(raw)
        if m is None:
            return None
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)))

    def __str__(self) -> str:
        return f"{self.klass}.{self.subject}.{self.detail}"


@attrs.frozen
class Reply:
    """One complete server reply.

    Attributes:
        code: the three-digit reply code.
        lines: the text of each reply line (after ``code`` and the separator, without CRLF),
            kept as raw bytes so non-UTF-8 text is never lost.
        enhanced: the RFC 3463 enhanced status code, when the reply carried one.
    """

    code: int
    lines: tuple[bytes, ...] = ()
    enhanced: EnhancedStatus | None = None

    @classmethod
    def build(cls, code: int, *texts: str | bytes, enhanced: bool = True) -> Reply:
        """Convenience constructor (tests, servers, compat): parses the enhanced status if asked."""
        lines = tuple(t.encode() if isinstance(t, str) else t for t in texts)
        status = EnhancedStatus.parse(lines[0]) if enhanced and lines else None
        return cls(code, lines, status)

    @property
    def message(self) -> bytes:
        """The reply text as bytes, lines joined with ``\\n`` (what smtplib returns)."""
        return b"\n".join(self.lines)

    @property
    def text(self) -> str:
        """The reply text decoded as UTF-8 (undecodable bytes replaced), lines joined by ``\\n``."""
        return self.message.decode("utf-8", "replace")

    @property
    def reply_class(self) -> ReplyClass | None:
        """The class of the reply code (``None`` for a first digit outside 2-5)."""
        try:
            return ReplyClass(self.code // 100)
        except ValueError:
            return None

    @property
    def is_positive(self) -> bool:
        """2xx: the command completed."""
        return 200 <= self.code < 300

    @property
    def is_intermediate(self) -> bool:
        """3xx: the server waits for more (354 after DATA, 334 during AUTH)."""
        return 300 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        """4xx: temporary failure; the same request may succeed later."""
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        """5xx: permanent failure."""
        return 500 <= self.code < 600

    @property
    def verdict(self) -> ReplyVerdict:
        """How a failure with this reply should be retried (:mod:`mailsdk.protocol.retry`)."""
        status = self.enhanced
        triple = (status.klass, status.subject, status.detail) if status is not None else None
        return classify_reply(self.code, triple, self.text)

    @property
    def is_retryable(self) -> bool:
        """True when the same request may succeed if sent again later (a 4xx reply).

        5xx replies are never retryable; see :mod:`mailsdk.protocol.retry` for the table,
        which also tells throttling (slow down) and too-many-recipients (split) apart.
        """
        return self.verdict.retryable

    def __str__(self) -> str:
        return f"{self.code} {self.text}"
