"""Fixtures for the telemetry tests: real OpenTelemetry SDK providers, passed in, never global."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator

from mailsdk.telemetry import OpenTelemetryInstrumentation


class SequentialIds(IdGenerator):
    """Span ids in creation order, so span trees can be rendered deterministically."""

    def __init__(self) -> None:
        self._spans = itertools.count(1)
        self._traces = itertools.count(0xA000)

    def generate_span_id(self) -> int:
        return next(self._spans)

    def generate_trace_id(self) -> int:
        return next(self._traces)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer_provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider(id_generator=SequentialIds())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def meter_provider(reader: InMemoryMetricReader) -> Iterator[MeterProvider]:
    provider = MeterProvider(metric_readers=[reader])
    yield provider
    provider.shutdown()


@pytest.fixture
def make_instrumentation(
    tracer_provider: TracerProvider, meter_provider: MeterProvider
) -> Callable[..., OpenTelemetryInstrumentation]:
    def make(**options: object) -> OpenTelemetryInstrumentation:
        return OpenTelemetryInstrumentation(
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            **options,  # type: ignore[arg-type]
        )

    return make


@pytest.fixture
def instrumentation(
    make_instrumentation: Callable[..., OpenTelemetryInstrumentation],
) -> OpenTelemetryInstrumentation:
    return make_instrumentation()
