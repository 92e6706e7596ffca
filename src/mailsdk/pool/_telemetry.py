"""Pool and batch telemetry: connection gauges, the checkout-wait histogram, the batch span.

Layer: L5c (pool). Uses opentelemetry-api only (a no-op until the application installs an SDK);
a telemetry failure never fails a send.
"""

from __future__ import annotations

import contextlib
import typing
import weakref
from collections.abc import Callable, Iterator, Mapping

from opentelemetry import metrics, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from mailsdk._version import __version__

__all__ = ["METRIC_CHECKOUT_WAIT", "METRIC_CONNECTIONS", "SPAN_BATCH", "PoolTelemetry"]

#: Gauge: the pool's connections by ``mailsdk.pool.state`` (``open``, ``idle``, ``busy``).
METRIC_CONNECTIONS: typing.Final = "mailsdk.pool.connections"
#: Histogram: seconds a send waited for a pooled connection.
METRIC_CHECKOUT_WAIT: typing.Final = "mailsdk.pool.checkout.wait"
#: The span covering one ``send_batch`` run.
SPAN_BATCH: typing.Final = "smtp batch"

_WAIT_BUCKETS: typing.Final = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0)

_Counts = Callable[[], tuple[int, int, int]]
_pools: weakref.WeakValueDictionary[int, PoolTelemetry] = weakref.WeakValueDictionary()
_instruments: dict[str, typing.Any] = {}


def _observe(_: metrics.CallbackOptions) -> Iterator[metrics.Observation]:
    for telemetry in list(_pools.values()):
        with contextlib.suppress(Exception):
            open_, idle, busy = telemetry.counts()
            for state, value in (("open", open_), ("idle", idle), ("busy", busy)):
                attributes = {"mailsdk.pool.state": state, "server.address": telemetry.server}
                yield metrics.Observation(value, attributes)


def _meter_instruments() -> dict[str, typing.Any]:
    if not _instruments:
        meter = metrics.get_meter("mailsdk", __version__)
        meter.create_observable_gauge(
            METRIC_CONNECTIONS,
            callbacks=[_observe],
            unit="{connection}",
            description="Pooled connections by state (open, idle, busy).",
        )
        try:
            wait = meter.create_histogram(
                METRIC_CHECKOUT_WAIT,
                unit="s",
                description="Time a send waited for a pooled connection.",
                explicit_bucket_boundaries_advisory=_WAIT_BUCKETS,
            )
        except TypeError:  # pragma: no cover - opentelemetry-api < 1.30
            wait = meter.create_histogram(METRIC_CHECKOUT_WAIT, unit="s")
        _instruments["wait"] = wait
    return _instruments


class PoolTelemetry:
    """The telemetry of one pool.

    Args:
        server: the endpoint description recorded as ``server.address``.
        counts: returns (open, idle, busy) for the gauge.
    """

    def __init__(self, server: str, counts: _Counts) -> None:
        self.server = server
        self.counts = counts
        self._wait: typing.Any = None
        with contextlib.suppress(Exception):
            self._wait = _meter_instruments()["wait"]
            _pools[id(self)] = self

    def checked_out(self, waited: float) -> None:
        """Record the wait of one checkout."""
        if self._wait is not None:
            with contextlib.suppress(Exception):
                self._wait.record(waited, {"server.address": self.server})

    def opened(self) -> None:
        """A connection was opened (the gauge reads the counts itself)."""

    def closed(self) -> None:
        """A connection was closed."""

    def shutdown(self) -> None:
        """The pool closed: stop reporting its gauge."""
        _pools.pop(id(self), None)

    def batch_span(self) -> Span:
        """Start the span of one batch (ended by :func:`end_batch_span`)."""
        tracer = trace.get_tracer("mailsdk", __version__)
        return tracer.start_span(
            SPAN_BATCH, kind=SpanKind.CLIENT, attributes={"server.address": self.server}
        )


def end_batch_span(
    span: Span, counts: Mapping[str, int], *, cancelled: bool, error: BaseException | None
) -> None:
    """Record the batch's counts on its span and end it (never raises)."""
    with contextlib.suppress(Exception):
        for status, n in counts.items():
            span.set_attribute(f"mailsdk.batch.{status}", n)
        span.set_attribute("mailsdk.batch.cancelled", cancelled)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end()
