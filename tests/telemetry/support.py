"""Helpers for the telemetry tests: a driver-like scripted session and span/metric rendering."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan

from mailsdk.protocol.reply import Reply
from mailsdk.telemetry import Instrumentation, SessionObserver

SENDER = "alice@example.org"
RECIPIENTS = ("bob@example.com", "carol@Example.NET", "dave@example.com")
REFUSED = "carol@Example.NET"
SIZE = 1234
#: A fake secret placed in reply texts; it must never reach a span or a metric.
FAKE_TOKEN = "ya29.FAKE-TOKEN-d3adb33f"

R_EHLO = Reply.build(250, "mx.example.net", "PIPELINING", "SIZE 10240000", "STARTTLS", "8BITMIME")
R_220 = Reply.build(220, "2.0.0 Ready to start TLS")
R_334 = Reply.build(334, "")
R_235 = Reply.build(235, "2.7.0 Authentication successful")
R_MAIL = Reply.build(250, "2.1.0 Ok")
R_RCPT = Reply.build(250, "2.1.5 Ok")
R_RCPT_550 = Reply.build(550, f"5.1.1 <{REFUSED}>: Recipient address rejected")
R_354 = Reply.build(354, "End data with <CR><LF>.<CR><LF>")
R_QUEUED = Reply.build(250, "2.0.0 Ok: queued as 4ABCDEF")
R_221 = Reply.build(221, "2.0.0 Bye")
KEYWORDS = ("PIPELINING", "SIZE", "STARTTLS", "8BITMIME")
KEYWORDS_TLS = ("PIPELINING", "SIZE", "8BITMIME", "AUTH", "ENHANCEDSTATUSCODES")


def run_smtp_session(instrumentation: Instrumentation) -> SessionObserver:
    """Drive a full SMTP session the way a driver does: STARTTLS, AUTH, one partial send, QUIT."""
    session = instrumentation.session(
        server_address="mx.example.net", server_port=587, transport="tcp", protocol="smtp"
    )
    session.connected(peer_address="192.0.2.10", peer_port=587)
    session.command("EHLO").replied(R_EHLO)
    session.capabilities(KEYWORDS)
    session.command("STARTTLS").replied(R_220)
    session.tls_established(version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384", implicit=False)
    session.command("EHLO").replied(R_EHLO)
    session.capabilities(KEYWORDS_TLS)
    session.command("AUTH").replied(R_334)
    session.command("AUTH.RESPONSE").replied(R_235)
    session.authenticated("plain")
    txn = session.transaction(sender=SENDER, recipients=RECIPIENTS, size=SIZE)
    session.command("MAIL").replied(R_MAIL)
    session.command("RCPT").replied(R_RCPT)
    session.command("RCPT").replied(R_RCPT_550)
    session.command("RCPT").replied(R_RCPT)
    session.command("DATA").replied(R_354)
    session.command("DATA.END").replied(R_QUEUED)
    txn.finished(
        accepted=[r for r in RECIPIENTS if r != REFUSED],
        refused={REFUSED: R_RCPT_550},
        size=SIZE,
        reply=R_QUEUED,
    )
    session.command("QUIT").replied(R_221)
    session.end()
    return session


def by_id(spans: Iterable[ReadableSpan]) -> list[ReadableSpan]:
    """Spans in creation order (the tests' id generator is sequential)."""
    return sorted(spans, key=lambda s: s.context.span_id)


def render(spans: Sequence[ReadableSpan]) -> list[str]:
    """Render the span forest as indented ``name KIND STATUS`` lines in creation order."""
    ordered = by_id(spans)
    ids = {s.context.span_id for s in ordered}
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in ordered:
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent if parent in ids else None, []).append(span)
    lines: list[str] = []

    def walk(key: int | None, depth: int) -> None:
        for span in children.get(key, []):
            status = span.status.status_code.name
            lines.append(f"{'  ' * depth}{span.name} {span.kind.name} {status}")
            walk(span.context.span_id, depth + 1)

    walk(None, 0)
    return lines


def named(spans: Iterable[ReadableSpan], name: str) -> list[ReadableSpan]:
    """The spans called ``name``, in creation order."""
    return [s for s in by_id(spans) if s.name == name]


def metric_points(
    reader: InMemoryMetricReader,
) -> dict[str, tuple[str, list[tuple[dict[str, Any], Any]]]]:
    """``{metric name: (unit, [(attributes, point)...])}`` from one collection."""
    data = reader.get_metrics_data()
    result: dict[str, tuple[str, list[tuple[dict[str, Any], Any]]]] = {}
    if data is None:
        return result
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                points = [(dict(p.attributes or {}), p) for p in metric.data.data_points]
                result[metric.name] = (metric.unit or "", points)
    return result


def every_string(spans: Iterable[ReadableSpan]) -> str:
    """Everything a span exporter would see, as one JSON text per span."""
    return "\n".join(span.to_json() for span in spans)
