"""Exit codes scripts can rely on, and the one-line error report with a hint.

Layer: L8 command line (private).

=====  ==========================================================================================
code   meaning
=====  ==========================================================================================
0      every message was accepted for every recipient
1      some recipients (or, for ``batch``, some messages) were refused; the rest were accepted
2      permanent failure: nothing was delivered and retrying the same thing will fail again
       (5xx replies, authentication refused, certificate verification failed)
3      transient failure or unknown outcome: try again later (4xx, connection or timeout), or a
       message whose end-of-data reply never came (it may have been delivered: do not resend
       blindly)
4      usage or configuration error (bad option, missing secret, malformed profile)
130    interrupted (Ctrl-C); ``batch`` still writes its report
=====  ==========================================================================================
"""

from __future__ import annotations

import enum
import re
import typing

from mailsdk.cli._terminal import safe
from mailsdk.errors import (
    AuthenticationFailed,
    AuthError,
    CapabilityError,
    ConfigurationError,
    ConnectError,
    ConnectionLost,
    DeliveryUnknown,
    InvalidInputError,
    MailError,
    MailTimeout,
    RecipientsRefused,
    RemoteProtocolError,
    ReplyError,
    StartTLSRefused,
    TLSError,
    TokenError,
    TransportError,
)
from mailsdk.flows import DeliveryStatus

__all__ = [
    "ExitCode",
    "describe",
    "exit_code_for",
    "exit_code_for_statuses",
    "hint_for",
    "is_unknown_outcome",
    "status_of_error",
]


class ExitCode(enum.IntEnum):
    """The process exit status of every ``mailsdk`` command (see the module docstring)."""

    OK = 0
    PARTIAL = 1
    PERMANENT = 2
    TEMPORARY = 3
    USAGE = 4
    INTERRUPTED = 130


#: How the client names the end-of-data reply it was waiting for when the connection dropped.
_FINAL_REPLY: typing.Final = re.compile(r"DATA[.-]END|BDAT \d+ LAST")


def is_unknown_outcome(error: BaseException) -> bool:
    """True when a message's end-of-data was written and its reply never came.

    :class:`~mailsdk.DeliveryUnknown` says so; a transport error that names the end-of-data
    reply it was waiting for means the same (the client's wording for a lost final reply).
    """
    if isinstance(error, DeliveryUnknown):
        return True
    return isinstance(error, TransportError) and _FINAL_REPLY.search(str(error)) is not None


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code for an error that ended a command."""
    if isinstance(error, ConfigurationError | InvalidInputError):
        return ExitCode.USAGE
    if is_unknown_outcome(error):
        return ExitCode.TEMPORARY
    if isinstance(error, RecipientsRefused):
        # one 4xx recipient may be accepted later: "retrying will not help" would be wrong,
        # whatever order the replies came in (the error's own reply is only the last one)
        transient = any(reply.is_transient for reply in error.refused.values())
        return ExitCode.TEMPORARY if transient else ExitCode.PERMANENT
    if isinstance(error, ReplyError):
        return ExitCode.TEMPORARY if error.is_transient else ExitCode.PERMANENT
    if isinstance(error, TokenError) and "cannot reach" in error.message:
        return ExitCode.TEMPORARY
    if isinstance(error, TLSError | AuthError | CapabilityError | RemoteProtocolError):
        return ExitCode.PERMANENT
    if isinstance(error, MailError | OSError):
        return ExitCode.TEMPORARY
    return ExitCode.TEMPORARY


def exit_code_for_statuses(statuses: typing.Iterable[DeliveryStatus]) -> ExitCode:
    """The exit code for a run of many messages.

    Any FAILED or UNKNOWN message makes it 3 (retry or check them); otherwise any refusal makes
    it 1 when something was delivered, 2 when nothing was; 0 when every message was accepted.
    """
    seen = set(statuses)
    if seen & {DeliveryStatus.FAILED, DeliveryStatus.UNKNOWN}:
        return ExitCode.TEMPORARY
    if seen & {DeliveryStatus.REFUSED, DeliveryStatus.PARTIAL}:
        delivered = seen & {DeliveryStatus.ACCEPTED, DeliveryStatus.PARTIAL}
        return ExitCode.PARTIAL if delivered else ExitCode.PERMANENT
    return ExitCode.OK


def hint_for(
    error: BaseException, *, port: int | None = None, tls: str | None = None
) -> str | None:
    """A short explanation of the usual cause of ``error``, when one is known."""
    text = str(error).lower()
    if is_unknown_outcome(error):
        return "the message may have been delivered: check before sending it again"
    if isinstance(error, AuthenticationFailed):
        return error.hint or "check the user name and password (or the OAuth app's permissions)"
    if isinstance(error, TokenError):
        return "run `mailsdk token --profile NAME` to see the identity provider's answer"
    if isinstance(error, TLSError):
        if "wrong version" in text or "record layer" in text or "unexpected eof" in text:
            if tls == "implicit":
                return (
                    "the server does not speak TLS on connect here; try --tls starttls (port 587)"
                )
            return "TLS failed at once; is this a plaintext port? try --tls starttls or --tls none"
        if "verify" in text or "certificate" in text:
            return (
                "the server's certificate is not trusted for this name; pass --ca-file with "
                "its CA, or check the host name (`mailsdk probe` shows the certificate)"
            )
        return None
    if isinstance(error, MailTimeout | ConnectionLost):
        if tls == "starttls" and port == 465:
            return "port 465 expects TLS from the first byte; use --tls implicit"
        if isinstance(error, MailTimeout) and tls in ("starttls", "opportunistic", "none"):
            return (
                "no greeting in time: an implicit-TLS port (465) waits for a TLS handshake; "
                "try --tls implicit"
            )
        return None
    if isinstance(error, ConnectError):
        return "is the server running and the host:port right? (`mailsdk probe HOST:PORT`)"
    if isinstance(error, CapabilityError):
        if error.extension == "STARTTLS":
            return "the server offers no STARTTLS here; try --tls implicit (port 465)"
        return None
    if isinstance(error, StartTLSRefused):
        return "the server refused STARTTLS; try --tls implicit (port 465)"
    if isinstance(error, ConfigurationError) and "plaintext" in text:
        return "use --tls starttls or implicit; credentials must not cross a plaintext link"
    return None


def describe(error: BaseException, *, port: int | None = None, tls: str | None = None) -> str:
    """One line: what failed, the server's reply and enhanced code, and a hint.

    Server text is escaped (:func:`~mailsdk.cli._terminal.safe`); no secret is ever part of a
    mailsdk error message.
    """
    kind = type(error).__name__
    message = safe(str(error)) or kind
    if isinstance(error, ReplyError) and error.enhanced_status is not None:
        enhanced = str(error.enhanced_status)
        if enhanced not in message:
            message += f" [{enhanced}]"
    line = f"error: {message} ({kind})"
    hint = hint_for(error, port=port, tls=tls)
    if hint:
        line += f"; hint: {hint}"
    return line


def status_of_error(error: MailError) -> DeliveryStatus:
    """The delivery status a failed single send counts as."""
    if is_unknown_outcome(error):
        return DeliveryStatus.UNKNOWN
    if isinstance(error, ReplyError):
        return DeliveryStatus.REFUSED
    return DeliveryStatus.FAILED
