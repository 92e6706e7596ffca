"""``mailsdk batch``: many messages from CSV/JSONL rows and a template, or a folder of .eml files.

Layer: L8 command line. Messages go over ``--connections`` sessions at most ``--rate`` per
second/minute/hour, with a live progress bar on a terminal (plain lines otherwise), a summary
table and a JSONL report with one line per message. Ctrl-C stops starting new messages, lets
those in flight finish, and still writes the complete report (a second Ctrl-C stops waiting:
messages still in flight are reported ``unknown``). Messages go through the connection pool and
its batch engine (``Client.pool(...).send_batch``): rate limit, retries of transient failures,
and one outcome per message.
"""

from __future__ import annotations

import pathlib
import sys
import time
import typing

import click
from rich.console import Console

from mailsdk.cli._batch_input import load_items
from mailsdk.cli._batch_report import Progressbar, ReportWriter, summary_table
from mailsdk.cli._connect import builder_for
from mailsdk.cli._engine import deliver, parse_rate
from mailsdk.cli._exit import ExitCode, exit_code_for_statuses
from mailsdk.cli._options import Common, command_body, common_options, connection_options
from mailsdk.cli._terminal import emit_json
from mailsdk.flows import DeliveryStatus

__all__ = ["batch_command"]


@click.command("batch")
@click.argument("source", type=click.Path(exists=True, path_type=pathlib.Path))
@common_options
@connection_options
@click.option("--template", type=click.Path(path_type=pathlib.Path), help="Body template.")
@click.option("--subject", metavar="TEXT", help="Subject template for rows without a subject.")
@click.option("--from", "sender", metavar="ADDR", help="Sender for rows without a from column.")
@click.option(
    "--connections",
    type=click.IntRange(1, 100),
    default=1,
    show_default=True,
    help="Parallel connections (a pool).",
)
@click.option(
    "--processes",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Worker processes sharing the connections and the rate (to use more CPU cores).",
)
@click.option("--rate", metavar="N/UNIT", help="At most N messages per s, min or hour (30/min).")
@click.option(
    "--retries",
    type=click.IntRange(0, 20),
    default=2,
    show_default=True,
    help="Retries of a transient failure (never of an unknown outcome).",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=pathlib.Path),
    help="JSONL report path [default: SOURCE.report.jsonl].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--wire", is_flag=True, help="Print the SMTP conversation (AUTH redacted).")
@command_body
def batch_command(common: Common, **o: typing.Any) -> int:
    """Send a batch: SOURCE is a .csv or .jsonl file (with --template) or a folder of .eml files.

    \b
    Rows: to (required), cc, bcc, subject, from, key; every column but bcc is a $variable
    of the templates. The report has one JSON line per message: accepted, partial, refused, failed,
    unknown (the server may have it: never resend those blindly) or not_sent.
    """
    profile = common.profile()
    source: pathlib.Path = o["source"]
    items = load_items(
        source,
        template=o["template"],
        subject=o["subject"],
        sender=o["sender"] or profile.get("from"),
    )
    limit = parse_rate(o["rate"]) if o["rate"] else None
    report: pathlib.Path | None = o["report"]
    connections: int = o["connections"]
    builder = builder_for(common.connection, profile)
    report_path = report or source.with_name(source.name.rstrip("/") + ".report.jsonl")
    writer = ReportWriter(str(report_path), items)
    progress = Progressbar(len(items))
    started = time.monotonic()
    interrupted = False
    try:
        delivery = deliver(
            builder,
            items,
            connections=connections,
            rate=limit,
            retries=o["retries"],
            on_progress=progress.update,
            processes=o["processes"],
        )
        try:
            for outcome in delivery.outcomes():
                writer.write(outcome)
                progress.advance(outcome, items[outcome.index].key)
        except KeyboardInterrupt:
            interrupted = True
            click.echo("\nstopped: messages in flight have finished; writing the report", err=True)
        finally:
            # Also after an error (a wrong password ends the batch): every outcome the engine
            # recorded goes into the report before it is closed.
            try:
                late = delivery.finish()
            except KeyboardInterrupt:
                interrupted, late = True, delivery.finish()
            for outcome in late:
                if writer.write(outcome):  # not if written before an interrupt
                    progress.advance(outcome, items[outcome.index].key)
    finally:
        progress.close()
        writer.finish()
    elapsed = time.monotonic() - started
    counts = dict(writer.counts)
    if common.json:
        emit_json(
            {
                "report": str(report_path),
                "total": len(items),
                "counts": counts,
                "unknown": writer.unknown,
                "interrupted": interrupted,
                "elapsed": round(elapsed, 3),
            }
        )
    else:
        console = Console(file=sys.stdout)
        console.print(
            summary_table(counts, total=len(items), elapsed=elapsed, unknown=writer.unknown)
        )
        console.print(f"report: {report_path}", markup=False, highlight=False)
    if interrupted:
        return ExitCode.INTERRUPTED
    return exit_code_for_statuses(DeliveryStatus(s) for s in counts if s != "not_sent")
