"""``mailsdk demo``: the main job on an embedded default.

Layer: L8 command line. Starts the demo server, sends messages with the real client stack
(builder → client → flows → protocol → transport, with STARTTLS and AUTH), prints a report; then
a small batch over two pipelined connections (one recipient refused), its delivery report and
the span tree OpenTelemetry recorded. ``--wire`` shows the conversation: consecutive ``C:``
lines marked ``|`` were written in one go (PIPELINING).
"""

from __future__ import annotations

import asyncio
import pathlib
import tempfile
import time
import typing
from email.message import EmailMessage

import click

from mailsdk.builder import ClientBuilder
from mailsdk.cli._certs import make_certificates
from mailsdk.cli._demo_batch import run_batch_demo
from mailsdk.cli._demo_server import DEMO_PASSWORD, DEMO_USER, REFUSED_RECIPIENT, DemoServer
from mailsdk.cli._terminal import disable_wire, enable_wire, safe
from mailsdk.errors import ConfigurationError, MailError
from mailsdk.flows import DeliveryStatus, SendResult
from mailsdk.transport import TlsSettings

__all__ = ["demo_command", "demo_messages", "run_demo"]


def demo_messages() -> list[EmailMessage]:
    """The messages the demo sends: a team note (one recipient refused), a Bcc'd report with
    8-bit text, and an international (SMTPUTF8) address."""
    first = EmailMessage()
    first["From"] = "Release Bot <bot@example.org>"
    first["To"] = "alice@example.com, " + REFUSED_RECIPIENT
    first["Cc"] = "bob@example.com"
    first["Subject"] = "Release 1.0 is out"
    first.set_content(
        "Hello team,\n\nRelease 1.0 shipped today.\n.\nA line with a lone dot above.\n"
    )

    second = EmailMessage()
    second["From"] = "reports@example.org"
    second["To"] = "carol@example.com"
    second["Bcc"] = "audit@example.com"
    second["Subject"] = "Weekly report — café numbers"
    second.set_content("Ventes: 1 234 € — très bien.\n", cte="8bit")

    third = EmailMessage()
    third["From"] = "bot@example.org"
    third["To"] = "josé@exámple.com"
    third["Subject"] = "International address"
    third.set_content("SMTPUTF8 at work.\n")
    return [first, second, third]


def _report(out: typing.TextIO, n: int, msg: EmailMessage, outcome: SendResult | MailError) -> None:
    out.write(f"\nmessage {n}: {msg['Subject']}\n")
    if isinstance(outcome, MailError):
        out.write(f"  FAILED   {type(outcome).__name__}: {outcome}\n")
        return
    for rcpt in outcome.accepted:
        out.write(f"  accepted {rcpt:<28} {outcome.recipient_replies[rcpt]}\n")
    for rcpt, reply in outcome.refused.items():
        out.write(f"  REFUSED  {rcpt:<28} {reply}\n")
    out.write(f"  final    {outcome.reply}  ({outcome.size} bytes, queue id {outcome.queue_id})\n")


def _builder(port: int, ca_pem: bytes) -> ClientBuilder:
    return (
        ClientBuilder.smtp("127.0.0.1", port)
        .with_tls(
            "starttls",
            settings=TlsSettings(ca_data=ca_pem.decode("ascii")),
            server_hostname="localhost",
        )
        .with_credentials(DEMO_USER, DEMO_PASSWORD)
        .with_local_hostname("demo.client.invalid")
        .with_timeouts(10.0)
    )


def _send_sync(builder: ClientBuilder, out: typing.TextIO) -> list[SendResult | MailError]:
    results: list[SendResult | MailError] = []
    with builder.build().connect() as session:
        _header(out, session.tls, session.mechanism, session.capabilities.keywords, "blocking")
        for msg in demo_messages():
            try:
                results.append(session.send_message(msg))
            except MailError as exc:
                results.append(exc)
    return results


async def _send_async(builder: ClientBuilder, out: typing.TextIO) -> list[SendResult | MailError]:
    results: list[SendResult | MailError] = []
    async with await builder.build_async().connect() as session:
        _header(out, session.tls, session.mechanism, session.capabilities.keywords, "asyncio")
        for msg in demo_messages():
            try:
                results.append(await session.send_message(msg))
            except MailError as exc:
                results.append(exc)
    return results


def _header(
    out: typing.TextIO,
    tls: object,
    mechanism: str | None,
    keywords: typing.Sequence[str],
    mode: str,
) -> None:
    version = getattr(tls, "version", None)
    cipher = getattr(tls, "cipher", None)
    out.write(f"session: {mode} client, TLS {version} ({cipher}), AUTH {mechanism}\n")
    out.write(f"server extensions: {' '.join(keywords)}\n")


def run_demo(*, use_async: bool = False, wire: bool = False, out: typing.TextIO) -> int:
    """Run the demo; returns 0 when every message was sent and the report matches what the
    server received, else 1 (the demo server accepts every message, so a failure is a bug)."""
    handler = enable_wire() if wire else None
    try:
        return _run(use_async, out)
    finally:
        if handler is not None:
            disable_wire(handler)


#: What the demo's batch must report (anything else is a bug).
EXPECTED_BATCH: typing.Final = {"accepted": 3, "refused": 1, "partial": 1}


def _run(use_async: bool, out: typing.TextIO) -> int:
    with tempfile.TemporaryDirectory(prefix="mailsdk-demo-") as tmp:
        certs = make_certificates(pathlib.Path(tmp))
        with DemoServer(str(certs.cert_file), str(certs.key_file)) as server:
            out.write(
                f"mailsdk demo: SMTP server on 127.0.0.1:{server.port} "
                "(in-process, STARTTLS + AUTH + PIPELINING)\n"
            )
            started = time.perf_counter()
            builder = _builder(server.port, certs.ca_pem)
            if use_async:
                results = asyncio.run(_send_async(builder, out))
            else:
                results = _send_sync(builder, out)
            elapsed = time.perf_counter() - started
            for n, (msg, outcome) in enumerate(zip(demo_messages(), results, strict=True), 1):
                _report(out, n, msg, outcome)
            sent = [r for r in results if isinstance(r, SendResult)]
            accepted = sum(len(r.accepted) for r in sent)
            refused = sum(len(r.refused) for r in sent)
            out.write(
                f"\nsummary: {len(sent)}/{len(results)} messages sent, "
                f"{accepted} recipients accepted, "
                f"{refused} refused, in {elapsed * 1000:.0f} ms\n"
            )
            delivered = sum(len(m.recipients) for m in server.received)
            first = len(server.received)
            out.write(f"server received {first} messages for {delivered} recipients\n")
            consistent = delivered == accepted and first == len(sent)
            batch = run_batch_demo(builder, out)
            batch_delivered = sum(
                1
                for o in batch.outcomes
                if o.status in (DeliveryStatus.ACCEPTED, DeliveryStatus.PARTIAL)
            )
            batch_ok = (
                batch.counts == EXPECTED_BATCH and len(server.received) - first == batch_delivered
            )
            return 0 if consistent and batch_ok and len(sent) == len(results) else 1


@click.command("demo")
@click.option("--async", "use_async", is_flag=True, help="Use the asyncio client.")
@click.option("--wire", is_flag=True, help="Also print the SMTP conversation (AUTH redacted).")
def demo_command(use_async: bool, wire: bool) -> int:
    """Send mail to an in-process SMTP server and print a delivery report (no setup needed).

    Starts an SMTP server on 127.0.0.1 (no network, no mail server), sends messages through the
    real client (STARTTLS, AUTH, PIPELINING) with one recipient refused, then a small batch
    over two connections, and prints what happened to each recipient and the recorded spans.
    """
    import sys

    try:
        return run_demo(use_async=use_async, wire=wire, out=sys.stdout)
    except ConfigurationError as exc:  # e.g. aiosmtpd missing: one line, no traceback
        sys.stderr.write(f"mailsdk demo: {safe(exc)}\n")
        return 1
