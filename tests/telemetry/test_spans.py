"""Span trees, attributes and statuses produced by OpenTelemetryInstrumentation (real SDK)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, StatusCode, TraceFlags, TraceState

from mailsdk._version import __version__
from mailsdk.errors import ConfigurationError, ConnectionLost, ReadTimeout
from mailsdk.protocol.reply import Reply
from mailsdk.telemetry import OpenTelemetryInstrumentation
from mailsdk.telemetry import attributes as names

from .support import (
    KEYWORDS_TLS,
    R_354,
    R_EHLO,
    R_MAIL,
    R_QUEUED,
    R_RCPT,
    RECIPIENTS,
    SENDER,
    SIZE,
    named,
    render,
    run_smtp_session,
)

MakeInstrumentation = Callable[..., OpenTelemetryInstrumentation]


def test_full_session_span_tree(
    instrumentation: OpenTelemetryInstrumentation, exporter: InMemorySpanExporter
) -> None:
    run_smtp_session(instrumentation)
    assert render(exporter.get_finished_spans()) == [
        "smtp.session CLIENT UNSET",
        "  SMTP EHLO CLIENT UNSET",
        "  SMTP STARTTLS CLIENT UNSET",
        "  SMTP EHLO CLIENT UNSET",
        "  SMTP AUTH CLIENT UNSET",
        "  SMTP AUTH.RESPONSE CLIENT UNSET",
        "  smtp.send CLIENT UNSET",
        "    SMTP MAIL CLIENT UNSET",
        "    SMTP RCPT CLIENT UNSET",
        "    SMTP RCPT CLIENT ERROR",
        "    SMTP RCPT CLIENT UNSET",
        "    SMTP DATA CLIENT UNSET",
        "    SMTP DATA.END CLIENT UNSET",
        "  SMTP QUIT CLIENT UNSET",
    ]


def test_full_session_attributes(
    instrumentation: OpenTelemetryInstrumentation, exporter: InMemorySpanExporter
) -> None:
    run_smtp_session(instrumentation)
    spans = exporter.get_finished_spans()
    (session,) = named(spans, "smtp.session")
    assert dict(session.attributes or {}) == {
        "network.transport": "tcp",
        "network.protocol.name": "smtp",
        "server.address": "mx.example.net",
        "server.port": 587,
        "network.peer.address": "192.0.2.10",
        "network.peer.port": 587,
        "mailsdk.tls.version": "TLSv1.3",
        "mailsdk.tls.cipher": "TLS_AES_256_GCM_SHA384",
        "mailsdk.tls.implicit": False,
        "mailsdk.smtp.extensions": KEYWORDS_TLS,  # the post-STARTTLS list wins
        "mailsdk.sasl.mechanism": "PLAIN",
    }
    assert session.instrumentation_scope is not None
    assert session.instrumentation_scope.name == "mailsdk"
    assert session.instrumentation_scope.version == __version__
    assert session.instrumentation_scope.schema_url == names.SCHEMA_URL

    (send,) = named(spans, "smtp.send")
    assert dict(send.attributes or {}) == {
        "mailsdk.smtp.recipient_count": 3,
        "mailsdk.smtp.message.size": SIZE,
        "mailsdk.smtp.recipient_domains": ("example.com", "example.net"),
        "mailsdk.smtp.recipients.accepted": 2,
        "mailsdk.smtp.recipients.refused": 1,
        "mailsdk.smtp.reply.code": 250,
        "mailsdk.smtp.reply.enhanced_status": "2.0.0",
    }

    ok, refused, _ = named(spans, "SMTP RCPT")
    assert dict(ok.attributes or {}) == {
        "mailsdk.smtp.command": "RCPT",
        "mailsdk.smtp.pipeline.size": 1,
        "mailsdk.smtp.reply.code": 250,
        "mailsdk.smtp.reply.enhanced_status": "2.1.5",
    }
    assert dict(refused.attributes or {}) == {
        "mailsdk.smtp.command": "RCPT",
        "mailsdk.smtp.pipeline.size": 1,
        "mailsdk.smtp.reply.code": 550,
        "mailsdk.smtp.reply.enhanced_status": "5.1.1",
        "error.type": "550",
    }
    assert refused.status.status_code is StatusCode.ERROR
    assert refused.status.description == "550"
    (data,) = named(spans, "SMTP DATA")
    assert dict(data.attributes or {})["mailsdk.smtp.reply.code"] == 354
    assert "mailsdk.smtp.reply.enhanced_status" not in (data.attributes or {})
    # Everything ended, and children end before (or when) their parents do.
    for span in spans:
        assert span.end_time is not None
        assert span.start_time is not None
        assert span.start_time <= span.end_time


def test_pipelined_group_overlaps_under_the_transaction(
    instrumentation: OpenTelemetryInstrumentation, exporter: InMemorySpanExporter
) -> None:
    session = instrumentation.session(
        server_address="mx.example.net", server_port=25, transport="tcp", protocol="smtp"
    )
    txn = session.transaction(sender=SENDER, recipients=RECIPIENTS[:2], size=None)
    group = [session.command(v, pipeline_size=4) for v in ("MAIL", "RCPT", "RCPT", "DATA")]
    for observer, reply in zip(group, (R_MAIL, R_RCPT, R_RCPT, R_354), strict=True):
        observer.replied(reply)
    session.command("DATA.END").replied(R_QUEUED)
    txn.finished(accepted=RECIPIENTS[:2], refused={}, size=10, reply=R_QUEUED)
    session.end()

    spans = exporter.get_finished_spans()
    (send,) = named(spans, "smtp.send")
    pipelined = [
        s for s in spans if s.attributes and s.attributes.get(names.SMTP_PIPELINE_SIZE) == 4
    ]
    assert [s.name for s in sorted(pipelined, key=lambda s: s.context.span_id)] == [
        "SMTP MAIL",
        "SMTP RCPT",
        "SMTP RCPT",
        "SMTP DATA",
    ]
    for span in pipelined:
        assert span.parent is not None
        assert span.parent.span_id == send.context.span_id
    # Overlap: every span of the group started before the first one ended.
    first_end = min(s.end_time or 0 for s in pipelined)
    assert all((s.start_time or 0) <= first_end for s in pipelined)
    assert "mailsdk.smtp.recipient_domains" in (send.attributes or {})


def test_explicit_transaction_parent_for_cross_transaction_pipelining(
    instrumentation: OpenTelemetryInstrumentation, exporter: InMemorySpanExporter
) -> None:
    session = instrumentation.session(
        server_address="mx", server_port=25, transport="tcp", protocol="smtp"
    )
    first = session.transaction(sender=SENDER, recipients=RECIPIENTS[:1], size=None)
    second = session.transaction(sender=SENDER, recipients=RECIPIENTS[1:2], size=None)
    end_of_first = session.command("DATA.END", pipeline_size=2, transaction=first)
    mail_of_second = session.command("MAIL", pipeline_size=2)
    end_of_first.replied(R_QUEUED)
    mail_of_second.replied(R_MAIL)
    first.finished(accepted=RECIPIENTS[:1], refused={}, size=1, reply=R_QUEUED)
    second.failed(ConnectionLost("gone"))
    session.end()
    assert render(exporter.get_finished_spans()) == [
        "smtp.session CLIENT UNSET",
        "  smtp.send CLIENT UNSET",
        "    SMTP DATA.END CLIENT UNSET",
        "  smtp.send CLIENT ERROR",
        "    SMTP MAIL CLIENT UNSET",
    ]


def test_commands_after_the_transaction_go_back_to_the_session(
    instrumentation: OpenTelemetryInstrumentation, exporter: InMemorySpanExporter
) -> None:
    session = instrumentation.session(
        server_address="mx", server_port=25, transport="tcp", protocol="smtp"
    )
    txn = session.transaction(sender=SENDER, recipients=RECIPIENTS[:1], size=None)
    session.command("MAIL").replied(Reply.build(451, "4.3.0 try later"))
    txn.failed(ConnectionLost("x"))
    session.command("RSET").replied(R_MAIL)
    session.end()
    assert render(exporter.get_finished_spans()) == [
        "smtp.session CLIENT UNSET",
        "  smtp.send CLIENT ERROR",
        "    SMTP MAIL CLIENT ERROR",
        "  SMTP RSET CLIENT UNSET",
    ]


def test_dropped_connection_ends_everything_with_error(
    instrumentation: OpenTelemetryInstrumentation, exporter: InMemorySpanExporter
) -> None:
    session = instrumentation.session(
        server_address="mx.example.net", server_port=25, transport="tcp", protocol="smtp"
    )
    session.command("EHLO").replied(R_EHLO)
    session.transaction(sender=SENDER, recipients=RECIPIENTS, size=None)
    session.command("MAIL", pipeline_size=2)
    session.command("RCPT", pipeline_size=2)
    session.end(ConnectionLost("connection reset by peer"))

    spans = exporter.get_finished_spans()
    assert render(spans) == [
        "smtp.session CLIENT ERROR",
        "  SMTP EHLO CLIENT UNSET",
        "  smtp.send CLIENT ERROR",
        "    SMTP MAIL CLIENT ERROR",
        "    SMTP RCPT CLIENT ERROR",
    ]
    for span in spans:
        if span.name == "SMTP EHLO":
            continue
        assert (span.attributes or {})["error.type"] == "mailsdk.errors.ConnectionLost"
        assert span.status.description == "mailsdk.errors.ConnectionLost"
        (event,) = span.events
        assert event.name == "exception"
        assert dict(event.attributes or {}).keys() == {"exception.type", "exception.stacktrace"}
        assert (event.attributes or {})["exception.type"] == "mailsdk.errors.ConnectionLost"


def test_end_closes_every_open_transaction(
    instrumentation: OpenTelemetryInstrumentation, exporter: InMemorySpanExporter
) -> None:
    session = instrumentation.session(
        server_address="mx", server_port=25, transport="tcp", protocol="smtp"
    )
    for _ in range(3):
        session.transaction(sender=SENDER, recipients=RECIPIENTS, size=None)
    session.end(ConnectionLost("reset"))
    assert render(exporter.get_finished_spans()) == [
        "smtp.session CLIENT ERROR",
        "  smtp.send CLIENT ERROR",
        "  smtp.send CLIENT ERROR",
        "  smtp.send CLIENT ERROR",
    ]


def test_clean_end_with_open_children_marks_them_other(
    instrumentation: OpenTelemetryInstrumentation, exporter: InMemorySpanExporter
) -> None:
    session = instrumentation.session(
        server_address=None, server_port=None, transport="unix", protocol="lmtp"
    )
    session.command("NOOP")
    session.end()
    (noop,) = named(exporter.get_finished_spans(), "SMTP NOOP")
    assert noop.status.status_code is StatusCode.ERROR
    assert (noop.attributes or {})["error.type"] == "_OTHER"
    (sess,) = named(exporter.get_finished_spans(), "smtp.session")
    assert dict(sess.attributes or {}) == {
        "network.transport": "unix",
        "network.protocol.name": "lmtp",
    }


def test_command_failure_records_the_exception_type(
    instrumentation: OpenTelemetryInstrumentation, exporter: InMemorySpanExporter
) -> None:
    session = instrumentation.session(
        server_address="mx", server_port=25, transport="tcp", protocol="smtp"
    )
    command = session.command("DATA.END")
    command.failed(ReadTimeout("no reply within the data deadline", phase="data"))
    command.replied(R_QUEUED)  # ignored: the span already ended
    session.end()
    (span,) = named(exporter.get_finished_spans(), "SMTP DATA.END")
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {}) == {
        "mailsdk.smtp.command": "DATA.END",
        "mailsdk.smtp.pipeline.size": 1,
        "error.type": "mailsdk.errors.ReadTimeout",
    }


def test_lmtp_per_recipient_replies_are_events(
    instrumentation: OpenTelemetryInstrumentation, exporter: InMemorySpanExporter
) -> None:
    session = instrumentation.session(
        server_address="/run/dovecot/lmtp", server_port=None, transport="unix", protocol="lmtp"
    )
    session.command("LHLO").replied(R_EHLO)
    txn = session.transaction(sender=SENDER, recipients=RECIPIENTS, size=None)
    for verb, reply in (("MAIL", R_MAIL), ("RCPT", R_RCPT), ("RCPT", R_RCPT), ("RCPT", R_RCPT)):
        session.command(verb).replied(reply)
    session.command("DATA").replied(R_354)
    end = session.command("DATA.END")
    over_quota = Reply.build(452, "4.2.2 <carol@Example.NET> Mailbox full")
    end.recipient_replied(RECIPIENTS[0], R_QUEUED)
    end.recipient_replied(RECIPIENTS[1], over_quota)
    end.recipient_replied(RECIPIENTS[2], R_QUEUED)
    end.replied(R_QUEUED)
    end.recipient_replied(RECIPIENTS[2], R_QUEUED)  # after the end: ignored
    txn.finished(
        accepted=[RECIPIENTS[0], RECIPIENTS[2]],
        refused={RECIPIENTS[1]: over_quota},
        size=99,
        reply=None,
    )
    session.end()

    spans = exporter.get_finished_spans()
    (data_end,) = named(spans, "SMTP DATA.END")
    assert [(e.name, dict(e.attributes or {})) for e in data_end.events] == [
        (
            "mailsdk.lmtp.recipient_reply",
            {
                "mailsdk.smtp.reply.code": 250,
                "mailsdk.smtp.reply.enhanced_status": "2.0.0",
                "mailsdk.smtp.recipient.index": 0,
            },
        ),
        (
            "mailsdk.lmtp.recipient_reply",
            {
                "mailsdk.smtp.reply.code": 452,
                "mailsdk.smtp.reply.enhanced_status": "4.2.2",
                "mailsdk.smtp.recipient.index": 1,
            },
        ),
        (
            "mailsdk.lmtp.recipient_reply",
            {
                "mailsdk.smtp.reply.code": 250,
                "mailsdk.smtp.reply.enhanced_status": "2.0.0",
                "mailsdk.smtp.recipient.index": 2,
            },
        ),
    ]
    assert data_end.status.status_code is StatusCode.UNSET
    (send,) = named(spans, "smtp.send")
    assert send.status.status_code is StatusCode.UNSET  # partial delivery is not an error
    assert (send.attributes or {})["mailsdk.smtp.recipients.refused"] == 1
    assert "mailsdk.smtp.reply.code" not in (send.attributes or {})


def test_session_is_a_child_of_the_callers_span(
    instrumentation: OpenTelemetryInstrumentation,
    tracer_provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    tracer = tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("request handler"):
        session = instrumentation.session(
            server_address="mx", server_port=25, transport="tcp", protocol="smtp"
        )
    # Later commands ignore whatever is current now: the parent is explicit.
    with tracer.start_as_current_span("unrelated"):
        session.command("NOOP").replied(R_MAIL)
    session.end()
    assert render(exporter.get_finished_spans()) == [
        "request handler INTERNAL UNSET",
        "  smtp.session CLIENT UNSET",
        "    SMTP NOOP CLIENT UNSET",
        "unrelated INTERNAL UNSET",
    ]


def test_sessions_in_threads_and_tasks_keep_their_own_parents(
    instrumentation: OpenTelemetryInstrumentation, exporter: InMemorySpanExporter
) -> None:
    def one(tag: str, barrier: threading.Barrier) -> None:
        session = instrumentation.session(
            server_address=tag, server_port=25, transport="tcp", protocol="smtp"
        )
        barrier.wait(timeout=10)
        txn = session.transaction(sender=SENDER, recipients=RECIPIENTS[:1], size=None)
        barrier.wait(timeout=10)
        session.command("MAIL").replied(R_MAIL)
        txn.finished(accepted=RECIPIENTS[:1], refused={}, size=1, reply=R_QUEUED)
        session.end()

    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=one, args=(f"t{i}", barrier)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    async def task(tag: str, gate: asyncio.Event) -> None:
        session = instrumentation.session(
            server_address=tag, server_port=25, transport="tcp", protocol="smtp"
        )
        txn = session.transaction(sender=SENDER, recipients=RECIPIENTS[:1], size=None)
        await gate.wait()
        session.command("MAIL").replied(R_MAIL)
        txn.finished(accepted=RECIPIENTS[:1], refused={}, size=1, reply=R_QUEUED)
        session.end()

    async def main() -> None:
        gate = asyncio.Event()
        tasks = [asyncio.create_task(task(f"a{i}", gate)) for i in range(2)]
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())

    spans = exporter.get_finished_spans()
    by_span_id = {s.context.span_id: s for s in spans}
    sessions = named(spans, "smtp.session")
    assert len(sessions) == 4
    for mail in named(spans, "SMTP MAIL"):
        assert mail.parent is not None
        send = by_span_id[mail.parent.span_id]
        assert send.name == "smtp.send"
        assert send.parent is not None
        session = by_span_id[send.parent.span_id]
        assert session.name == "smtp.session"
        assert session.parent is None
        assert mail.context.trace_id == session.context.trace_id
    assert len({s.context.trace_id for s in sessions}) == 4


@pytest.mark.parametrize(
    ("verb", "name"),
    [
        ("ehlo", "SMTP EHLO"),
        ("AUTH PLAIN dGVzdAB0ZXN0AHNlY3JldA==", "SMTP AUTH"),
        ("dXNlcg", "SMTP _OTHER"),  # a SASL payload sent with execute(): never a span name
        ("XFOO", "SMTP _OTHER"),
        ("DATA-END", "SMTP DATA.END"),
        ("", "SMTP _OTHER"),
    ],
)
def test_verbs_are_normalised(
    instrumentation: OpenTelemetryInstrumentation,
    exporter: InMemorySpanExporter,
    verb: str,
    name: str,
) -> None:
    session = instrumentation.session(
        server_address="mx", server_port=25, transport="tcp", protocol="smtp"
    )
    session.command(verb).replied(R_MAIL)
    session.end()
    (span,) = [s for s in exporter.get_finished_spans() if s.name != "smtp.session"]
    assert span.name == name
    assert (span.attributes or {})["mailsdk.smtp.command"] == name.removeprefix("SMTP ")


def test_extra_verbs(
    make_instrumentation: MakeInstrumentation, exporter: InMemorySpanExporter
) -> None:
    instrumentation = make_instrumentation(extra_verbs=["xfoo"])
    session = instrumentation.session(
        server_address="mx", server_port=25, transport="tcp", protocol="smtp"
    )
    session.command("XFOO bar").replied(R_MAIL)
    session.end()
    assert [s.name for s in exporter.get_finished_spans()] == ["SMTP XFOO", "smtp.session"]
    with pytest.raises(ConfigurationError):
        make_instrumentation(extra_verbs=["X FOO"])


def test_trace_headers_w3c_format(
    make_instrumentation: MakeInstrumentation, exporter: InMemorySpanExporter
) -> None:
    instrumentation = make_instrumentation(propagate=True)
    parent = NonRecordingSpan(
        SpanContext(
            trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
            span_id=0x00F067AA0BA902B7,
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
            trace_state=TraceState([("vendor", "opaque")]),
        )
    )
    with trace.use_span(parent):
        session = instrumentation.session(
            server_address="mx", server_port=25, transport="tcp", protocol="smtp"
        )
    txn = session.transaction(sender=SENDER, recipients=RECIPIENTS, size=None)
    headers = dict(txn.trace_headers())
    txn.failed(ConnectionLost("x"))
    session.end()
    (send,) = named(exporter.get_finished_spans(), "smtp.send")
    ctx = send.context
    assert ctx.trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736
    assert headers == {
        "traceparent": f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}",
        "tracestate": "vendor=opaque",
    }
    assert headers["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")


def test_trace_headers_off_by_default(instrumentation: OpenTelemetryInstrumentation) -> None:
    session = instrumentation.session(
        server_address="mx", server_port=25, transport="tcp", protocol="smtp"
    )
    txn = session.transaction(sender=SENDER, recipients=RECIPIENTS, size=None)
    assert txn.trace_headers() == {}
    assert not instrumentation.propagate


def test_without_an_sdk_spans_do_not_record() -> None:
    instrumentation = OpenTelemetryInstrumentation(
        tracer_provider=trace.NoOpTracerProvider(), propagate=True
    )
    run_smtp_session(instrumentation)  # every hook works on non-recording spans
    session = instrumentation.session(
        server_address="mx", server_port=25, transport="tcp", protocol="smtp"
    )
    assert not instrumentation.tracer.start_span("probe").is_recording()
    txn = session.transaction(sender=SENDER, recipients=RECIPIENTS, size=None)
    assert txn.trace_headers() == {}  # no valid span context: nothing to propagate
    txn.failed(ConnectionLost("x"))
    session.end()


def test_global_providers_are_used_when_none_are_given(
    monkeypatch: pytest.MonkeyPatch,
    tracer_provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    # Stand in for the global provider without installing one process-wide.
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: tracer_provider)
    run_smtp_session(OpenTelemetryInstrumentation())
    assert len(named(exporter.get_finished_spans(), "smtp.session")) == 1
