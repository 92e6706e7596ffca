"""OpenTelemetry implementation of the instrumentation seam, over opentelemetry-api only.

Layer: L3 (telemetry). May import ``opentelemetry`` (the API package, never the SDK),
``mailsdk.protocol.reply`` (read-only models), ``mailsdk.telemetry.attributes``/``base`` and L0;
must never import ``mailsdk.transport``, ``flows``, ``auth``, ``client`` or ``msal``.

Spans are parented through explicit contexts (``trace.set_span_in_context``) captured when the
session starts, never by attaching to the ambient context, so one session behaves the same
whether it runs in a thread or an asyncio task. Everything that costs something to compute
(domains, extension lists, enhanced-status strings, exception events) is built only when the span
``is_recording()``; without an SDK the API hands out non-recording spans and no-op instruments.
What may be recorded at all is decided in ``attributes.py`` (see its redaction rules).
"""

from __future__ import annotations

import time
import typing

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from mailsdk._version import __version__
from mailsdk.errors import ConfigurationError, RecipientsRefused, ReplyError
from mailsdk.telemetry import attributes as names
from mailsdk.telemetry.base import _NO_HEADERS

if typing.TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from opentelemetry.context import Context
    from opentelemetry.metrics import Histogram, Meter, MeterProvider
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.trace import Span, Tracer, TracerProvider
    from opentelemetry.util.types import AttributeValue

    from mailsdk.protocol.reply import Reply
    from mailsdk.telemetry.base import TransactionObserver

    _Attributes: typing.TypeAlias = dict[str, AttributeValue]

__all__ = ["OpenTelemetryInstrumentation"]

_CLIENT: typing.Final = SpanKind.CLIENT
_CACHE_LIMIT: typing.Final = 256  # bounds the per-verb caches if callers invent verbs


def _histogram(
    meter: Meter, name: str, unit: str, description: str, buckets: Sequence[float]
) -> Histogram:
    """Create a histogram with advisory buckets, falling back for opentelemetry-api < 1.30."""
    try:
        return meter.create_histogram(
            name, unit=unit, description=description, explicit_bucket_boundaries_advisory=buckets
        )
    except TypeError:  # pragma: no cover - older API without the advisory parameter
        return meter.create_histogram(name, unit=unit, description=description)


class OpenTelemetryInstrumentation:
    """Instrumentation that emits OpenTelemetry spans and metrics.

    Args:
        tracer_provider: the provider to get the ``mailsdk`` tracer from; the global one if
            ``None`` (a no-op until an SDK is configured).
        meter_provider: the provider to get the ``mailsdk`` meter from; the global one if ``None``.
        record_addresses: record the sender and recipient addresses (and mailsdk error messages,
            which may contain them). Off by default: only counts and recipient domains.
        propagate: make :meth:`TransactionObserver.trace_headers` return the W3C trace context
            of the send span.
        propagator: the propagator used when ``propagate`` is set. Defaults to W3C
            ``TraceContextTextMapPropagator`` alone (``traceparent``/``tracestate``): the global
            propagator usually includes ``baggage``, which should not leak into mail headers.
        extra_verbs: command verbs of custom extensions to record by name; any verb not in
            ``attributes.KNOWN_VERBS`` or here is recorded as ``_OTHER``.

    Raises:
        ConfigurationError: an entry of ``extra_verbs`` is not a command keyword.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        record_addresses: bool = False,
        propagate: bool = False,
        propagator: TextMapPropagator | None = None,
        extra_verbs: Iterable[str] = (),
    ) -> None:
        self._tracer: Tracer = trace.get_tracer(
            names.INSTRUMENTATION_NAME, __version__, tracer_provider, schema_url=names.SCHEMA_URL
        )
        self._meter: Meter = metrics.get_meter(
            names.INSTRUMENTATION_NAME, __version__, meter_provider, schema_url=names.SCHEMA_URL
        )
        self._record_addresses = record_addresses
        self._extra_verbs = frozenset(v.upper() for v in extra_verbs)
        for verb in self._extra_verbs:
            if not names.is_keyword(verb):
                raise ConfigurationError(f"extra_verbs: {verb!r} is not an SMTP command keyword")
        self._propagator: TextMapPropagator | None = None
        if propagate:
            self._propagator = propagator or TraceContextTextMapPropagator()
        meter = self._meter
        self._duration = _histogram(
            meter,
            names.METRIC_COMMAND_DURATION,
            "s",
            "Time from flushing an SMTP command to its paired reply.",
            names.DURATION_BUCKETS,
        )
        self._messages = meter.create_counter(
            names.METRIC_MESSAGES, unit="{message}", description="Mail transactions by outcome."
        )
        self._recipients = meter.create_counter(
            names.METRIC_RECIPIENTS, unit="{recipient}", description="Recipients by outcome."
        )
        self._size = _histogram(
            meter,
            names.METRIC_MESSAGE_SIZE,
            "By",
            "Size of the message content sent per transaction.",
            names.SIZE_BUCKETS,
        )
        self._outcome_attributes: dict[str, _Attributes] = {
            outcome: {names.OUTCOME: outcome}
            for outcome in (names.OUTCOME_ACCEPTED, names.OUTCOME_REFUSED, names.OUTCOME_FAILED)
        }
        self._commands: dict[tuple[str, int], tuple[str, str, _Attributes]] = {}
        self._durations: dict[tuple[str, int], _Attributes] = {}

    @property
    def tracer(self) -> Tracer:
        """The ``mailsdk`` tracer (for extensions that add their own spans)."""
        return self._tracer

    @property
    def meter(self) -> Meter:
        """The ``mailsdk`` meter: the hook for later instruments such as the pool gauges."""
        return self._meter

    @property
    def record_addresses(self) -> bool:
        """Whether sender and recipient addresses are recorded."""
        return self._record_addresses

    @property
    def propagate(self) -> bool:
        """Whether transactions return W3C trace headers."""
        return self._propagator is not None

    def __repr__(self) -> str:
        return (
            f"OpenTelemetryInstrumentation(record_addresses={self._record_addresses}, "
            f"propagate={self.propagate})"
        )

    def session(
        self,
        *,
        server_address: str | None,
        server_port: int | None,
        transport: str,
        protocol: str,
    ) -> _Session:
        """Start the ``smtp.session`` span as a child of the caller's current span.

        Args:
            server_address: the host name or unix socket path connected to.
            server_port: the TCP port (``None`` for unix sockets).
            transport: ``"tcp"`` or ``"unix"`` (``network.transport``).
            protocol: ``"smtp"`` or ``"lmtp"`` (``network.protocol.name``).

        Returns:
            The session observer.
        """
        parent = otel_context.get_current()
        attributes: _Attributes = {
            names.NETWORK_TRANSPORT: transport,
            names.NETWORK_PROTOCOL_NAME: protocol,
        }
        if server_address is not None:
            attributes[names.SERVER_ADDRESS] = server_address
        if server_port is not None:
            attributes[names.SERVER_PORT] = server_port
        span = self._tracer.start_span(
            names.SPAN_SESSION, context=parent, kind=_CLIENT, attributes=attributes
        )
        return _Session(self, span, trace.set_span_in_context(span, parent))

    # --- shared helpers (used by the observers) -----------------------------------------------

    def _command_info(self, verb: str, pipeline_size: int) -> tuple[str, str, _Attributes]:
        """Return (normalised verb, span name, start attributes), cached per verb and size."""
        key = (verb, pipeline_size)
        info = self._commands.get(key)
        if info is None:
            normalized = names.normalize_verb(verb, self._extra_verbs)
            info = (
                normalized,
                names.COMMAND_SPAN_PREFIX + normalized,
                {names.SMTP_COMMAND: normalized, names.SMTP_PIPELINE_SIZE: pipeline_size},
            )
            if len(self._commands) < _CACHE_LIMIT:
                self._commands[key] = info
        return info

    def _record_duration(self, verb: str, code: int | None, seconds: float) -> None:
        """Record one command duration with the verb and reply-class attributes."""
        key = (verb, -1 if code is None else code // 100)
        attributes = self._durations.get(key)
        if attributes is None:
            klass = names.REPLY_CLASS_ERROR if code is None else names.reply_class(code)
            attributes = {names.SMTP_COMMAND: verb, names.SMTP_REPLY_CLASS: klass}
            if len(self._durations) < _CACHE_LIMIT:
                self._durations[key] = attributes
        self._duration.record(seconds, attributes)

    def _record_message(
        self, outcome: str, size: int | None, counts: Sequence[tuple[str, int]]
    ) -> None:
        """Count one message with ``outcome`` and each (recipient outcome, count) pair."""
        self._messages.add(1, self._outcome_attributes[outcome])
        for recipient_outcome, count in counts:
            if count:
                self._recipients.add(count, self._outcome_attributes[recipient_outcome])
        if size is not None:
            self._size.record(size, self._outcome_attributes[outcome])

    def _record_exception(self, span: Span, error: BaseException) -> None:
        """Add a sanitised semconv ``exception`` event (see attributes.py redaction rules)."""
        attributes: _Attributes = {
            names.EXCEPTION_TYPE: names.error_type(error),
            names.EXCEPTION_STACKTRACE: names.sanitized_stacktrace(error),
        }
        message = names.exception_message(error, record_addresses=self._record_addresses)
        if message is not None:
            attributes[names.EXCEPTION_MESSAGE] = message
        if isinstance(error, ReplyError):
            attributes.update(names.reply_attributes(error.reply))
        span.add_event(names.EVENT_EXCEPTION, attributes)

    def _set_error(self, span: Span, etype: str, error: BaseException | None) -> None:
        """Mark a recording span as failed with ``error.type`` ``etype``."""
        span.set_attribute(names.ERROR_TYPE, etype)
        span.set_status(Status(StatusCode.ERROR, etype))
        if error is not None:
            self._record_exception(span, error)


class _Session:
    """Session observer: owns the ``smtp.session`` span and the open child observers."""

    __slots__ = ("_commands", "_context", "_ended", "_inst", "_span", "_transactions")

    def __init__(self, inst: OpenTelemetryInstrumentation, span: Span, context: Context) -> None:
        self._inst = inst
        self._span = span
        self._context = context
        self._transactions: list[_Transaction] = []
        self._commands: set[_Command] = set()
        self._ended = False

    def connected(self, *, peer_address: str | None, peer_port: int | None) -> None:
        """Record ``network.peer.address`` and ``network.peer.port``."""
        span = self._span
        if span.is_recording():
            if peer_address is not None:
                span.set_attribute(names.NETWORK_PEER_ADDRESS, peer_address)
            if peer_port is not None:
                span.set_attribute(names.NETWORK_PEER_PORT, peer_port)

    def tls_established(self, *, version: str | None, cipher: str | None, implicit: bool) -> None:
        """Record the TLS version, cipher and whether TLS was implicit (RFC 8314) or STARTTLS."""
        span = self._span
        if span.is_recording():
            if version is not None:
                span.set_attribute(names.TLS_VERSION, version)
            if cipher is not None:
                span.set_attribute(names.TLS_CIPHER, cipher)
            span.set_attribute(names.TLS_IMPLICIT, implicit)

    def capabilities(self, keywords: Sequence[str]) -> None:
        """Record the negotiated ESMTP keywords, upper-cased, in the server's order."""
        span = self._span
        if span.is_recording():
            span.set_attribute(names.SMTP_EXTENSIONS, tuple(k.upper() for k in keywords))

    def authenticated(self, mechanism: str) -> None:
        """Record the SASL mechanism name that succeeded."""
        span = self._span
        if span.is_recording():
            span.set_attribute(names.SASL_MECHANISM, names.normalize_mechanism(mechanism))

    def command(
        self,
        verb: str,
        *,
        pipeline_size: int = 1,
        transaction: TransactionObserver | None = None,
    ) -> _Command:
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
        self._commands.add(observer)
        return observer

    def transaction(
        self, *, sender: str, recipients: Sequence[str], size: int | None
    ) -> _Transaction:
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

    def end(self, error: BaseException | None = None) -> None:
        """End the session span; children still open end with ``error`` (or ``_OTHER``)."""
        if self._ended:
            return
        self._ended = True
        for command in list(self._commands):
            command._fail(error)
        for txn in reversed(self._transactions):
            txn._fail(error)
        span = self._span
        if error is not None and span.is_recording():
            self._inst._set_error(span, names.error_type(error), error)
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
        self._start = time.perf_counter()

    def replied(self, reply: Reply) -> None:
        """Record the reply code and enhanced status and end the span (4xx/5xx: ERROR)."""
        if self._ended:
            return
        self._ended = True
        elapsed = time.perf_counter() - self._start
        self._session._commands.discard(self)
        span = self._span
        if span.is_recording():
            span.set_attributes(names.reply_attributes(reply))
            if reply.code >= 400:
                code = str(reply.code)
                span.set_attribute(names.ERROR_TYPE, code)
                span.set_status(Status(StatusCode.ERROR, code))
        span.end()
        self._session._inst._record_duration(self._verb, reply.code, elapsed)

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

    def _fail(self, error: BaseException | None) -> None:
        if self._ended:
            return
        self._ended = True
        elapsed = time.perf_counter() - self._start
        self._session._commands.discard(self)
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
        carrier: dict[str, str] = {}
        propagator.inject(carrier, context=self._context)
        return carrier

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


if typing.TYPE_CHECKING:  # static proof that the observers satisfy the base protocols
    from mailsdk.telemetry.base import Instrumentation

    _OTEL_CONFORMS: Instrumentation = OpenTelemetryInstrumentation()
