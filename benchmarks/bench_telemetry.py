"""Cost of instrumentation per simulated SMTP session: no-op vs OTel API alone vs a recording SDK.

Run: ``.venv/bin/pytest benchmarks/bench_telemetry.py --benchmark-only``

One "session" is what a driver reports for a realistic submission: connect, EHLO, STARTTLS, EHLO,
AUTH (two steps), one transaction with three recipients (one refused), DATA, end of data, QUIT:
14 spans (session, send, 12 commands), 12 duration records, 3 counter adds and a size record. No I/O happens, so the
numbers are pure telemetry overhead.

Variants:

* ``noop``: ``NoopInstrumentation`` (the default of every client).
* ``api_global``: ``OpenTelemetryInstrumentation()`` with no SDK installed: the API's proxy
  tracer/meter hand out non-recording spans and no-op instruments (this process never sets a
  global provider).
* ``api_noop_providers``: the same with the API's explicit ``NoOpTracerProvider`` /
  ``NoOpMeterProvider`` (no proxy indirection).
* ``sdk_recording``: SDK ``TracerProvider`` (always-on sampling, no span processor) and
  ``MeterProvider`` with an in-memory reader: every span records, every instrument aggregates.
* ``sdk_export``: as above, plus a ``SimpleSpanProcessor`` feeding an exporter that discards.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from pytest_benchmark.fixture import BenchmarkFixture

from mailsdk.protocol.reply import Reply
from mailsdk.telemetry import Instrumentation, NoopInstrumentation, OpenTelemetryInstrumentation

RECIPIENTS = ("bob@example.com", "carol@example.net", "dave@example.com")
R_EHLO = Reply.build(250, "mx.example.net", "PIPELINING", "SIZE 10240000", "8BITMIME")
R_220 = Reply.build(220, "2.0.0 Ready to start TLS")
R_334 = Reply.build(334, "")
R_235 = Reply.build(235, "2.7.0 Authentication successful")
R_250 = Reply.build(250, "2.1.0 Ok")
R_550 = Reply.build(550, "5.1.1 <carol@example.net>: Recipient address rejected")
R_354 = Reply.build(354, "End data with <CR><LF>.<CR><LF>")
R_QUEUED = Reply.build(250, "2.0.0 Ok: queued as 4ABCDEF")
R_221 = Reply.build(221, "2.0.0 Bye")
KEYWORDS = ("PIPELINING", "SIZE", "8BITMIME", "AUTH", "ENHANCEDSTATUSCODES", "STARTTLS")


def one_session(instrumentation: Instrumentation) -> None:
    """Report one session exactly as a driver would."""
    session = instrumentation.session(
        server_address="mx.example.net", server_port=587, transport="tcp", protocol="smtp"
    )
    session.connected(peer_address="192.0.2.10", peer_port=587)
    session.command("EHLO").replied(R_EHLO)
    session.capabilities(KEYWORDS)
    session.command("STARTTLS").replied(R_220)
    session.tls_established(version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384", implicit=False)
    session.command("EHLO").replied(R_EHLO)
    session.capabilities(KEYWORDS)
    session.command("AUTH").replied(R_334)
    session.command("AUTH").replied(R_235)
    session.authenticated("PLAIN")
    txn = session.transaction(sender="alice@example.org", recipients=RECIPIENTS, size=4096)
    txn.trace_headers()
    session.command("MAIL").replied(R_250)
    session.command("RCPT").replied(R_250)
    session.command("RCPT").replied(R_550)
    session.command("RCPT").replied(R_250)
    session.command("DATA").replied(R_354)
    session.command("DATA.END").replied(R_QUEUED)
    txn.finished(
        accepted=(RECIPIENTS[0], RECIPIENTS[2]),
        refused={RECIPIENTS[1]: R_550},
        size=4096,
        reply=R_QUEUED,
    )
    session.command("QUIT").replied(R_221)
    session.end()


class _Discard(SpanExporter):
    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


@pytest.fixture
def sdk() -> Iterator[tuple[TracerProvider, MeterProvider, InMemoryMetricReader]]:
    tracer_provider = TracerProvider()
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield tracer_provider, meter_provider, reader
    tracer_provider.shutdown()
    meter_provider.shutdown()


def test_noop(benchmark: BenchmarkFixture) -> None:
    benchmark(one_session, NoopInstrumentation())


def test_api_global(benchmark: BenchmarkFixture) -> None:
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider), "an SDK is installed"
    instrumentation = OpenTelemetryInstrumentation(propagate=True)
    benchmark(one_session, instrumentation)
    assert not instrumentation.tracer.start_span("probe").is_recording()


def test_api_noop_providers(benchmark: BenchmarkFixture) -> None:
    instrumentation = OpenTelemetryInstrumentation(
        tracer_provider=trace.NoOpTracerProvider(),
        meter_provider=metrics.NoOpMeterProvider(),
        propagate=True,
    )
    benchmark(one_session, instrumentation)


def test_sdk_recording(
    benchmark: BenchmarkFixture, sdk: tuple[TracerProvider, MeterProvider, InMemoryMetricReader]
) -> None:
    tracer_provider, meter_provider, reader = sdk
    instrumentation = OpenTelemetryInstrumentation(
        tracer_provider=tracer_provider, meter_provider=meter_provider, propagate=True
    )
    benchmark(one_session, instrumentation)
    assert instrumentation.tracer.start_span("probe").is_recording()
    assert reader.get_metrics_data() is not None


def test_sdk_export(
    benchmark: BenchmarkFixture, sdk: tuple[TracerProvider, MeterProvider, InMemoryMetricReader]
) -> None:
    tracer_provider, meter_provider, _ = sdk
    exporter = _Discard()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentation = OpenTelemetryInstrumentation(
        tracer_provider=tracer_provider, meter_provider=meter_provider, propagate=True
    )
    benchmark(one_session, instrumentation)
    assert exporter.count % 14 == 0
    assert exporter.count > 0
