"""Metrics recorded by OpenTelemetryInstrumentation, read back through a real InMemoryMetricReader."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from mailsdk.errors import ConnectionLost, DataRefused, RecipientsRefused, SenderRefused
from mailsdk.protocol.reply import Reply
from mailsdk.telemetry import OpenTelemetryInstrumentation
from mailsdk.telemetry import attributes as names

from .support import (
    R_354,
    R_MAIL,
    R_QUEUED,
    R_RCPT,
    RECIPIENTS,
    SENDER,
    SIZE,
    metric_points,
    run_smtp_session,
)


def test_session_metrics(
    instrumentation: OpenTelemetryInstrumentation, reader: InMemoryMetricReader
) -> None:
    run_smtp_session(instrumentation)
    metrics = metric_points(reader)
    assert set(metrics) == {
        "mailsdk.smtp.command.duration",
        "mailsdk.smtp.messages",
        "mailsdk.smtp.recipients",
        "mailsdk.smtp.message.size",
    }

    unit, points = metrics["mailsdk.smtp.command.duration"]
    assert unit == "s"
    counts = {
        (a["mailsdk.smtp.command"], a["mailsdk.smtp.reply.class"]): p.count for a, p in points
    }
    assert counts == {
        ("EHLO", "2xx"): 2,
        ("STARTTLS", "2xx"): 1,
        ("AUTH", "3xx"): 1,
        ("AUTH.RESPONSE", "2xx"): 1,
        ("MAIL", "2xx"): 1,
        ("RCPT", "2xx"): 2,
        ("RCPT", "5xx"): 1,
        ("DATA", "3xx"): 1,
        ("DATA.END", "2xx"): 1,
        ("QUIT", "2xx"): 1,
    }
    for attributes, point in points:
        assert set(attributes) == {"mailsdk.smtp.command", "mailsdk.smtp.reply.class"}
        assert point.sum >= 0
        assert tuple(point.explicit_bounds) == names.DURATION_BUCKETS  # the advisory is honoured

    unit, points = metrics["mailsdk.smtp.messages"]
    assert unit == "{message}"
    assert [(a, p.value) for a, p in points] == [({"outcome": "accepted"}, 1)]

    unit, points = metrics["mailsdk.smtp.recipients"]
    assert unit == "{recipient}"
    assert sorted((a["outcome"], p.value) for a, p in points) == [("accepted", 2), ("refused", 1)]

    unit, points = metrics["mailsdk.smtp.message.size"]
    assert unit == "By"
    ((attributes, point),) = points
    assert attributes == {"outcome": "accepted"}
    assert (point.count, point.sum) == (1, SIZE)
    assert tuple(point.explicit_bounds) == names.SIZE_BUCKETS


def _transaction_outcomes(
    instrumentation: OpenTelemetryInstrumentation,
    reader: InMemoryMetricReader,
    error: BaseException,
) -> tuple[Counter[str], Counter[str]]:
    session = instrumentation.session(
        server_address="mx", server_port=25, transport="tcp", protocol="smtp"
    )
    txn = session.transaction(sender=SENDER, recipients=RECIPIENTS, size=500)
    txn.failed(error)
    txn.finished(
        accepted=RECIPIENTS, refused={}, size=500, reply=R_QUEUED
    )  # ignored: already ended
    session.end()
    metrics = metric_points(reader)
    messages = Counter({a["outcome"]: p.value for a, p in metrics["mailsdk.smtp.messages"][1]})
    recipients = Counter({a["outcome"]: p.value for a, p in metrics["mailsdk.smtp.recipients"][1]})
    return messages, recipients


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (ConnectionLost("reset"), "failed"),
        (SenderRefused(Reply.build(553, "5.7.1 no"), SENDER), "refused"),
        (DataRefused(Reply.build(554, "5.6.0 bad"), "DATA"), "refused"),
        (RecipientsRefused({r: Reply.build(550, "5.1.1 unknown") for r in RECIPIENTS}), "refused"),
    ],
)
def test_failed_transactions_count_by_outcome(
    instrumentation: OpenTelemetryInstrumentation,
    reader: InMemoryMetricReader,
    error: BaseException,
    outcome: str,
) -> None:
    messages, recipients = _transaction_outcomes(instrumentation, reader, error)
    assert messages == Counter({outcome: 1})
    assert recipients == Counter({outcome: len(RECIPIENTS)})
    size = metric_points(reader)["mailsdk.smtp.message.size"][1]
    assert [(a, p.sum) for a, p in size] == [({"outcome": outcome}, 500)]


def test_refused_final_reply_counts_the_message_as_refused(
    instrumentation: OpenTelemetryInstrumentation, reader: InMemoryMetricReader
) -> None:
    session = instrumentation.session(
        server_address="mx", server_port=25, transport="tcp", protocol="smtp"
    )
    txn = session.transaction(sender=SENDER, recipients=RECIPIENTS[:1], size=None)
    txn.finished(accepted=(), refused={RECIPIENTS[0]: Reply.build(550, "no")}, size=0, reply=None)
    session.end()
    metrics = metric_points(reader)
    assert [(a, p.value) for a, p in metrics["mailsdk.smtp.messages"][1]] == [
        ({"outcome": "refused"}, 1)
    ]
    assert [(a, p.value) for a, p in metrics["mailsdk.smtp.recipients"][1]] == [
        ({"outcome": "refused"}, 1)
    ]


def test_failed_and_abandoned_commands_have_reply_class_error(
    instrumentation: OpenTelemetryInstrumentation, reader: InMemoryMetricReader
) -> None:
    session = instrumentation.session(
        server_address="mx", server_port=25, transport="tcp", protocol="smtp"
    )
    session.command("MAIL").failed(ConnectionLost("reset"))
    session.command("RCPT", pipeline_size=2)
    session.command("DATA", pipeline_size=2).replied(R_354)
    session.end(ConnectionLost("reset"))
    points = metric_points(reader)["mailsdk.smtp.command.duration"][1]
    assert sorted(
        (a["mailsdk.smtp.command"], a["mailsdk.smtp.reply.class"], p.count) for a, p in points
    ) == [
        ("DATA", "3xx", 1),
        ("MAIL", "error", 1),
        ("RCPT", "error", 1),
    ]


def test_durations_use_the_injected_clock(
    make_instrumentation: Callable[..., OpenTelemetryInstrumentation], reader: InMemoryMetricReader
) -> None:
    ticks = iter([100.0, 100.25])
    instrumentation = make_instrumentation(clock=lambda: next(ticks))
    session = instrumentation.session(
        server_address="mx", server_port=25, transport="tcp", protocol="smtp"
    )
    session.command("RCPT").replied(R_RCPT)
    session.end()
    ((attributes, point),) = metric_points(reader)["mailsdk.smtp.command.duration"][1]
    assert attributes == {"mailsdk.smtp.command": "RCPT", "mailsdk.smtp.reply.class": "2xx"}
    assert point.sum == pytest.approx(0.25)


def test_default_clock_is_perf_counter() -> None:
    assert OpenTelemetryInstrumentation()._clock is time.perf_counter


def test_global_meter_provider_is_used_when_none_is_given(
    monkeypatch: pytest.MonkeyPatch, meter_provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    # metrics.get_meter() resolves the global provider through this module-level function.
    monkeypatch.setattr(
        "opentelemetry.metrics._internal.get_meter_provider", lambda: meter_provider
    )
    instrumentation = OpenTelemetryInstrumentation()
    session = instrumentation.session(
        server_address="mx", server_port=25, transport="tcp", protocol="smtp"
    )
    session.command("NOOP").replied(R_MAIL)
    session.end()
    assert "mailsdk.smtp.command.duration" in metric_points(reader)
