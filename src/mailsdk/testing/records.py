"""What the test server received: messages (envelope, raw bytes, parsed), commands, logins.

Layer: L7 (``mailsdk.testing``, a test kit for users). Imports only the standard library and
attrs; the server thread appends, the test reads (every list is guarded by one lock).
"""

from __future__ import annotations

import email
import email.message
import email.policy
import threading

import attrs

__all__ = ["Command", "Login", "ReceivedMessage", "Recording"]


@attrs.frozen
class ReceivedMessage:
    """One message the server read to its end (after the final dot or ``BDAT ... LAST``).

    Attributes:
        mail_from: the envelope sender (``MAIL FROM``).
        mail_options: the ``MAIL FROM`` parameters (``SIZE=...``, ``BODY=8BITMIME``...).
        rcpt_tos: the accepted envelope recipients, in order.
        rcpt_options: each recipient's ``RCPT TO`` parameters.
        data: the message as received: CRLF line ends, dots un-stuffed.
        confirmed: the recipients whose delivery the server confirmed with a 2xx reply (all of
            them, none after a refused final reply or a drop after the dot; for LMTP each
            recipient's own reply decides).
        session: the number of the connection it arrived on (1 for the first).
    """

    mail_from: str
    mail_options: tuple[str, ...]
    rcpt_tos: tuple[str, ...]
    rcpt_options: tuple[tuple[str, ...], ...]
    data: bytes
    confirmed: tuple[str, ...]
    session: int

    @property
    def message(self) -> email.message.EmailMessage:
        """:attr:`data` parsed with the modern ``email.policy.default``."""
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        return parsed

    @property
    def delivered(self) -> bool:
        """True when the server confirmed the message for at least one recipient."""
        return bool(self.confirmed)


@attrs.frozen
class Command:
    """One command line the server read (AUTH continuation lines are not commands).

    Attributes:
        verb: the upper-case verb (``"MAIL"``).
        argument: the rest of the line, or ``None``; an AUTH command keeps only its mechanism.
        session: the connection number.
    """

    verb: str
    argument: str | None
    session: int


@attrs.frozen
class Login:
    """One AUTH attempt.

    Attributes:
        mechanism: the SASL mechanism (``"PLAIN"``, ``"XOAUTH2"``...).
        username: the login name the client gave.
        success: whether the server accepted it.
    """

    mechanism: str
    username: str
    success: bool


@attrs.define
class Recording:
    """Everything one server saw, in order. Read it after the client call returned."""

    received: list[ReceivedMessage] = attrs.field(factory=list[ReceivedMessage])
    commands: list[Command] = attrs.field(factory=list[Command])
    logins: list[Login] = attrs.field(factory=list[Login])
    transcript: bytearray = attrs.field(factory=bytearray)
    sessions: int = 0
    lock: threading.Lock = attrs.field(factory=threading.Lock, repr=False)

    def clear(self) -> None:
        """Forget everything recorded so far."""
        with self.lock:
            self.received.clear()
            self.commands.clear()
            self.logins.clear()
            self.transcript.clear()
            self.sessions = 0
