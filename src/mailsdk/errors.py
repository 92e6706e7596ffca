"""The single exception hierarchy of mailsdk.

Layer: L0 (foundation). May import only ``mailsdk._types`` and, for typing only,
``mailsdk.protocol.reply``. Must never import anything else from mailsdk.

The tree::

    MailError (OSError)
    ├── ProtocolError
    │   ├── LocalProtocolError        the API was misused for the current state
    │   └── RemoteProtocolError       malformed / mixed-code / oversized reply, unexpected bytes
    ├── TransportError
    │   ├── ConnectError (ConnectionError)   ``.attempts``: every address tried and why it failed
    │   │   └── ProxyError            the proxy refused, or could not reach the target (``.side``)
    │   │       └── ProxyTimeout      the proxy stalled (also a ConnectTimeout)
    │   ├── ConnectionLost (ConnectionError)   includes a disconnect mid-DATA
    │   │   └── DeliveryUnknown       end-of-data was written, its reply never came
    │   ├── TLSError
    │   └── MailTimeout (TimeoutError)
    │       ├── ConnectTimeout (also ConnectError)
    │       ├── ReadTimeout
    │       ├── WriteTimeout
    │       └── PoolTimeout           no pooled connection became free in time
    ├── ReplyError                    the server said no; carries ``.reply`` and ``.command``
    │   ├── GreetingRefused
    │   ├── HeloRefused
    │   ├── StartTLSRefused
    │   ├── AuthenticationFailed
    │   ├── SenderRefused             ``.sender``
    │   ├── RecipientsRefused         ``.refused`` (recipient -> Reply); only when none accepted
    │   ├── DataRefused
    │   └── CommandRefused            any other command (VRFY, EXPN, HELP, NOOP, RSET, execute)
    ├── CapabilityError               something required is missing (STARTTLS, SMTPUTF8, SIZE, ...)
    ├── AuthError                     local SASL failure (no common mechanism, bad challenge...)
    │   └── TokenError                a token provider failed (msal / google-auth error details)
    ├── InvalidInputError (ValueError)   CR/LF/control characters, malformed address
    └── ConfigurationError (ValueError)  builder / config validation failure

Two pitfalls are avoided deliberately (and tested):

* ``OSError(code, message)`` would read the pair as errno/strerror and print ``[Errno 550]``.
  Every mailsdk error passes a *single* message to ``OSError``; codes live in attributes.
* Exceptions with custom constructors do not unpickle by default. ``MailError.__reduce__``
  rebuilds the instance from its message and restores every attribute from ``__dict__``.

No error ever holds a password or token: messages are built from replies and addresses only.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping

if typing.TYPE_CHECKING:
    from mailsdk.protocol.reply import EnhancedStatus, Reply

__all__ = [
    "AuthError",
    "AuthenticationFailed",
    "CapabilityError",
    "CommandRefused",
    "ConfigurationError",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionLost",
    "DataRefused",
    "DeliveryUnknown",
    "GreetingRefused",
    "HeloRefused",
    "InvalidInputError",
    "LocalProtocolError",
    "MailError",
    "MailTimeout",
    "PoolTimeout",
    "ProtocolError",
    "ProxyError",
    "ProxyTimeout",
    "ReadTimeout",
    "RecipientsRefused",
    "RemoteProtocolError",
    "ReplyError",
    "SenderRefused",
    "StartTLSRefused",
    "TLSError",
    "TokenError",
    "TransportError",
    "WriteTimeout",
]


#: The shared, immutable default of :attr:`TransportError.recipient_replies`.
_NO_REPLIES: typing.Final[Mapping[str, Reply]] = types.MappingProxyType({})


def _restore(cls: type[MailError], message: str) -> MailError:
    """Unpickle helper: build the instance without running the subclass constructor."""
    exc = cls.__new__(cls, message)
    OSError.__init__(exc, message)
    return exc


class MailError(OSError):
    """Base class of every mailsdk error.

    It is an ``OSError`` (as ``smtplib.SMTPException`` is), so ``except OSError`` keeps working.

    Args:
        message: the human-readable description; never contains secrets.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    @property
    def is_retryable(self) -> bool:
        """True when sending the same message again may succeed and cannot duplicate it.

        Local conditions (bad input, configuration, capabilities, SASL) and protocol errors are
        not retryable; transport failures before the end of data are (a connection that could
        not be opened, was lost or timed out); :class:`DeliveryUnknown` is not (the server may
        have the message); replies follow the reply table (4xx yes, 5xx never).
        """
        return False

    def __reduce__(self) -> tuple[typing.Any, ...]:
        return (_restore, (type(self), self.message), dict(self.__dict__))


# --- protocol -------------------------------------------------------------------------------


class ProtocolError(MailError):
    """The SMTP conversation broke its rules (on our side or the server's)."""


class LocalProtocolError(ProtocolError):
    """The API was used in a way that is illegal in the connection's current state."""


class RemoteProtocolError(ProtocolError):
    """The server sent something malformed, oversized, mixed-code or unexpected.

    Attributes:
        reply_missing: the replies ran ahead of the commands (a reply only a later command
            could cause, such as a 354 to a RCPT): a reply the server owed never came, so the
            replies paired just before may belong to later commands.
        unsolicited: reply bytes arrived before the command they would answer was queued, so
            that command (an end of data, say) was refused before any of it was written.
    """

    def __init__(
        self, message: str, *, reply_missing: bool = False, unsolicited: bool = False
    ) -> None:
        super().__init__(message)
        self.reply_missing = reply_missing
        self.unsolicited = unsolicited


# --- transport ------------------------------------------------------------------------------


class TransportError(MailError):
    """The network or TLS layer failed.

    Attributes:
        recipient_replies: LMTP (RFC 2033 §4.2): the per-recipient replies to the end of the
            data that arrived before the failure, so the caller knows who already has the
            message; empty otherwise.
    """

    recipient_replies: Mapping[str, Reply] = _NO_REPLIES

    @property
    def is_retryable(self) -> bool:
        """True: the message was not handed over, a new connection may succeed."""
        return True


class ConnectError(TransportError, ConnectionError):
    """The connection could not be established.

    Attributes:
        attempts: every address that was tried, in order, as ``(address, reason)`` pairs, e.g.
            ``(("[2001:db8::1]:587", "timed out"), ("192.0.2.1:587", "Connection refused"))``;
            empty when no address was tried (the name did not resolve).
    """

    attempts: tuple[tuple[str, str], ...] = ()


class ConnectionLost(TransportError, ConnectionError):
    """The connection closed or reset unexpectedly (including in the middle of DATA)."""


class DeliveryUnknown(ConnectionLost):
    """The message's fate is unknown: its end-of-data (or ``BDAT LAST``) was written and the
    final reply never arrived (the connection dropped or the reply deadline passed).

    The server may have accepted and queued the message. mailsdk never resends it on its own;
    ``cause`` keeps the transport error that ended the wait. With LMTP,
    ``recipient_replies`` holds the per-recipient replies that did arrive (those recipients'
    fates are known); by default the cause's.
    """

    def __init__(
        self,
        message: str,
        *,
        cause: MailError | None = None,
        recipient_replies: Mapping[str, Reply] | None = None,
    ) -> None:
        super().__init__(message)
        self.cause = cause
        if recipient_replies is None and isinstance(cause, TransportError):
            recipient_replies = cause.recipient_replies
        if recipient_replies:
            self.recipient_replies = dict(recipient_replies)

    @property
    def is_retryable(self) -> bool:
        """False: the server may have queued the message; sending it again may duplicate it."""
        return False


class TLSError(TransportError):
    """The TLS handshake or certificate verification failed."""

    @property
    def is_retryable(self) -> bool:
        """False: a certificate or protocol mismatch fails the same way again."""
        return False


class MailTimeout(TransportError, TimeoutError):
    """A deadline passed.

    Attributes:
        phase: the deadline that passed: ``connect``, ``greeting``, ``command``, ``data``,
            ``tls`` or ``quit`` (see :class:`mailsdk.Timeouts`); the transport alone says
            ``read``/``write``.
        hint: the usual cause, when one is known (e.g. plaintext against an implicit-TLS
            port); also appended to the message.
    """

    def __init__(self, message: str, *, phase: str | None = None, hint: str | None = None) -> None:
        if hint:
            message = f"{message} (hint: {hint})"
        super().__init__(message)
        self.phase = phase
        self.hint = hint


class ConnectTimeout(MailTimeout, ConnectError):
    """Connecting (TCP and, for implicit TLS, the handshake) took longer than the deadline."""


#: Which side of a proxy tunnel failed: the proxy itself, or its connection to the target.
ProxySide: typing.TypeAlias = typing.Literal["proxy", "target"]


class ProxyError(ConnectError):
    """A proxy (SOCKS5, SOCKS4a, HTTP CONNECT) could not open the tunnel.

    The message and attributes name the proxy without its password.

    Args:
        message: the description.
        side: ``"proxy"`` when the proxy itself failed (unreachable, refused our credentials,
            broke its protocol, stalled), ``"target"`` when the proxy worked but could not reach
            the mail server (SOCKS5 "host unreachable", "connection refused", HTTP 502/504...).
        proxy: the proxy URL with any password removed.
        reply_code: the proxy's status (a SOCKS reply code or an HTTP status), if it sent one.
    """

    def __init__(
        self, message: str, *, side: ProxySide, proxy: str = "", reply_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.side: ProxySide = side
        self.proxy = proxy
        self.reply_code = reply_code


class ProxyTimeout(ProxyError, ConnectTimeout):
    """The proxy did not finish its handshake before the connect deadline (``side="proxy"``)."""

    def __init__(self, message: str, *, proxy: str = "", phase: str | None = "proxy") -> None:
        ProxyError.__init__(self, message, side="proxy", proxy=proxy)
        self.phase = phase


class ReadTimeout(MailTimeout):
    """The server did not complete a reply before the deadline."""


class WriteTimeout(MailTimeout):
    """Sending to the server did not complete before the deadline."""


class PoolTimeout(MailTimeout):
    """A pooled send waited longer than the checkout timeout for a free connection."""


# --- replies --------------------------------------------------------------------------------


class ReplyError(MailError):
    """The server answered with a reply the operation cannot continue from.

    Args:
        reply: the structured server reply.
        command: the command verb (e.g. ``"MAIL"``) that received it, if any.
        message: an optional description; defaults to one built from the reply.

    Attributes:
        reply: the :class:`~mailsdk.protocol.reply.Reply`.
        command: the verb the reply answered, or ``None`` (greeting).
    """

    def __init__(
        self, reply: Reply, command: str | None = None, message: str | None = None
    ) -> None:
        if message is None:
            where = f"{command} " if command else ""
            message = f"{where}refused: {reply.code} {reply.text}".strip()
        super().__init__(message)
        self.reply = reply
        self.command = command

    @property
    def smtp_code(self) -> int:
        """The three-digit reply code (smtplib compatible)."""
        return self.reply.code

    @property
    def smtp_error(self) -> bytes:
        """The reply text as bytes, lines joined by ``\\n`` (smtplib compatible)."""
        return self.reply.message

    @property
    def enhanced_status(self) -> EnhancedStatus | None:
        """The RFC 3463 enhanced status code of the reply, if there was one."""
        return self.reply.enhanced

    @property
    def is_transient(self) -> bool:
        """True for 4xx replies: the same request may succeed later."""
        return self.reply.is_transient

    @property
    def is_retryable(self) -> bool:
        """The reply's classification (4xx retryable, 5xx never; see ``Reply.is_retryable``)."""
        return self.reply.is_retryable

    @property
    def is_permanent(self) -> bool:
        """True for 5xx replies: retrying the same request will fail again."""
        return self.reply.is_permanent


class GreetingRefused(ReplyError):
    """The server's greeting was not 220 (typically 554 or 421)."""


class HeloRefused(ReplyError):
    """EHLO/LHLO and the HELO fallback were both refused."""


class StartTLSRefused(ReplyError):
    """The server refused STARTTLS."""


class AuthenticationFailed(ReplyError):
    """The server rejected authentication (535, 534, 454...).

    Attributes:
        mechanism: the SASL mechanism name that was tried.
        server_error: the decoded JSON error of an OAuth error challenge, if any (no tokens).
        hint: a short explanation of the usual cause, when one is known.
    """

    def __init__(
        self,
        reply: Reply,
        command: str | None = "AUTH",
        message: str | None = None,
        *,
        mechanism: str | None = None,
        server_error: Mapping[str, object] | None = None,
        hint: str | None = None,
    ) -> None:
        if message is None:
            mech = f" {mechanism}" if mechanism else ""
            message = f"AUTH{mech} failed: {reply.code} {reply.text}"
            if hint:
                message += f" (hint: {hint})"
        super().__init__(reply, command, message)
        self.mechanism = mechanism
        self.server_error = dict(server_error) if server_error is not None else None
        self.hint = hint


class SenderRefused(ReplyError):
    """MAIL FROM was refused. ``sender`` is the refused reverse-path."""

    def __init__(
        self, reply: Reply, sender: str, command: str | None = "MAIL", message: str | None = None
    ) -> None:
        if message is None:
            message = f"sender {sender!r} refused: {reply.code} {reply.text}"
        super().__init__(reply, command, message)
        self.sender = sender


class RecipientsRefused(ReplyError):
    """Every recipient was refused; nothing was sent.

    ``reply`` is the reply to the last refused recipient, ``refused`` maps each recipient to its
    reply. Partial acceptance is *not* an error: it is reported in the send result.
    """

    def __init__(
        self, refused: Mapping[str, Reply], command: str | None = "RCPT", message: str | None = None
    ) -> None:
        if not refused:
            raise ValueError("RecipientsRefused needs at least one refused recipient")
        last = list(refused.values())[-1]
        if message is None:
            parts = ", ".join(f"{rcpt!r}: {r.code} {r.text}" for rcpt, r in refused.items())
            message = f"all recipients refused: {parts}"
        super().__init__(last, command, message)
        self.refused: dict[str, Reply] = dict(refused)

    @property
    def is_retryable(self) -> bool:
        """True when at least one recipient was refused with a retryable (4xx) reply."""
        return any(reply.is_retryable for reply in self.refused.values())


class DataRefused(ReplyError):
    """DATA/BDAT or the end-of-data reply was a refusal."""


class CommandRefused(ReplyError):
    """Any other command (NOOP, RSET, VRFY, EXPN, HELP, a raw command) was refused."""


# --- local conditions -------------------------------------------------------------------------


class CapabilityError(MailError):
    """Something the operation requires is missing from the server (or disallowed by policy).

    Attributes:
        extension: the ESMTP keyword concerned (e.g. ``"SMTPUTF8"``), if any.
    """

    def __init__(self, message: str, *, extension: str | None = None) -> None:
        super().__init__(message)
        self.extension = extension


class AuthError(MailError):
    """A local SASL failure: no common mechanism, a malformed challenge, too many rounds."""


class TokenError(AuthError):
    """A token provider (msal, google-auth) could not produce a token.

    Attributes:
        error: the provider's error code (e.g. msal's ``invalid_client``).
        error_description: the provider's description (never contains a secret).
        correlation_id: the identity provider's correlation id, when given.
    """

    def __init__(
        self,
        message: str,
        *,
        error: str | None = None,
        error_description: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.error = error
        self.error_description = error_description
        self.correlation_id = correlation_id


class InvalidInputError(MailError, ValueError):
    """Input that must never reach the wire: CR, LF, NUL or other controls; malformed addresses."""


class ConfigurationError(MailError, ValueError):
    """The builder or configuration is inconsistent (e.g. credentials over plaintext)."""
