"""Instrumentation over providers that record nothing costs nothing per command.

With only the API installed (the global providers are the API's proxies) a session gets the
shared no-op observer; once an SDK provider is installed globally, the next session records.
The global providers are swapped through monkeypatch (restored after each test), never set for
good.
"""

from __future__ import annotations

import pytest
from opentelemetry import metrics, trace
from opentelemetry.metrics import _internal as metrics_internal
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mailsdk.telemetry import OpenTelemetryInstrumentation
from mailsdk.telemetry.base import NoopSessionObserver

from .support import run_smtp_session


@pytest.fixture
def api_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The global providers as a process without any SDK configured has them."""
    monkeypatch.delenv("OTEL_PYTHON_TRACER_PROVIDER", raising=False)
    monkeypatch.delenv("OTEL_PYTHON_METER_PROVIDER", raising=False)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(metrics_internal, "_METER_PROVIDER", None)


def _session(inst: OpenTelemetryInstrumentation) -> object:
    return inst.session(server_address="mx", server_port=25, transport="tcp", protocol="smtp")


@pytest.mark.usefixtures("api_only")
def test_api_only_gives_the_noop_session() -> None:
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert isinstance(_session(OpenTelemetryInstrumentation()), NoopSessionObserver)
    noop = OpenTelemetryInstrumentation(
        tracer_provider=trace.NoOpTracerProvider(), meter_provider=metrics.NoOpMeterProvider()
    )
    assert isinstance(_session(noop), NoopSessionObserver)


@pytest.mark.usefixtures("api_only")
def test_a_provider_installed_later_records_from_the_next_session(
    monkeypatch: pytest.MonkeyPatch, exporter: InMemorySpanExporter
) -> None:
    inst = OpenTelemetryInstrumentation()  # built before any SDK exists, as apps often do
    assert isinstance(_session(inst), NoopSessionObserver)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    run_smtp_session(inst)
    assert "smtp.session" in [span.name for span in exporter.get_finished_spans()]
    provider.shutdown()


@pytest.mark.usefixtures("api_only")
def test_a_real_provider_or_propagation_is_never_skipped(tracer_provider: TracerProvider) -> None:
    given = OpenTelemetryInstrumentation(tracer_provider=tracer_provider)
    assert not isinstance(_session(given), NoopSessionObserver)
    # A non-recording span still carries the caller's trace context into the headers.
    propagating = OpenTelemetryInstrumentation(propagate=True)
    assert not isinstance(_session(propagating), NoopSessionObserver)
