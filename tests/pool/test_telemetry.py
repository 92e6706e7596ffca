"""Pool telemetry: the batch span, the open/idle/busy gauge and the checkout-wait histogram."""

from __future__ import annotations

import typing

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests._support.modes import Mode, plain_builder
from tests._support.smtpd import SmtpdServer

from mailsdk import Outgoing
from mailsdk.pool._telemetry import (
    METRIC_CHECKOUT_WAIT,
    METRIC_CONNECTION_LIMIT,
    METRIC_CONNECTIONS,
    SPAN_BATCH,
)
from mailsdk.telemetry import OpenTelemetryInstrumentation


def points(reader: InMemoryMetricReader, name: str) -> list[typing.Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


async def test_batch_span_gauges_and_wait_histogram(mode: Mode, smtpd: SmtpdServer) -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    instrumentation = OpenTelemetryInstrumentation(
        tracer_provider=tracer_provider, meter_provider=meter_provider
    )
    builder = plain_builder(smtpd.host, smtpd.port).with_instrumentation(instrumentation)
    client = mode.build(builder)
    items = [Outgoing(b"Subject: t\r\n\r\nx\r\n", sender="s@x.test", recipients=("r@x.test",))]
    if mode.is_async:
        async with client.pool(max_connections=2) as apool:  # type: ignore[union-attr]
            outcomes = [o async for o in apool.send_batch(items * 10)]
            gauge = {p.attributes["mailsdk.pool.state"]: p.value for p in
                     points(reader, METRIC_CONNECTIONS)}  # fmt: skip
            limits = [p.value for p in points(reader, METRIC_CONNECTION_LIMIT)]
    else:
        with client.pool(max_connections=2) as spool:  # type: ignore[union-attr]
            outcomes = list(spool.send_batch(items * 10))
            gauge = {p.attributes["mailsdk.pool.state"]: p.value for p in
                     points(reader, METRIC_CONNECTIONS)}  # fmt: skip
            limits = [p.value for p in points(reader, METRIC_CONNECTION_LIMIT)]
    assert len(outcomes) == 10
    assert gauge["busy"] == 0 and gauge["open"] == gauge["idle"] >= 1
    assert limits == [2]  # the connections the pool may use: max_connections, no throttling
    waits = points(reader, METRIC_CHECKOUT_WAIT)
    assert waits and sum(p.count for p in waits) >= 1

    batch = [s for s in exporter.get_finished_spans() if s.name == SPAN_BATCH]
    assert len(batch) == 1
    assert batch[0].attributes is not None
    assert batch[0].attributes["mailsdk.batch.accepted"] == 10
    assert batch[0].attributes["mailsdk.batch.cancelled"] is False
    tracer_provider.shutdown()
    meter_provider.shutdown()


async def test_the_batch_span_parents_the_sessions_and_the_sends(
    mode: Mode, smtpd: SmtpdServer
) -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentation = OpenTelemetryInstrumentation(tracer_provider=tracer_provider)
    builder = plain_builder(smtpd.host, smtpd.port).with_instrumentation(instrumentation)
    client = mode.build(builder)
    items = [
        Outgoing(
            f"Subject: t{i}\r\n\r\nx\r\n".encode(), sender="s@x.test", recipients=("r@x.test",)
        )
        for i in range(12)
    ]
    tracer = tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("caller"):  # the batch joins the caller's trace
        if mode.is_async:
            async with client.pool(max_connections=3) as apool:  # type: ignore[union-attr]
                outcomes = [o async for o in apool.send_batch(items)]
        else:
            with client.pool(max_connections=3) as spool:  # type: ignore[union-attr]
                outcomes = list(spool.send_batch(items))
    assert len(outcomes) == 12
    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    (batch,) = [s for s in spans if s.name == SPAN_BATCH]
    (caller,) = [s for s in spans if s.name == "caller"]
    assert batch.parent is not None and batch.parent.span_id == caller.context.span_id

    def descends_from_batch(span: typing.Any) -> bool:
        while span.parent is not None:
            if span.parent.span_id == batch.context.span_id:
                return True
            span = by_id[span.parent.span_id]
        return False

    sessions = [s for s in spans if s.name == "smtp.session"]
    sends = [s for s in spans if s.name == "smtp.send"]
    assert 1 <= len(sessions) <= 3 and len(sends) == 12
    assert all(s.parent is not None and s.parent.span_id == batch.context.span_id for s in sessions)
    assert all(descends_from_batch(s) for s in sends)
    assert {s.context.trace_id for s in spans} == {caller.context.trace_id}
    tracer_provider.shutdown()
