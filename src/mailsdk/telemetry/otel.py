# pyright: reportPrivateUsage=false
# (a private companion of telemetry.otel / telemetry.base: it reads their internals by design)
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
from opentelemetry.metrics import _internal as _metrics_internal
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from mailsdk._version import __version__
from mailsdk.errors import ConfigurationError, ReplyError
from mailsdk.telemetry import attributes as names
from mailsdk.telemetry._observers import _Session, guarded
from mailsdk.telemetry.base import _NOOP_SESSION, NoopSessionObserver

if typing.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from opentelemetry.metrics import Histogram, Meter, MeterProvider
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.trace import Span, Tracer, TracerProvider
    from opentelemetry.util.types import AttributeValue

    _Attributes: typing.TypeAlias = dict[str, AttributeValue]

__all__ = ["OpenTelemetryInstrumentation"]

_CLIENT: typing.Final = SpanKind.CLIENT
#: The tracer providers whose spans are never recorded: the global proxy (no SDK provider
#: installed yet) and the API's no-op.
_NOOP_TRACING: typing.Final = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
#: The same for meters (the API's global proxy class is private: looked up, with a fallback).
_NOOP_METERS: typing.Final = (
    getattr(_metrics_internal, "_ProxyMeterProvider", metrics.NoOpMeterProvider),
    metrics.NoOpMeterProvider,
)
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


def _no_session() -> _Session | NoopSessionObserver:
    return _NOOP_SESSION


def _attributes(values: Mapping[str, str | int]) -> _Attributes:
    """A span/metric attribute dict (``dict`` is invariant: str and int values are attribute
    values, but ``dict[str, str | int]`` is not ``dict[str, AttributeValue]`` to a checker)."""
    return dict(values)


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
        clock: the monotonic clock command durations are measured with, in seconds.

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
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        # Which providers are "the global one": until an SDK installs real providers there,
        # every span and instrument is a no-op, and a session skips them all (see ``_inert``).
        self._global_tracer = tracer_provider is None
        self._global_meter = meter_provider is None
        # With propagation on, a non-recording span still carries the caller's trace context
        # into the headers: such sessions always take the full path.
        self._may_be_inert = (
            not propagate
            and isinstance(tracer_provider, trace.NoOpTracerProvider | None)
            and isinstance(meter_provider, metrics.NoOpMeterProvider | None)
        )
        self._tracer: Tracer = trace.get_tracer(
            names.INSTRUMENTATION_NAME, __version__, tracer_provider, schema_url=names.SCHEMA_URL
        )
        self._meter: Meter = metrics.get_meter(
            names.INSTRUMENTATION_NAME, __version__, meter_provider, schema_url=names.SCHEMA_URL
        )
        self._record_addresses = record_addresses
        self._clock = clock
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

    def _inert(self) -> bool:
        """Whether nothing this instrumentation emits can be recorded right now: both providers
        are the API's no-op (or the global proxy while no SDK provider is installed).

        Checked once per session (two global reads), so a provider an application installs
        later takes effect from its next session on.
        """
        if not self._may_be_inert:
            return False
        if self._global_tracer and not isinstance(trace.get_tracer_provider(), _NOOP_TRACING):
            return False
        return not (
            self._global_meter
            and not isinstance(_metrics_internal.get_meter_provider(), _NOOP_METERS)
        )

    @guarded(_no_session)
    def session(
        self,
        *,
        server_address: str | None,
        server_port: int | None,
        transport: str,
        protocol: str,
    ) -> _Session | NoopSessionObserver:
        """Start the ``smtp.session`` span as a child of the caller's current span.

        Args:
            server_address: the host name or unix socket path connected to.
            server_port: the TCP port (``None`` for unix sockets).
            transport: ``"tcp"`` or ``"unix"`` (``network.transport``).
            protocol: ``"smtp"`` or ``"lmtp"`` (``network.protocol.name``).

        Returns:
            The session observer.
        """
        if self._inert():
            return _NOOP_SESSION  # no span, no metric, no per-command calls on the hot path
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
        # Keyed by the *normalised* verb: the raw one may be the first word of a SASL payload
        # sent with execute(), which must not be kept (the cache is reachable from this object).
        normalized = names.normalize_verb(verb, self._extra_verbs)
        key = (normalized, pipeline_size)
        info = self._commands.get(key)
        if info is None:
            info = (
                normalized,
                names.COMMAND_SPAN_PREFIX + normalized,
                _attributes(
                    {names.SMTP_COMMAND: normalized, names.SMTP_PIPELINE_SIZE: pipeline_size}
                ),
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
            attributes = _attributes({names.SMTP_COMMAND: verb, names.SMTP_REPLY_CLASS: klass})
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


if typing.TYPE_CHECKING:  # static proof that the observers satisfy the base protocols
    from mailsdk.telemetry.base import Instrumentation

    _OTEL_CONFORMS: Instrumentation = OpenTelemetryInstrumentation()
