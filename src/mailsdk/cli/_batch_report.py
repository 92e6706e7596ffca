"""The batch report (one JSON line per message, written as outcomes arrive), the live progress
display and the summary table.

Layer: L8 command line (private). The report is flushed after every line, so even a killed run
leaves every finished message on disk; after a clean stop (Ctrl-C) the messages never started
are written as ``not_sent`` and messages whose end never became known as ``unknown``: every
input message has exactly one line.
"""

from __future__ import annotations

import collections
import json
import sys
import time
import typing

from rich.console import Console, Group
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from mailsdk.cli._options import error_json, reply_json
from mailsdk.cli._terminal import safe
from mailsdk.flows import DeliveryStatus, Outgoing, SendOutcome

__all__ = ["NOT_SENT", "Progressbar", "ReportWriter", "summary_table"]

#: The report status of a message the run never started.
NOT_SENT: typing.Final = "not_sent"


def _line(
    index: int, item: Outgoing, outcome: SendOutcome | None, status: str
) -> dict[str, object]:
    result = outcome.result if outcome is not None else None
    error = outcome.error if outcome is not None else None
    return {
        "index": index,
        "key": item.key,
        "status": status,
        "recipients": list(item.recipients or ()),
        "accepted": list(result.accepted) if result else [],
        "refused": {r: reply_json(rep) for r, rep in result.refused.items()} if result else {},
        "reply": reply_json(result.reply) if result else None,
        "queue_id": result.queue_id if result else None,
        "error": error_json(error) if error is not None else None,
        "attempts": outcome.attempts if outcome is not None else 0,
    }


class ReportWriter:
    """Appends one JSON line per message to the report file and counts the statuses."""

    def __init__(self, path: str, items: typing.Sequence[Outgoing]) -> None:
        self.path = path
        self._items = items
        self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.written: set[int] = set()
        self.counts: collections.Counter[str] = collections.Counter()
        self.unknown: list[str] = []

    def write(self, outcome: SendOutcome) -> None:
        """Record a finished message."""
        self._emit(outcome.index, outcome, outcome.status.value)

    def _emit(self, index: int, outcome: SendOutcome | None, status: str) -> None:
        if index in self.written:
            return
        self.written.add(index)
        self.counts[status] += 1
        item = self._items[index]
        if status == DeliveryStatus.UNKNOWN.value:
            self.unknown.append(item.key or f"#{index}")
        self._file.write(json.dumps(_line(index, item, outcome, status), ensure_ascii=True) + "\n")
        self._file.flush()

    def finish(self) -> None:
        """Write the messages without an outcome (never started: not sent) and close."""
        for index in range(len(self._items)):
            self._emit(index, None, NOT_SENT)
        self._file.close()


class Progressbar:
    """A rich progress bar on a terminal (throughput, ETA, counts); plain lines otherwise."""

    def __init__(self, total: int, *, stream: typing.TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._total = total
        self._done = 0
        self._started = time.monotonic()
        self._counts: collections.Counter[str] = collections.Counter()
        self._live = self._stream.isatty()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if self._live:
            self._progress = Progress(
                TextColumn("sending"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} msg/s"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[counts]}"),
                console=Console(file=self._stream),
                transient=False,
            )
            self._task = self._progress.add_task("batch", total=total, rate="-", counts="")
            self._progress.start()

    def advance(self, outcome: SendOutcome, key: str | None) -> None:
        """Count one finished message."""
        self._done += 1
        self._counts[outcome.status.value] += 1
        elapsed = max(time.monotonic() - self._started, 1e-6)
        rate = self._done / elapsed
        counts = " ".join(f"{k}={v}" for k, v in sorted(self._counts.items()))
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=1, rate=f"{rate:.1f}", counts=counts)
            return
        eta = (self._total - self._done) / rate if rate > 0 else 0.0
        self._stream.write(
            f"[{self._done}/{self._total}] {outcome.status.value:<8} {safe(key or '-')} "
            f"({rate:.1f} msg/s, ETA {eta:.0f} s; {counts})\n"
        )
        self._stream.flush()

    def close(self) -> None:
        """Stop the live display."""
        if self._progress is not None:
            self._progress.stop()


def summary_table(
    counts: typing.Mapping[str, int], *, total: int, elapsed: float, unknown: typing.Sequence[str]
) -> Group:
    """The end-of-run table: one row per status; below it throughput and the UNKNOWN keys."""
    table = Table(title="batch summary", show_edge=False)
    table.add_column("status")
    table.add_column("messages", justify="right")
    order = [s.value for s in DeliveryStatus] + [NOT_SENT]
    for status in order:
        if counts.get(status):
            table.add_row(Text(status), Text(str(counts[status])))
    sent = total - counts.get(NOT_SENT, 0)
    table.add_row(Text("total"), Text(str(total)))
    rate = sent / elapsed if elapsed > 0 else 0.0
    caption = f"{sent} attempted in {elapsed:.2f} s ({rate:.1f} msg/s)"
    if unknown:
        listed = ", ".join(safe(k) for k in unknown)
        caption += f"; UNKNOWN (may have been delivered, do not resend blindly): {listed}"
    return Group(table, Text(caption))  # Text, not markup: keys come from the input
