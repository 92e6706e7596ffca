"""Client CPU per message with telemetry off / OpenTelemetry API only / recording SDK.

Wall-clock benchmarks on loopback are dominated by the server (here in the same process), so
this measures the client thread's own CPU time (``time.thread_time``) over interleaved rounds.
Run: ``.venv/bin/python benchmarks/telemetry_overhead.py``. Prints µs of client CPU per message
and the overhead relative to telemetry off (the issue's budget: < 5 % for the no-op API).
"""

from __future__ import annotations

import socket
import statistics
import time

from aiosmtpd.controller import Controller
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider

import mailsdk

MESSAGE = (
    b"From: a@example.org\r\nTo: b@example.com\r\nSubject: bench\r\n\r\n"
    + (b"x" * 76 + b"\r\n") * 26
)
PER_ROUND = 100
ROUNDS = 9


class _Null:
    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 2.0.0 OK"


def _clients(port: int) -> dict[str, mailsdk.Client]:
    base = (
        mailsdk.ClientBuilder.smtp("127.0.0.1", port)
        .with_tls("none")
        .with_local_hostname("b.invalid")
    )
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return {
        "off": base.build(),
        "api only": base.with_opentelemetry(
            tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider()
        ).build(),
        "recording sdk": base.with_opentelemetry(
            tracer_provider=tracer_provider,
            meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]),
        ).build(),
    }


def _cpu_per_message(client: mailsdk.Client) -> float:
    with client.connect() as session:
        start = time.thread_time()
        for _ in range(PER_ROUND):
            session.sendmail("a@example.org", ["b@example.com"], MESSAGE)
        return (time.thread_time() - start) / PER_ROUND


def main() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    controller = Controller(_Null(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        clients = _clients(port)
        samples: dict[str, list[float]] = {name: [] for name in clients}
        for _ in range(ROUNDS):  # interleave so drift hits every variant alike
            for name, client in clients.items():
                samples[name].append(_cpu_per_message(client))
    finally:
        controller.stop()
    base = statistics.median(samples["off"])
    for name, values in samples.items():
        med = statistics.median(values)
        print(
            f"{name:>14}: {med * 1e6:7.1f} µs client CPU per message ({(med / base - 1) * 100:+5.1f} %)"
        )


if __name__ == "__main__":
    main()
