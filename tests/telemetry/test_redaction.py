"""What must never reach a span or a metric: secrets, reply text, addresses unless opted in."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from mailsdk.errors import AuthenticationFailed, ConnectionLost, InvalidInputError, SenderRefused
from mailsdk.protocol.reply import Reply
from mailsdk.telemetry import OpenTelemetryInstrumentation
from mailsdk.telemetry import attributes as names

from .support import (
    FAKE_TOKEN,
    R_EHLO,
    RECIPIENTS,
    REFUSED,
    SENDER,
    every_string,
    named,
    run_smtp_session,
)

MakeInstrumentation = Callable[..., OpenTelemetryInstrumentation]
LOCAL_PARTS = ("alice@", "bob@", "carol@", "dave@")


def _failed_auth(instrumentation: OpenTelemetryInstrumentation) -> None:
    """AUTH XOAUTH2 with a server challenge and a final reply that both echo the token."""
    session = instrumentation.session(
        server_address="smtp.office365.com", server_port=587, transport="tcp", protocol="smtp"
    )
    session.command("EHLO").replied(R_EHLO)
    # The driver passes only the verb; even a whole line passed by mistake keeps no argument.
    session.command(f"AUTH XOAUTH2 {FAKE_TOKEN}").replied(
        Reply.build(334, f"eyJzdGF0dXMiOiI0MDEifQ== {FAKE_TOKEN}")
    )
    session.command("AUTH.RESPONSE").replied(
        reply := Reply.build(535, f"5.7.3 Authentication unsuccessful token={FAKE_TOKEN}")
    )
    error = AuthenticationFailed(reply, mechanism="XOAUTH2", hint=f"expired {FAKE_TOKEN}")
    assert FAKE_TOKEN in str(error)  # the error itself carries the reply text...
    try:
        raise error
    except AuthenticationFailed as caught:
        session.end(caught)  # ...but the span must not


@pytest.mark.parametrize("record_addresses", [False, True])
def test_failed_auth_never_records_the_token(
    make_instrumentation: MakeInstrumentation,
    exporter: InMemorySpanExporter,
    reader: InMemoryMetricReader,
    record_addresses: bool,
) -> None:
    _failed_auth(make_instrumentation(record_addresses=record_addresses))
    spans = exporter.get_finished_spans()
    text = every_string(spans)
    assert FAKE_TOKEN not in text
    assert "Authentication unsuccessful" not in text  # no reply text at all
    data = reader.get_metrics_data()
    assert data is not None
    assert FAKE_TOKEN not in data.to_json()

    (session,) = named(spans, "smtp.session")
    assert session.status.status_code is StatusCode.ERROR
    assert (session.attributes or {})["error.type"] == "mailsdk.errors.AuthenticationFailed"
    (event,) = session.events
    assert dict(event.attributes or {}).keys() == {
        "exception.type",
        "exception.stacktrace",
        "mailsdk.smtp.reply.code",
        "mailsdk.smtp.reply.enhanced_status",
    }
    assert (event.attributes or {})["mailsdk.smtp.reply.code"] == 535
    stacktrace = str((event.attributes or {})["exception.stacktrace"])
    assert "_failed_auth" in stacktrace  # frames are kept...
    assert stacktrace.endswith("mailsdk.errors.AuthenticationFailed\n")  # ...messages are not
    (response,) = named(spans, "SMTP AUTH.RESPONSE")
    assert response.status.status_code is StatusCode.ERROR
    assert (response.attributes or {})["error.type"] == "535"


def test_addresses_absent_by_default(
    instrumentation: OpenTelemetryInstrumentation,
    exporter: InMemorySpanExporter,
    reader: InMemoryMetricReader,
) -> None:
    run_smtp_session(instrumentation)
    text = every_string(exporter.get_finished_spans())
    for local_part in LOCAL_PARTS:
        assert local_part not in text.lower()
    for key in (
        "mailsdk.smtp.sender",
        "mailsdk.smtp.recipients.addresses",
        "Recipient address rejected",
    ):
        assert key not in text
    assert '"example.net"' in text  # domains are allowed, lower-cased
    data = reader.get_metrics_data()
    assert data is not None
    assert "example" not in data.to_json()  # metrics never carry addresses nor domains


def test_addresses_present_when_opted_in(
    make_instrumentation: MakeInstrumentation, exporter: InMemorySpanExporter
) -> None:
    run_smtp_session(make_instrumentation(record_addresses=True))
    (send,) = named(exporter.get_finished_spans(), "smtp.send")
    attributes = send.attributes or {}
    assert attributes["mailsdk.smtp.sender"] == SENDER
    assert attributes["mailsdk.smtp.recipients.addresses"] == RECIPIENTS
    assert attributes["mailsdk.smtp.recipients.refused_addresses"] == (REFUSED,)
    # Reply text stays out even with addresses on (it is text, not an address field).
    assert "Recipient address rejected" not in every_string(exporter.get_finished_spans())


def test_lmtp_event_address_only_when_opted_in(
    make_instrumentation: MakeInstrumentation, exporter: InMemorySpanExporter
) -> None:
    for record in (False, True):
        instrumentation = make_instrumentation(record_addresses=record)
        session = instrumentation.session(
            server_address="lmtp", server_port=24, transport="tcp", protocol="lmtp"
        )
        txn = session.transaction(sender=SENDER, recipients=RECIPIENTS, size=None)
        end = session.command("DATA.END")
        end.recipient_replied("stranger@example.com", Reply.build(250, "2.0.0 ok"))
        end.replied(Reply.build(250, "2.0.0 ok"))
        txn.finished(accepted=RECIPIENTS, refused={}, size=1, reply=None)
        session.end()
    first, second = named(exporter.get_finished_spans(), "SMTP DATA.END")
    # An unknown recipient gets no index; its address only with the opt-in.
    assert dict(first.events[0].attributes or {}) == {
        "mailsdk.smtp.reply.code": 250,
        "mailsdk.smtp.reply.enhanced_status": "2.0.0",
    }
    assert (second.events[0].attributes or {})[
        "mailsdk.smtp.recipient.address"
    ] == "stranger@example.com"


def test_exception_messages_only_for_mailsdk_errors_with_opt_in(
    make_instrumentation: MakeInstrumentation, exporter: InMemorySpanExporter
) -> None:
    cases: list[tuple[bool, BaseException, str | None]] = [
        (False, InvalidInputError("malformed address 'x@y'"), None),
        (True, InvalidInputError("malformed address 'x@y'"), "malformed address 'x@y'"),
        (True, SenderRefused(Reply.build(553, "5.7.1 <a@b> text"), "a@b"), None),  # reply text
        (True, RuntimeError("foreign: could be anything"), None),
    ]
    for record, error, _ in cases:
        session = make_instrumentation(record_addresses=record).session(
            server_address="mx", server_port=25, transport="tcp", protocol="smtp"
        )
        session.end(error)
    sessions = named(exporter.get_finished_spans(), "smtp.session")
    for span, (_, error, expected) in zip(sessions, cases, strict=True):
        (event,) = span.events
        assert (event.attributes or {}).get("exception.message") == expected
        assert (event.attributes or {})["exception.type"] == names.error_type(error)
    assert (sessions[3].attributes or {})["error.type"] == "RuntimeError"


def test_chained_exception_messages_stay_out_of_the_stacktrace(
    instrumentation: OpenTelemetryInstrumentation, exporter: InMemorySpanExporter
) -> None:
    session = instrumentation.session(
        server_address="mx", server_port=25, transport="tcp", protocol="smtp"
    )
    try:
        try:
            raise OSError(104, f"reset while sending {FAKE_TOKEN}")
        except OSError as cause:
            raise ConnectionLost(f"lost during AUTH {FAKE_TOKEN}") from cause
    except ConnectionLost as error:
        session.end(error)
    text = every_string(exporter.get_finished_spans())
    assert FAKE_TOKEN not in text
    assert "mailsdk.errors.ConnectionLost" in text


def test_recipient_domains_helper() -> None:
    assert names.recipient_domains(
        ["<A@Example.COM>", "b@example.com", "postmaster", "c@x.org"]
    ) == (
        "example.com",
        "x.org",
    )


def test_mechanism_names_are_sanitised(
    instrumentation: OpenTelemetryInstrumentation, exporter: InMemorySpanExporter
) -> None:
    session = instrumentation.session(
        server_address="mx", server_port=25, transport="tcp", protocol="smtp"
    )
    session.authenticated(f"PLAIN {FAKE_TOKEN}")
    session.end()
    (span,) = exporter.get_finished_spans()
    assert (span.attributes or {})["mailsdk.sasl.mechanism"] == "_OTHER"
