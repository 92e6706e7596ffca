"""The demo's second part: a small batch over two pipelined connections, its delivery report,
and the OpenTelemetry span tree the client recorded.

Layer: L8 command line (private). The spans come from the real OpenTelemetry SDK (an in-memory
exporter; ``opentelemetry-sdk`` is part of ``mailsdk[demo]``).
"""

from __future__ import annotations

import collections
import time
import typing
from email.message import EmailMessage

from rich.console import Console
from rich.tree import Tree

from mailsdk.builder import ClientBuilder
from mailsdk.cli._batch_report import summary_table
from mailsdk.cli._demo_server import REFUSED_RECIPIENT
from mailsdk.cli._engine import deliver
from mailsdk.cli._terminal import safe
from mailsdk.flows import DeliveryStatus, Outgoing, SendOutcome

__all__ = ["BatchDemo", "batch_items", "run_batch_demo"]


def batch_items() -> list[Outgoing]:
    """Five newsletters; one to a refused address only, one with a refused Cc."""
    people = ["dana@example.com", "erin@example.com", REFUSED_RECIPIENT, "frank@example.com"]
    items: list[Outgoing] = []
    for n, rcpt in enumerate(people, 1):
        msg = EmailMessage()
        msg["From"] = "news@example.org"
        msg["To"] = rcpt
        msg["Subject"] = f"Newsletter #{n}"
        msg.set_content(f"Hello {rcpt.split('@')[0]}, issue {n} is out.\n")
        items.append(Outgoing(msg, key=f"newsletter-{n}"))
    partial = EmailMessage()
    partial["From"] = "news@example.org"
    partial["To"] = "gina@example.com"
    partial["Cc"] = REFUSED_RECIPIENT
    partial["Subject"] = "Newsletter #5"
    partial.set_content("Hello gina, issue 5 is out.\n")
    items.append(Outgoing(partial, key="newsletter-5"))
    return items


class BatchDemo(typing.NamedTuple):
    """What the demo's batch did."""

    outcomes: list[SendOutcome]
    counts: dict[str, int]
    spans: list[typing.Any]


def _tracing() -> tuple[typing.Any, typing.Any] | None:
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError:  # pragma: no cover - depends on the install
        return None
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _label(span: typing.Any) -> str:
    attrs = typing.cast("dict[str, typing.Any]", span.attributes or {})
    parts = [span.name]
    code = attrs.get("mailsdk.smtp.reply.code")
    if code is not None:
        parts.append(str(code))
    size = attrs.get("mailsdk.smtp.pipeline.size")
    if size is not None and size > 1:
        parts.append(f"pipelined x{size}")
    if span.name == "smtp.send":
        acc = attrs.get("mailsdk.smtp.recipients.accepted")
        ref = attrs.get("mailsdk.smtp.recipients.refused")
        if acc is not None:
            parts.append(f"accepted={acc} refused={ref}")
    duration = (span.end_time - span.start_time) / 1e6 if span.end_time else 0.0
    parts.append(f"{duration:.1f} ms")
    if not span.status.is_ok and span.status.status_code.name == "ERROR":
        parts.append("ERROR")
    return safe(" ".join(parts))


def span_tree(spans: typing.Sequence[typing.Any]) -> Tree:
    """The recorded spans as a rich tree (sessions at the top, commands below)."""
    children: dict[int | None, list[typing.Any]] = collections.defaultdict(list)
    ids = {s.context.span_id for s in spans}
    for span in sorted(spans, key=lambda s: s.start_time):
        parent = span.parent.span_id if span.parent is not None else None
        children[parent if parent in ids else None].append(span)
    root = Tree("spans recorded by the OpenTelemetry SDK")

    def add(node: Tree, span: typing.Any) -> None:
        branch = node.add(_label(span), highlight=False)
        for child in children.get(span.context.span_id, []):
            add(branch, child)

    for top in children[None]:
        add(root, top)
    return root


def run_batch_demo(builder: ClientBuilder, out: typing.TextIO) -> BatchDemo:
    """Send :func:`batch_items` over two connections and print the report and span tree."""
    tracing = _tracing()
    if tracing is not None:
        builder = builder.with_opentelemetry(tracer_provider=tracing[0])
    items = batch_items()
    started = time.monotonic()
    delivery = deliver(builder, items, connections=2, retries=0)
    found = list(delivery.outcomes())
    found += delivery.finish()
    outcomes = sorted(found, key=lambda o: o.index)
    elapsed = time.monotonic() - started
    console = Console(file=out, highlight=False)
    counts = collections.Counter(o.status.value for o in outcomes)
    out.write(f"\nbatch: {len(items)} messages over 2 connections (PIPELINING)\n")
    for outcome in outcomes:
        item = items[outcome.index]
        line = f"  {outcome.status.value.upper():<9}{item.key}"
        if outcome.result is not None:
            for rcpt, reply in outcome.result.refused.items():
                line += f"  refused {safe(rcpt)}: {safe(reply)}"
            line += f"  queue id {safe(outcome.result.queue_id)}"
        elif outcome.error is not None:
            line += f"  {safe(outcome.error)}"
        out.write(line + "\n")
    console.print(summary_table(counts, total=len(items), elapsed=elapsed, unknown=[]))
    spans: list[typing.Any] = []
    if tracing is not None:
        tracing[0].force_flush()
        spans = list(tracing[1].get_finished_spans())
        console.print(span_tree(spans))
    else:  # pragma: no cover
        out.write("(install opentelemetry-sdk to see the span tree)\n")
    delivered = sum(
        1 for o in outcomes if o.status in (DeliveryStatus.ACCEPTED, DeliveryStatus.PARTIAL)
    )
    out.write(f"batch: {delivered}/{len(items)} delivered, {counts.get('refused', 0)} refused\n")
    return BatchDemo(outcomes, dict(counts), spans)
