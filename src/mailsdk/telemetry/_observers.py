# pyright: reportPrivateUsage=false
# (a private companion of telemetry.otel / telemetry.base: it reads their internals by design)
"""The OpenTelemetry observers: one object per session, command and transaction span.

Layer: L3 (telemetry). May import ``opentelemetry`` (the API package only),
``mailsdk.protocol.reply`` (read-only models), the other telemetry modules and L0; must never
import ``mailsdk.transport``, ``flows``, ``auth``, ``client`` or ``msal``. Private: created only by
:class:`~mailsdk.telemetry.otel.OpenTelemetryInstrumentation`, which holds the tracer, the
instruments and the caches these observers use.

Parenting is explicit: the session keeps the context it was started in (plus its own span), each
transaction keeps a context holding its span, and a command's parent is the transaction it was
bound to or the session. Nothing is attached to the ambient context, so a session behaves the
same in a thread or an asyncio task. Each observer ends its span at most once; later calls are
ignored. ``_Session.end`` ends whatever is still open, so no span is ever left running.
"""

from __future__ import annotations

import functools
import logging
import re
import typing
from collections.abc import Callable

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from mailsdk.errors import RecipientsRefused, ReplyError
from mailsdk.telemetry import attributes as names
from mailsdk.telemetry.base import (
    _NO_HEADERS,
    _NOOP_COMMAND,
    _NOOP_TRANSACTION,
    NoopCommandObserver,
    NoopTransactionObserver,
)

if typing.TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from opentelemetry.context import Context
    from opentelemetry.trace import Span
    from opentelemetry.util.types import AttributeValue

    from mailsdk.protocol.reply import Reply
    from mailsdk.telemetry.base import TransactionObserver
    from mailsdk.telemetry.otel import OpenTelemetryInstrumentation

    _Attributes: typing.TypeAlias = dict[str, AttributeValue]

__all__: list[str] = []  # private module: nothing public

_CLIENT: typing.Final = SpanKind.CLIENT
# RFC 5322 §2.2: field-name = printable US-ASCII except ":"; the value: printable text, no CR/LF.
_FIELD_NAME: typing.Final = re.compile(r"[!-9;-~]{1,64}")
_FIELD_VALUE: typing.Final = re.compile(r"[ -~]{0,1024}")

_logger = logging.getLogger("mailsdk.telemetry")
_P = typing.ParamSpec("_P")
_R = typing.TypeVar("_R")


def _nothing() -> None:
    return None


def _no_command() -> _Command | NoopCommandObserver:
    return _NOOP_COMMAND


def _no_transaction() -> _Transaction | NoopTransactionObserver:
    return _NOOP_TRANSACTION


def guarded(fallback: Callable[[], _R]) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Make an observer hook exception-safe: telemetry must never make a session fail.

    The OpenTelemetry SDK does not shield callers from every plug-in (a span processor whose
    ``on_start``/``on_end`` raises, a sampler, a metric view...). A failure is logged on the
    ``mailsdk.telemetry`` logger and the hook returns ``fallback()`` instead.
    """

    def decorate(method: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(method)
        def hook(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            try:
                return method(*args, **kwargs)
            except Exception:
                _logger.warning(
                    "OpenTelemetry instrumentation failed in %s; ignored",
                    method.__qualname__,
                    exc_info=True,
                )
                return fallback()

        return hook

    return decorate


class _Session:
    """Session observer: owns the ``smtp.session`` span and the open child observers."""

    __slots__ = ("_clock", "_commands", "_context", "_ended", "_inst", "_span", "_transactions")

    def __init__(self, inst: OpenTelemetryInstrumentation, span: Span, context: Context) -> None:
        self._inst = inst
        self._clock = inst._clock
        self._span = span
        self._context = context
        self._transactions: list[_Transaction] = []
        self._commands: dict[_Command, None] = {}  # open commands, in start order
        self._ended = False

    @guarded(_nothing)
    def connected(self, *, peer_address: str | None, peer_port: int | None) -> None:
        """Record ``network.peer.address`` and ``network.peer.port``."""
        span = self._span
        if span.is_recording():
            if peer_address is not None:
                span.set_attribute(names.NETWORK_PEER_ADDRESS, peer_address)
            if peer_port is not None:
                span.set_attribute(names.NETWORK_PEER_PORT, peer_port)

    @guarded(_nothing)
    def tls_established(self, *, version: str | None, cipher: str | None, implicit: bool) -> None:
        """Record the TLS version, cipher and whether TLS was implicit (RFC 8314) or STARTTLS."""
        span = self._span
        if span.is_recording():
            if version is not None:
                span.set_attribute(names.TLS_VERSION, version)
            if cipher is not None:
                span.set_attribute(names.TLS_CIPHER, cipher)
            span.set_attribute(names.TLS_IMPLICIT, implicit)

    @guarded(_nothing)
    def capabilities(self, keywords: Sequence[str]) -> None:
        """Record the negotiated ESMTP keywords, upper-cased, in the server's order."""
        span = self._span
        if span.is_recording():
            span.set_attribute(names.SMTP_EXTENSIONS, tuple(k.upper() for k in keywords))

    @guarded(_nothing)
    def authenticated(self, mechanism: str) -> None:
        """Record the SASL mechanism name that succeeded."""
        span = self._span
        if span.is_recording():
            span.set_attribute(names.SASL_MECHANISM, names.normalize_mechanism(mechanism))

    @guarded(_no_command)
    def command(
        self,
        verb: str,
        *,
        pipeline_size: int = 1,
        transaction: TransactionObserver | None = None,
    ) -> _Command | NoopCommandObserver:
        """Start the ``SMTP {verb}`` span under the current transaction (or the session).

        Args:
            verb: the command verb (normalised by ``attributes.normalize_verb``).
            pipeline_size: the number of commands in the same PIPELINING group.
            transaction: the transaction the command belongs to, when it is not the most
                recently opened one (cross-transaction pipelining).

        Returns:
            The command observer.
        """
        inst = self._inst
        normalized, name, attributes = inst._command_info(verb, pipeline_size)
        if isinstance(transaction, _Transaction):
            txn: _Transaction | None = transaction
        else:
            txn = self._transactions[-1] if self._transactions else None
        parent = self._context if txn is None else txn._context
        span = inst._tracer.start_span(name, context=parent, kind=_CLIENT, attributes=attributes)
        observer = _Command(self, span, normalized, txn)
        self._commands[observer] = None
        return observer

    @guarded(_no_transaction)
    def transaction(
        self, *, sender: str, recipients: Sequence[str], size: int | None
    ) -> _Transaction | NoopTransactionObserver:
        """Start the ``smtp.send`` span; later commands become its children until it ends.

        Args:
            sender: the reverse-path (recorded only with ``record_addresses``).
            recipients: the forward-paths in RCPT order.
            size: the message size when known in advance.

        Returns:
            The transaction observer.
        """
        inst = self._inst
        attributes: _Attributes = {names.SMTP_RECIPIENT_COUNT: len(recipients)}
        if size is not None:
            attributes[names.SMTP_MESSAGE_SIZE] = size
        span = inst._tracer.start_span(
            names.SPAN_SEND, context=self._context, kind=_CLIENT, attributes=attributes
        )
        if span.is_recording():
            domains = names.recipient_domains(recipients)
            if domains:
                span.set_attribute(names.SMTP_RECIPIENT_DOMAINS, domains)
            if inst._record_addresses:
                span.set_attribute(names.SMTP_SENDER, sender)
                span.set_attribute(names.SMTP_RECIPIENTS_ADDRESSES, tuple(recipients))
        observer = _Transaction(self, span, recipients, size)
        self._transactions.append(observer)
        return observer

    @guarded(_nothing)
    def end(self, error: BaseException | None = None) -> None:
        """End the session span; children still open end with ``error`` (or ``_OTHER``)."""
        if self._ended:
            return
        self._ended = True
        for command in list(self._commands):
            command._fail(error)
        for txn in list(reversed(self._transactions)):
            txn._fail(error)
        span = self._span
        try:
            if error is not None and span.is_recording():
                self._inst._set_error(span, names.error_type(error), error)
        finally:
            span.end()


class _Command:
    """Command observer: owns one ``SMTP {verb}`` span."""

    __slots__ = ("_ended", "_session", "_span", "_start", "_txn", "_verb")

    def __init__(self, session: _Session, span: Span, verb: str, txn: _Transaction | None) -> None:
        self._session = session
        self._span = span
        self._verb = verb
        self._txn = txn
        self._ended = False
        self._start = session._clock()

    @guarded(_nothing)
    def replied(self, reply: Reply) -> None:
        """Record the reply code and enhanced status and end the span (4xx/5xx: ERROR)."""
        if self._ended:
            return
        self._ended = True
        elapsed = self._session._clock() - self._start
        self._session._commands.pop(self, None)
        span = self._span
        if span.is_recording():
            span.set_attributes(names.reply_attributes(reply))
            if reply.code >= 400:
                code = str(reply.code)
                span.set_attribute(names.ERROR_TYPE, code)
                span.set_status(Status(StatusCode.ERROR, code))
        span.end()
        self._session._inst._record_duration(self._verb, reply.code, elapsed)

    @guarded(_nothing)
    def recipient_replied(self, recipient: str, reply: Reply) -> None:
        """Add an LMTP per-recipient reply event (index, code, enhanced status[, address])."""
        span = self._span
        if self._ended or not span.is_recording():
            return
        attributes: _Attributes = dict(names.reply_attributes(reply))
        index = self._txn._index_of(recipient) if self._txn is not None else None
        if index is not None:
            attributes[names.SMTP_RECIPIENT_INDEX] = index
        if self._session._inst._record_addresses:
            attributes[names.SMTP_RECIPIENT_ADDRESS] = recipient
        span.add_event(names.EVENT_RECIPIENT_REPLY, attributes)

    def failed(self, error: BaseException) -> None:
        """End the span with status ERROR and ``error.type`` = the exception's class."""
        self._fail(error)

    @guarded(_nothing)
    def _fail(self, error: BaseException | None) -> None:
        if self._ended:
            return
        self._ended = True
        elapsed = self._session._clock() - self._start
        self._session._commands.pop(self, None)
        span = self._span
        if span.is_recording():
            etype = names.ERROR_TYPE_OTHER if error is None else names.error_type(error)
            self._session._inst._set_error(span, etype, error)
        span.end()
        self._session._inst._record_duration(self._verb, None, elapsed)


class _Transaction:
    """Transaction observer: owns the ``smtp.send`` span and the context its commands use."""

    __slots__ = ("_context", "_ended", "_index", "_recipients", "_session", "_size", "_span")

    def __init__(
        self, session: _Session, span: Span, recipients: Sequence[str], size: int | None
    ) -> None:
        self._session = session
        self._span = span
        self._context = trace.set_span_in_context(span, session._context)
        self._recipients = recipients
        self._size = size
        self._index: dict[str, int] | None = None
        self._ended = False

    def trace_headers(self) -> Mapping[str, str]:
        """Return ``traceparent`` (and ``tracestate``) of the send span when propagating."""
        propagator = self._session._inst._propagator
        if propagator is None:
            return _NO_HEADERS
        carrier: dict[typing.Any, typing.Any] = {}  # a propagator may put anything here
        try:
            propagator.inject(carrier, context=self._context)
        except Exception:  # telemetry must never make a send fail
            return _NO_HEADERS
        # The headers go into the message: keep only well-formed header fields (RFC 5322 §2.2),
        # so a propagator can never inject a line break, and with it other headers.
        return {
            name: value
            for name, value in carrier.items()
            if isinstance(name, str)
            and isinstance(value, str)
            and _FIELD_NAME.fullmatch(name)
            and _FIELD_VALUE.fullmatch(value)
        }

    @guarded(_nothing)
    def finished(
        self,
        *,
        accepted: Sequence[str],
        refused: Mapping[str, Reply],
        size: int,
        reply: Reply | None,
    ) -> None:
        """Record the outcome and end the span.

        The message counts as accepted when at least one recipient was accepted and the final
        reply (if any) is not 4xx/5xx; otherwise as refused (span status ERROR).
        """
        if not self._close():
            return
        inst = self._session._inst
        ok = bool(accepted) and (reply is None or reply.code < 400)
        span = self._span
        if span.is_recording():
            attributes: _Attributes = {
                names.SMTP_RECIPIENTS_ACCEPTED: len(accepted),
                names.SMTP_RECIPIENTS_REFUSED: len(refused),
                names.SMTP_MESSAGE_SIZE: size,
            }
            if reply is not None:
                attributes.update(names.reply_attributes(reply))
            if inst._record_addresses and refused:
                attributes[names.SMTP_RECIPIENTS_REFUSED_ADDRESSES] = tuple(refused)
            span.set_attributes(attributes)
            if not ok:
                if reply is not None and reply.code >= 400:
                    etype = str(reply.code)
                elif refused:
                    etype = str(list(refused.values())[-1].code)
                else:
                    etype = names.ERROR_TYPE_OTHER
                inst._set_error(span, etype, None)
        span.end()
        outcome = names.OUTCOME_ACCEPTED if ok else names.OUTCOME_REFUSED
        inst._record_message(
            outcome,
            size,
            ((names.OUTCOME_ACCEPTED, len(accepted)), (names.OUTCOME_REFUSED, len(refused))),
        )

    def failed(self, error: BaseException) -> None:
        """End the span with status ERROR; a ``ReplyError`` counts as refused, else failed."""
        self._fail(error)

    @guarded(_nothing)
    def _fail(self, error: BaseException | None) -> None:
        if not self._close():
            return
        inst = self._session._inst
        span = self._span
        if span.is_recording():
            etype = names.ERROR_TYPE_OTHER if error is None else names.error_type(error)
            if inst._record_addresses and isinstance(error, RecipientsRefused):
                span.set_attribute(names.SMTP_RECIPIENTS_REFUSED_ADDRESSES, tuple(error.refused))
            inst._set_error(span, etype, error)
        span.end()
        outcome = names.OUTCOME_REFUSED if isinstance(error, ReplyError) else names.OUTCOME_FAILED
        inst._record_message(outcome, self._size, ((outcome, len(self._recipients)),))

    def _close(self) -> bool:
        """Mark the transaction ended; ``False`` if it already was."""
        if self._ended:
            return False
        self._ended = True
        transactions = self._session._transactions
        if self in transactions:
            transactions.remove(self)
        return True

    def _index_of(self, recipient: str) -> int | None:
        """Return the position of ``recipient`` in the RCPT order (first occurrence)."""
        if self._index is None:
            self._index = {}
            for position, address in enumerate(self._recipients):
                self._index.setdefault(address, position)
        return self._index.get(recipient)
