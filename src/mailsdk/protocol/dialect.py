"""Dialect: SMTP (RFC 5321) versus LMTP (RFC 2033), the only differences the core must know.

Layer: L1 (sans-IO protocol core). Imports only the stdlib ``enum``; must never import socket,
ssl, asyncio, selectors, threading, time, logging, opentelemetry or msal.

LMTP is a dialect of the same core, not a second client (docs/architecture.md, "Decisions"):

* the hello command is ``LHLO``; ``EHLO`` and ``HELO`` are not part of LMTP (RFC 2033 §4.1:
  "The LHLO command ... replaces the EHLO command");
* after the end of the message data the server sends *one reply per accepted RCPT*, in RCPT
  order (RFC 2033 §4.2), also after ``BDAT ... LAST`` when CHUNKING is used.
"""

from __future__ import annotations

import enum

__all__ = ["Dialect"]


class Dialect(enum.Enum):
    """Which protocol the connection speaks."""

    #: Simple Mail Transfer Protocol, RFC 5321 (ESMTP when EHLO is used).
    SMTP = "smtp"
    #: Local Mail Transfer Protocol, RFC 2033.
    LMTP = "lmtp"

    @property
    def hello_verbs(self) -> frozenset[str]:
        """The verbs that open the session after the greeting."""
        if self is Dialect.LMTP:
            return frozenset({"LHLO"})
        return frozenset({"EHLO", "HELO"})

    @property
    def hello_verb(self) -> str:
        """The preferred hello verb: ``EHLO`` for SMTP, ``LHLO`` for LMTP."""
        return "LHLO" if self is Dialect.LMTP else "EHLO"

    @property
    def replies_per_recipient(self) -> bool:
        """True when end-of-data gets one reply per accepted recipient (RFC 2033 §4.2)."""
        return self is Dialect.LMTP

    @property
    def default_port(self) -> int:
        """25 for SMTP; LMTP has no standard TCP port (24 is the common private choice)."""
        return 24 if self is Dialect.LMTP else 25
