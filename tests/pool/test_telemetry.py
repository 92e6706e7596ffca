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
from mailsdk.pool._telemetry import METRIC_CHECKOUT_WAIT, METRIC_CONNECTIONS, SPAN_BATCH
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
    else:
        with client.pool(max_connections=2) as spool:  # type: ignore[union-attr]
            outcomes = list(spool.send_batch(items * 10))
            gauge = {p.attributes["mailsdk.pool.state"]: p.value for p in
                     points(reader, METRIC_CONNECTIONS)}  # fmt: skip
    assert len(outcomes) == 10
    assert gauge["busy"] == 0 and gauge["open"] == gauge["idle"] >= 1
    waits = points(reader, METRIC_CHECKOUT_WAIT)
    assert waits and sum(p.count for p in waits) >= 1
    batch = [s for s in exporter.get_finished_spans() if s.name == SPAN_BATCH]
    assert len(batch) == 1
    assert batch[0].attributes is not None
    assert batch[0].attributes["mailsdk.batch.accepted"] == 10
    assert batch[0].attributes["mailsdk.batch.cancelled"] is False
    tracer_provider.shutdown()
    meter_provider.shutdown()
