"""Single-message latency over loopback: mailsdk (sync, async) vs smtplib vs aiosmtplib.

Each round opens a session, sends one small message (EHLO, MAIL, RCPT, DATA), and QUITs, against
the same in-process aiosmtpd server; a second group sends 20 messages on one session. The
server's cost dominates on loopback; the numbers compare client overhead, not network speed.
"""

from __future__ import annotations

import asyncio
import smtplib
from typing import Any

import pytest

import mailsdk

MESSAGE = (
    b"From: a@example.org\r\nTo: b@example.com\r\nSubject: bench\r\n\r\n"
    + (b"x" * 76 + b"\r\n") * 26
)
SENDER = "a@example.org"
RCPTS = ["b@example.com"]


def _builder(port: int) -> mailsdk.ClientBuilder:
    return (
        mailsdk.ClientBuilder.smtp("127.0.0.1", port)
        .with_tls("none")
        .with_local_hostname("bench.invalid")
    )


@pytest.mark.benchmark(group="one message per session")
def test_mailsdk_sync(benchmark: Any, smtp_port: int) -> None:
    client = _builder(smtp_port).build()
    benchmark(lambda: client.sendmail(SENDER, RCPTS, MESSAGE))


@pytest.mark.benchmark(group="one message per session")
def test_mailsdk_async(benchmark: Any, smtp_port: int) -> None:
    client = _builder(smtp_port).build_async()
    loop = asyncio.new_event_loop()
    try:
        benchmark(lambda: loop.run_until_complete(client.sendmail(SENDER, RCPTS, MESSAGE)))
    finally:
        loop.close()


@pytest.mark.benchmark(group="one message per session")
def test_smtplib(benchmark: Any, smtp_port: int) -> None:
    def once() -> None:
        with smtplib.SMTP("127.0.0.1", smtp_port, local_hostname="bench.invalid") as s:
            s.sendmail(SENDER, RCPTS, MESSAGE)

    benchmark(once)


@pytest.mark.benchmark(group="one message per session")
def test_aiosmtplib(benchmark: Any, smtp_port: int) -> None:
    aiosmtplib = pytest.importorskip("aiosmtplib")
    loop = asyncio.new_event_loop()

    async def once() -> None:
        await aiosmtplib.send(
            MESSAGE,
            sender=SENDER,
            recipients=RCPTS,
            hostname="127.0.0.1",
            port=smtp_port,
            local_hostname="bench.invalid",
            start_tls=False,
            use_tls=False,
        )

    try:
        benchmark(lambda: loop.run_until_complete(once()))
    finally:
        loop.close()


@pytest.mark.benchmark(group="20 messages, one session")
def test_mailsdk_sync_session(benchmark: Any, smtp_port: int) -> None:
    client = _builder(smtp_port).build()

    def run() -> None:
        with client.connect() as session:
            for _ in range(20):
                session.sendmail(SENDER, RCPTS, MESSAGE)

    benchmark(run)


@pytest.mark.benchmark(group="20 messages, one session")
def test_smtplib_session(benchmark: Any, smtp_port: int) -> None:
    def run() -> None:
        with smtplib.SMTP("127.0.0.1", smtp_port, local_hostname="bench.invalid") as s:
            for _ in range(20):
                s.sendmail(SENDER, RCPTS, MESSAGE)

    benchmark(run)


def _session_of_20(client: mailsdk.Client) -> None:
    with client.connect() as session:
        for _ in range(20):
            session.sendmail(SENDER, RCPTS, MESSAGE)


@pytest.mark.benchmark(group="telemetry cost, 20 messages on one session")
def test_telemetry_off(benchmark: Any, smtp_port: int) -> None:
    client = _builder(smtp_port).build()
    benchmark(lambda: _session_of_20(client))


@pytest.mark.benchmark(group="telemetry cost, 20 messages on one session")
def test_telemetry_api_without_sdk(benchmark: Any, smtp_port: int) -> None:
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    client = (
        _builder(smtp_port)
        .with_opentelemetry(
            tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider()
        )
        .build()
    )
    benchmark(lambda: _session_of_20(client))


@pytest.mark.benchmark(group="telemetry cost, 20 messages on one session")
def test_telemetry_recording_sdk(benchmark: Any, smtp_port: int) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    client = (
        _builder(smtp_port)
        .with_opentelemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)
        .build()
    )

    def run() -> None:
        _session_of_20(client)
        exporter.clear()

    benchmark(run)
    assert tracer_provider.shutdown() is None
