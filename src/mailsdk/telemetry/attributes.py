"""Span, event and metric names, attribute keys and the redaction rules, all in one place.

Layer: L3 (telemetry). May import ``mailsdk.protocol.reply`` (read-only models) and L0
(``mailsdk.errors``); must never import ``mailsdk.transport``, ``flows``, ``auth``, ``client``,
``opentelemetry`` or ``msal``. Pure functions only: this module decides *what* may be recorded;
``otel.py`` decides *when*.

Redaction rules (enforced by the helpers below and by ``otel.py``; tested in
``tests/telemetry/test_redaction.py``):

* Never recorded: AUTH payloads (the interface never receives them), passwords, tokens, message
  content and reply *text* (it can echo addresses or, for AUTH, server challenges). A reply is
  recorded as its code and RFC 3463 enhanced status only.
* Sender and recipient addresses only with ``record_addresses=True``; otherwise counts and the
  deduplicated, sorted recipient *domains*.
* Exceptions are recorded as their qualified type (``error.type``) plus, for a ``ReplyError``, the
  reply code. A message is recorded only with ``record_addresses=True`` and only for mailsdk errors
  that do not embed reply text (``ReplyError`` messages do, so theirs never is). Stack traces keep
  the frames and drop every exception message.
* Command verbs are normalised (``normalize_verb``): only known verbs (plus those the caller
  declares) are recorded, so neither a raw command line passed by mistake nor a SASL payload sent
  with ``execute`` can reach a span name or a metric attribute.
"""

from __future__ import annotations

import re
import traceback
import typing

from mailsdk.errors import MailError, ReplyError

if typing.TYPE_CHECKING:
    from collections.abc import Container, Iterable

    from mailsdk.protocol.reply import Reply

__all__ = [
    "COMMAND_SPAN_PREFIX",
    "DURATION_BUCKETS",
    "ERROR_TYPE",
    "ERROR_TYPE_OTHER",
    "EVENT_EXCEPTION",
    "EVENT_RECIPIENT_REPLY",
    "EXCEPTION_MESSAGE",
    "EXCEPTION_STACKTRACE",
    "EXCEPTION_TYPE",
    "INSTRUMENTATION_NAME",
    "KNOWN_VERBS",
    "METRIC_COMMAND_DURATION",
    "METRIC_MESSAGES",
    "METRIC_MESSAGE_SIZE",
    "METRIC_POOL_PREFIX",
    "METRIC_RECIPIENTS",
    "NETWORK_PEER_ADDRESS",
    "NETWORK_PEER_PORT",
    "NETWORK_PROTOCOL_NAME",
    "NETWORK_TRANSPORT",
    "OUTCOME",
    "OUTCOME_ACCEPTED",
    "OUTCOME_FAILED",
    "OUTCOME_REFUSED",
    "REPLY_CLASS_ERROR",
    "SIZE_BUCKETS",
    "SASL_MECHANISM",
    "SCHEMA_URL",
    "SERVER_ADDRESS",
    "SERVER_PORT",
    "SMTP_COMMAND",
    "SMTP_EXTENSIONS",
    "SMTP_MESSAGE_SIZE",
    "SMTP_PIPELINE_SIZE",
    "SMTP_RECIPIENTS_ACCEPTED",
    "SMTP_RECIPIENTS_ADDRESSES",
    "SMTP_RECIPIENTS_REFUSED",
    "SMTP_RECIPIENTS_REFUSED_ADDRESSES",
    "SMTP_RECIPIENT_ADDRESS",
    "SMTP_RECIPIENT_COUNT",
    "SMTP_RECIPIENT_DOMAINS",
    "SMTP_RECIPIENT_INDEX",
    "SMTP_REPLY_CLASS",
    "SMTP_REPLY_CODE",
    "SMTP_REPLY_ENHANCED_STATUS",
    "SMTP_SENDER",
    "SPAN_SEND",
    "SPAN_SESSION",
    "TLS_CIPHER",
    "TLS_IMPLICIT",
    "TLS_VERSION",
    "VERB_AUTH_RESPONSE",
    "VERB_END_OF_DATA",
    "VERB_OTHER",
    "error_type",
    "exception_message",
    "is_keyword",
    "normalize_mechanism",
    "normalize_verb",
    "recipient_domains",
    "reply_attributes",
    "reply_class",
    "sanitized_stacktrace",
]

# --- scope -----------------------------------------------------------------------------------

#: The instrumentation scope name given to ``get_tracer``/``get_meter``.
INSTRUMENTATION_NAME: typing.Final = "mailsdk"
#: Semantic-conventions schema whose (stable) attribute names are used below.
SCHEMA_URL: typing.Final = "https://opentelemetry.io/schemas/1.26.0"

# --- span and event names --------------------------------------------------------------------

#: One connection, from connect to QUIT/close (kind CLIENT).
SPAN_SESSION: typing.Final = "smtp.session"
#: One mail transaction, MAIL FROM to the final reply (kind CLIENT).
SPAN_SEND: typing.Final = "smtp.send"
#: Command spans are named ``"SMTP " + verb``, e.g. ``"SMTP EHLO"``, ``"SMTP DATA.END"``.
COMMAND_SPAN_PREFIX: typing.Final = "SMTP "
#: The pseudo-verb of the end-of-data reply: the body, ``<CRLF>.<CRLF>`` and the final reply
#: (RFC 5321 §4.1.1.4). ``SMTP DATA`` itself ends at the 354.
VERB_END_OF_DATA: typing.Final = "DATA.END"
#: The pseudo-verb of an AUTH continuation line (RFC 4954 §4): payloads are never recorded.
VERB_AUTH_RESPONSE: typing.Final = "AUTH.RESPONSE"
#: Any verb that is not a plain keyword.
VERB_OTHER: typing.Final = "_OTHER"
#: Span event on the ``SMTP DATA.END`` span, one per LMTP per-recipient reply (RFC 2033 §4.2).
EVENT_RECIPIENT_REPLY: typing.Final = "mailsdk.lmtp.recipient_reply"
#: The semconv exception event (recorded sanitised, see the module docstring).
EVENT_EXCEPTION: typing.Final = "exception"

# --- stable semantic-convention attributes ---------------------------------------------------

SERVER_ADDRESS: typing.Final = "server.address"
SERVER_PORT: typing.Final = "server.port"
NETWORK_PEER_ADDRESS: typing.Final = "network.peer.address"
NETWORK_PEER_PORT: typing.Final = "network.peer.port"
NETWORK_TRANSPORT: typing.Final = "network.transport"
NETWORK_PROTOCOL_NAME: typing.Final = "network.protocol.name"
ERROR_TYPE: typing.Final = "error.type"
EXCEPTION_TYPE: typing.Final = "exception.type"
EXCEPTION_MESSAGE: typing.Final = "exception.message"
EXCEPTION_STACKTRACE: typing.Final = "exception.stacktrace"
#: The semconv fallback value of ``error.type`` (a span ended without a known cause).
ERROR_TYPE_OTHER: typing.Final = "_OTHER"

# --- mailsdk attributes ----------------------------------------------------------------------

SMTP_COMMAND: typing.Final = "mailsdk.smtp.command"
SMTP_REPLY_CODE: typing.Final = "mailsdk.smtp.reply.code"
SMTP_REPLY_ENHANCED_STATUS: typing.Final = "mailsdk.smtp.reply.enhanced_status"
#: Metric attribute: ``"2xx"``, ``"3xx"``, ``"4xx"``, ``"5xx"`` or ``"error"`` (no reply).
SMTP_REPLY_CLASS: typing.Final = "mailsdk.smtp.reply.class"
SMTP_PIPELINE_SIZE: typing.Final = "mailsdk.smtp.pipeline.size"
SMTP_EXTENSIONS: typing.Final = "mailsdk.smtp.extensions"
SMTP_MESSAGE_SIZE: typing.Final = "mailsdk.smtp.message.size"
SMTP_RECIPIENT_COUNT: typing.Final = "mailsdk.smtp.recipient_count"
SMTP_RECIPIENTS_ACCEPTED: typing.Final = "mailsdk.smtp.recipients.accepted"
SMTP_RECIPIENTS_REFUSED: typing.Final = "mailsdk.smtp.recipients.refused"
SMTP_RECIPIENT_DOMAINS: typing.Final = "mailsdk.smtp.recipient_domains"
#: LMTP event: position of the recipient in the transaction's recipient list.
SMTP_RECIPIENT_INDEX: typing.Final = "mailsdk.smtp.recipient.index"
TLS_VERSION: typing.Final = "mailsdk.tls.version"
TLS_CIPHER: typing.Final = "mailsdk.tls.cipher"
TLS_IMPLICIT: typing.Final = "mailsdk.tls.implicit"
SASL_MECHANISM: typing.Final = "mailsdk.sasl.mechanism"
# Only with record_addresses=True. The recipient list is ``recipients.addresses`` (not
# ``mailsdk.smtp.recipients``) because ``recipients`` is already a namespace (``.accepted``,
# ``.refused``) and OTel naming rules forbid a name that is also a namespace.
SMTP_SENDER: typing.Final = "mailsdk.smtp.sender"
SMTP_RECIPIENTS_ADDRESSES: typing.Final = "mailsdk.smtp.recipients.addresses"
SMTP_RECIPIENTS_REFUSED_ADDRESSES: typing.Final = "mailsdk.smtp.recipients.refused_addresses"
SMTP_RECIPIENT_ADDRESS: typing.Final = "mailsdk.smtp.recipient.address"

# --- metrics ---------------------------------------------------------------------------------

METRIC_COMMAND_DURATION: typing.Final = "mailsdk.smtp.command.duration"
METRIC_MESSAGES: typing.Final = "mailsdk.smtp.messages"
METRIC_RECIPIENTS: typing.Final = "mailsdk.smtp.recipients"
METRIC_MESSAGE_SIZE: typing.Final = "mailsdk.smtp.message.size"
#: Reserved for the batch engine's pool gauges (``mailsdk.pool.sessions``, ...).
METRIC_POOL_PREFIX: typing.Final = "mailsdk.pool."
#: Metric attribute on the message/recipient counters and the size histogram.
OUTCOME: typing.Final = "outcome"
OUTCOME_ACCEPTED: typing.Final = "accepted"
OUTCOME_REFUSED: typing.Final = "refused"
OUTCOME_FAILED: typing.Final = "failed"
REPLY_CLASS_ERROR: typing.Final = "error"
#: Advisory histogram buckets for command durations (seconds): semconv's HTTP buckets, extended
#: to two minutes because an end-of-data reply may legitimately take that long.
DURATION_BUCKETS: typing.Final = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0,
    120.0,
)  # fmt: skip
#: Advisory histogram buckets for message sizes (bytes): powers of four from 1 KiB to 64 MiB.
SIZE_BUCKETS: typing.Final = tuple(float(1024 * 4**i) for i in range(9))

# --- redaction helpers -----------------------------------------------------------------------

#: Verbs recorded as themselves: RFC 5321 §4.1 and the common service extensions. Anything else
#: becomes ``_OTHER`` unless the instrumentation was given it in ``extra_verbs``: a raw line can
#: start with a SASL payload (``Raw("dXNlcg")``), which must not become a span name, and metric
#: attributes must keep a bounded cardinality.
KNOWN_VERBS: typing.Final = frozenset(
    {
        "EHLO", "HELO", "LHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT", "VRFY",
        "EXPN", "HELP", "STARTTLS", "AUTH", "ETRN", "ATRN", "BURL", "TURN", "XCLIENT", "XFORWARD",
        "VERB", "ONEX", "XEXCH50", "SEND", "SOML", "SAML",
        VERB_END_OF_DATA, VERB_AUTH_RESPONSE,
    }
)  # fmt: skip
# A command keyword (RFC 5321 §4.1.1: alphabetic; extension verbs may contain digits and "-").
_KEYWORD_RE: typing.Final = re.compile(r"[A-Z][A-Z0-9-]{0,19}")
_MECHANISM_RE: typing.Final = re.compile(r"[A-Z0-9_-]{1,20}")  # RFC 4422 §3.1 sasl-mech
_VERB_ALIASES: typing.Final[dict[str, str]] = {
    ".": VERB_END_OF_DATA,
    "EOD": VERB_END_OF_DATA,
    "DATA-END": VERB_END_OF_DATA,
    "DATA_END": VERB_END_OF_DATA,
    "END-OF-DATA": VERB_END_OF_DATA,
    "END_OF_DATA": VERB_END_OF_DATA,
    "AUTH-RESPONSE": VERB_AUTH_RESPONSE,
    "AUTH_RESPONSE": VERB_AUTH_RESPONSE,
}


def is_keyword(verb: str) -> bool:
    """Return whether ``verb`` (upper case) is a syntactically valid command keyword."""
    return _KEYWORD_RE.fullmatch(verb) is not None


def normalize_verb(verb: str, extra_verbs: Container[str] = frozenset()) -> str:
    """Reduce ``verb`` to one upper-case verb safe for a span name and a metric attribute.

    Only the first whitespace-separated token is considered, so a full command line passed by
    mistake (``"AUTH PLAIN dGVzdA=="``) never records its arguments.

    Args:
        verb: the command verb as the driver knows it (``"MAIL"``, ``"DATA.END"``...).
        extra_verbs: further upper-case verbs to record as themselves (custom extensions).

    Returns:
        The verb if it is in :data:`KNOWN_VERBS` or ``extra_verbs``; end-of-data and
        AUTH-continuation aliases map to :data:`VERB_END_OF_DATA` / :data:`VERB_AUTH_RESPONSE`;
        anything else becomes :data:`VERB_OTHER`.
    """
    parts = verb.split(None, 1)
    token = parts[0].upper() if parts else ""
    if token in KNOWN_VERBS or token in extra_verbs:
        return token
    return _VERB_ALIASES.get(token, VERB_OTHER)


def normalize_mechanism(mechanism: str) -> str:
    """Return the SASL mechanism name upper-cased, or :data:`VERB_OTHER` if it is not a name."""
    name = mechanism.strip().upper()
    return name if _MECHANISM_RE.fullmatch(name) else VERB_OTHER


def reply_class(code: int) -> str:
    """Return the metric reply class of a reply code: ``"2xx"`` ... ``"5xx"``, else ``"error"``."""
    digit = code // 100
    return f"{digit}xx" if 2 <= digit <= 5 else REPLY_CLASS_ERROR


def recipient_domains(addresses: Iterable[str]) -> tuple[str, ...]:
    """Return the deduplicated, sorted, lower-cased domains of ``addresses``.

    The local part is dropped (it identifies a person); an address without ``@`` contributes
    nothing. Angle brackets and a source route are tolerated (``"<a@b>"`` -> ``"b"``).
    """
    domains: set[str] = set()
    for address in addresses:
        _, at, domain = address.strip().rstrip(">").rpartition("@")
        if at and domain:
            domains.add(domain.lower())
    return tuple(sorted(domains))


def error_type(error: BaseException) -> str:
    """Return the semconv ``error.type`` of an exception: its fully qualified class name.

    Built-in exceptions are named without the ``builtins.`` prefix (``"TimeoutError"``).
    """
    cls = type(error)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def exception_message(error: BaseException, *, record_addresses: bool) -> str | None:
    """Return the exception message that may be recorded, or ``None`` for none.

    mailsdk errors never contain secrets (errors.py contract), but they may contain addresses, so
    a message is returned only when ``record_addresses`` is set. ``ReplyError`` messages embed the
    reply text, which is never recorded; foreign exceptions are unknown territory. Neither is
    ever returned.
    """
    if not record_addresses or not isinstance(error, MailError) or isinstance(error, ReplyError):
        return None
    return str(error)


def sanitized_stacktrace(error: BaseException) -> str:
    """Format ``error``'s traceback with frames only: every exception message is left out.

    A normal traceback ends with ``Type: message`` and repeats the messages of chained
    exceptions; those may carry reply text or addresses, so only the frames (file, line,
    function and source line) and the qualified type are kept.
    """
    frames = traceback.format_list(traceback.extract_tb(error.__traceback__))
    return "Traceback (most recent call last):\n" + "".join(frames) + error_type(error) + "\n"


def reply_attributes(reply: Reply) -> dict[str, str | int]:
    """Return the recordable attributes of a reply: its code and enhanced status, never text."""
    attributes: dict[str, str | int] = {SMTP_REPLY_CODE: reply.code}
    if reply.enhanced is not None:
        attributes[SMTP_REPLY_ENHANCED_STATUS] = str(reply.enhanced)
    return attributes
