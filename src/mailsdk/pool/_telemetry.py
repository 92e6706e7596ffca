"""Pool and batch telemetry: connection gauges, the checkout-wait histogram, the batch span.

Layer: L5c (pool). Uses the tracer and meter of the client's
:class:`~mailsdk.telemetry.OpenTelemetryInstrumentation` (nothing at all with the default
no-op instrumentation); a telemetry failure never fails a send.
"""

from __future__ import annotations

import contextlib
import contextvars
import typing
import weakref
from collections.abc import Callable, Iterator, Mapping

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode

from mailsdk.telemetry import OpenTelemetryInstrumentation

if typing.TYPE_CHECKING:
    from opentelemetry.metrics import Histogram, Meter
    from opentelemetry.trace import Tracer

__all__ = [
    "METRIC_CHECKOUT_WAIT",
    "METRIC_CONNECTIONS",
    "METRIC_CONNECTION_LIMIT",
    "SPAN_BATCH",
    "PoolTelemetry",
    "batch_context",
]

#: Gauge: the pool's connections by ``mailsdk.pool.state`` (``open``, ``idle``, ``busy``).
METRIC_CONNECTIONS: typing.Final = "mailsdk.pool.connections"
#: Gauge: the connections the pool lets callers use now (``max_connections``, fewer while the
#: server throttles).
METRIC_CONNECTION_LIMIT: typing.Final = "mailsdk.pool.connections.limit"
#: Histogram: seconds a send waited for a pooled connection.
METRIC_CHECKOUT_WAIT: typing.Final = "mailsdk.pool.checkout.wait"
#: The span covering one ``send_batch`` run.
SPAN_BATCH: typing.Final = "smtp batch"

_WAIT_BUCKETS: typing.Final = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0)

_Counts = Callable[[], tuple[int, int, int]]


class _MeterInstruments:
    """One gauge and one histogram per meter, shared by every pool that uses the meter."""

    def __init__(self, meter: Meter) -> None:
        self.pools: weakref.WeakSet[PoolTelemetry] = weakref.WeakSet()
        meter.create_observable_gauge(
            METRIC_CONNECTIONS,
            callbacks=[self._observe],
            unit="{connection}",
            description="Pooled connections by state (open, idle, busy).",
        )
        meter.create_observable_gauge(
            METRIC_CONNECTION_LIMIT,
            callbacks=[self._observe_limit],
            unit="{connection}",
            description="Connections the pool may use now (cut while the server throttles).",
        )
        self.wait: Histogram
        try:
            self.wait = meter.create_histogram(
                METRIC_CHECKOUT_WAIT,
                unit="s",
                description="Time a send waited for a pooled connection.",
                explicit_bucket_boundaries_advisory=_WAIT_BUCKETS,
            )
        except TypeError:  # pragma: no cover - opentelemetry-api < 1.30
            self.wait = meter.create_histogram(METRIC_CHECKOUT_WAIT, unit="s")

    def _observe(self, _: metrics.CallbackOptions) -> Iterator[metrics.Observation]:
        for pool in list(self.pools):
            if pool.shut:
                continue
            for state, value in zip(("open", "idle", "busy"), pool.counts(), strict=True):
                attributes = {"mailsdk.pool.state": state, "server.address": pool.server}
                yield metrics.Observation(value, attributes)

    def _observe_limit(self, _: metrics.CallbackOptions) -> Iterator[metrics.Observation]:
        for pool in list(self.pools):
            if not pool.shut and pool.limit is not None:
                yield metrics.Observation(pool.limit(), {"server.address": pool.server})


_by_meter: weakref.WeakKeyDictionary[Meter, _MeterInstruments] = weakref.WeakKeyDictionary()


class PoolTelemetry:
    """The telemetry of one pool.

    Args:
        server: the endpoint description recorded as ``server.address``.
        counts: returns (open, idle, busy) for the gauge.
        instrumentation: the client's instrumentation (only OpenTelemetry records anything).
        limit: returns the connections allowed in use now, for the limit gauge.
    """

    def __init__(
        self,
        server: str,
        counts: _Counts,
        instrumentation: object,
        *,
        limit: Callable[[], int] | None = None,
    ) -> None:
        self.server = server
        self.counts = counts
        self.limit = limit
        self.shut = False
        self._tracer: Tracer | None = None
        self._instruments: _MeterInstruments | None = None
        if isinstance(instrumentation, OpenTelemetryInstrumentation):
            with contextlib.suppress(Exception):
                self._tracer = instrumentation.tracer
                meter = instrumentation.meter
                instruments = _by_meter.get(meter)
                if instruments is None:
                    instruments = _by_meter[meter] = _MeterInstruments(meter)
                instruments.pools.add(self)
                self._instruments = instruments

    def checked_out(self, waited: float) -> None:
        """Record the wait of one checkout."""
        if self._instruments is not None:
            with contextlib.suppress(Exception):
                self._instruments.wait.record(waited, {"server.address": self.server})

    def shutdown(self) -> None:
        """The pool closed: stop reporting its gauge."""
        self.shut = True

    def batch_span(self) -> Span:
        """Start the span of one batch (ended by :func:`end_batch_span`)."""
        if self._tracer is None:
            return INVALID_SPAN
        try:
            return self._tracer.start_span(
                SPAN_BATCH, kind=SpanKind.CLIENT, attributes={"server.address": self.server}
            )
        except Exception:
            return INVALID_SPAN


def batch_context(span: Span) -> contextvars.Context:
    """A copy of the caller's context with ``span`` current, for one worker thread or task.

    The workers run in it, so the connections they open (``smtp.session`` spans, whose
    ``smtp.send`` spans are their children) become descendants of the batch span. One copy per
    worker: a context cannot be entered by two threads at once.
    """
    ctx = contextvars.copy_context()
    if span is not INVALID_SPAN:
        with contextlib.suppress(Exception):
            ctx.run(otel_context.attach, trace.set_span_in_context(span))
    return ctx


def end_batch_span(
    span: Span, counts: Mapping[str, int], *, cancelled: bool, error: BaseException | None
) -> None:
    """Record the batch's counts on its span and end it (never raises)."""
    if span is INVALID_SPAN:
        return
    with contextlib.suppress(Exception):
        for status, n in counts.items():
            span.set_attribute(f"mailsdk.batch.{status}", n)
        span.set_attribute("mailsdk.batch.cancelled", cancelled)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end()
