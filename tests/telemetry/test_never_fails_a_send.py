"""A misbehaving OpenTelemetry component (propagator, span processor) never breaks sending."""

from __future__ import annotations

import base64
import typing
from collections.abc import Callable

import pytest

PASSWORD = "pencil-Pa55w0rd"


def _otel(
    **options: typing.Any,
) -> tuple[typing.Any, typing.Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from mailsdk.telemetry import OpenTelemetryInstrumentation

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    for processor in options.pop("processors", ()):
        tracer_provider.add_span_processor(processor)
    inst = OpenTelemetryInstrumentation(
        tracer_provider=tracer_provider, meter_provider=MeterProvider(), **options
    )
    return inst, exporter


def _propagator(inject: Callable[..., None]) -> typing.Any:
    from opentelemetry.propagators.textmap import TextMapPropagator

    class Propagator(TextMapPropagator):
        def extract(
            self, carrier: typing.Any, context: typing.Any = None, getter: typing.Any = None
        ) -> typing.Any:
            return context

        def inject(
            self, carrier: typing.Any, context: typing.Any = None, setter: typing.Any = None
        ) -> None:
            inject(carrier)

        @property
        def fields(self) -> set[str]:
            return {"traceparent"}

    return Propagator()


def test_a_raising_propagator_yields_no_trace_headers() -> None:
    def inject(carrier: dict[str, str]) -> None:
        raise RuntimeError("propagator bug")

    inst, _exporter = _otel(propagate=True, propagator=_propagator(inject))
    session = inst.session(server_address="h", server_port=25, transport="tcp", protocol="smtp")
    txn = session.transaction(sender="a@x", recipients=["b@y"], size=None)
    assert dict(txn.trace_headers()) == {}
    session.end()


def test_trace_headers_never_carry_line_breaks_or_bad_names() -> None:
    def inject(carrier: dict[str, str]) -> None:
        carrier["traceparent"] = "00-abc\r\nBcc: evil@example.net"
        carrier["bad name:"] = "x"
        carrier["tracestate"] = "k=v"

    inst, _exporter = _otel(propagate=True, propagator=_propagator(inject))
    session = inst.session(server_address="h", server_port=25, transport="tcp", protocol="smtp")
    txn = session.transaction(sender="a@x", recipients=["b@y"], size=None)
    assert dict(txn.trace_headers()) == {"tracestate": "k=v"}
    session.end()


def _raising_processor(*, on_start: bool = False, on_end: bool = True) -> typing.Any:
    from opentelemetry.sdk.trace import SpanProcessor

    class Raising(SpanProcessor):
        def on_start(self, span: typing.Any, parent_context: typing.Any = None) -> None:
            if on_start:
                raise RuntimeError("processor bug in on_start")

        def on_end(self, span: typing.Any) -> None:
            if on_end:
                raise RuntimeError("processor bug in on_end")

    return Raising()


@pytest.mark.parametrize("on_start", [False, True])
def test_a_raising_span_processor_never_reaches_the_caller(on_start: bool) -> None:
    from mailsdk.errors import ConnectionLost
    from mailsdk.protocol import Reply

    inst, exporter = _otel(processors=[_raising_processor(on_start=on_start)])
    session = inst.session(server_address="h", server_port=25, transport="tcp", protocol="smtp")
    session.connected(peer_address="127.0.0.1", peer_port=25)
    session.capabilities(["PIPELINING"])
    session.authenticated("PLAIN")
    session.command("EHLO").replied(Reply(250, (b"ok",)))
    txn = session.transaction(sender="a@x", recipients=["b@y", "c@y"], size=10)
    assert isinstance(dict(txn.trace_headers()), dict)
    session.command("MAIL").replied(Reply(250, (b"ok",)))
    rcpt = session.command("RCPT")
    rcpt.replied(Reply(550, (b"no",)))
    data = session.command("DATA.END")
    data.recipient_replied("b@y", Reply(250, (b"ok",)))
    data.failed(ConnectionLost("lost"))
    txn.failed(ConnectionLost("lost"))
    second = session.transaction(sender="a@x", recipients=["b@y"], size=None)
    second.finished(accepted=["b@y"], refused={}, size=5, reply=Reply(250, (b"ok",)))
    open_command = session.command("NOOP")
    session.end(ConnectionLost("lost"))
    open_command.replied(Reply(250, (b"ok",)))
    names = sorted(span.name for span in exporter.get_finished_spans())
    if on_start:  # every span failed to start: the hooks fell back to the no-op observers
        assert names == []
        return
    assert names == sorted(
        [
            "SMTP EHLO",
            "SMTP MAIL",
            "SMTP RCPT",
            "SMTP DATA.END",
            "SMTP NOOP",
            "smtp.send",
            "smtp.send",
            "smtp.session",
        ]
    )


def test_a_raising_span_processor_does_not_fail_a_send() -> None:
    from tests.telemetry.client_support import BOB, MESSAGE, SENDER, Otel, Smtpd, plain

    otel = Otel()
    otel.tracer_provider.add_span_processor(_raising_processor())
    try:
        with Smtpd() as server:
            result = plain(server.port, otel).build().sendmail(SENDER, [BOB], MESSAGE)
        assert result.accepted == (BOB,)
        assert len(otel.spans()) == 8  # session, EHLO, send, MAIL, RCPT, DATA, DATA.END, QUIT
    finally:
        otel.shutdown()


def test_instrumentation_never_keeps_a_raw_verb_that_may_be_a_sasl_payload() -> None:
    """``execute("<base64 payload>")`` reaches the observer with the payload as its "verb"."""
    from mailsdk.protocol import Reply

    inst, exporter = _otel()
    payload = base64.b64encode(b"\0alice\0" + PASSWORD.encode()).decode()
    session = inst.session(server_address="h", server_port=25, transport="tcp", protocol="smtp")
    session.command(payload.upper()).replied(Reply(250, (b"ok",)))
    session.end()
    assert payload.upper() not in repr(vars(inst))
    assert next(span.name for span in exporter.get_finished_spans()) == "SMTP _OTHER"
