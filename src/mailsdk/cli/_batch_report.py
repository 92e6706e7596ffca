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
import typing

from rich.console import Console, Group
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from mailsdk.batch import Progress as BatchProgress
from mailsdk.batch import never_started
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

    def write(self, outcome: SendOutcome) -> bool:
        """Record a finished message (one the engine never started is written ``not_sent``);
        ``False`` if its line was written already."""
        status = NOT_SENT if never_started(outcome) else outcome.status.value
        return self._emit(outcome.index, outcome, status)

    def _emit(self, index: int, outcome: SendOutcome | None, status: str) -> bool:
        if index in self.written:
            return False
        text = json.dumps(_line(index, self._items[index], outcome, status), ensure_ascii=True)
        # Written, then marked: a Ctrl-C in between can at worst repeat this line, never
        # leave the message without one (finish() would then call it not sent).
        self._file.write(text + "\n")
        self.written.add(index)
        self.counts[status] += 1
        if status == DeliveryStatus.UNKNOWN.value:
            self.unknown.append(self._items[index].key or f"#{index}")
        self._file.flush()
        return True

    def finish(self) -> None:
        """Write the messages without an outcome (never started: not sent) and close."""
        for index in range(len(self._items)):
            self._emit(index, None, NOT_SENT)
        self._file.close()


class Progressbar:
    """A rich progress bar on a terminal (throughput, ETA, in flight, counts); plain lines
    otherwise.

    The numbers are the pool's own :class:`~mailsdk.batch.Progress` snapshots (given to
    :meth:`update` by the batch engine's ``on_progress``), so the bar shows exactly what the
    engine measured, including the messages still in flight.
    """

    def __init__(self, total: int, *, stream: typing.TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._total = total
        self._lines = 0
        self._snapshot: BatchProgress | None = None
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
                TextColumn("ETA {task.fields[eta]}"),
                TextColumn("{task.fields[in_flight]} in flight"),
                TextColumn("{task.fields[counts]}"),
                console=Console(file=self._stream),
                transient=False,
            )
            self._task = self._progress.add_task(
                "batch", total=total, rate="-", eta="-", in_flight=0, counts=""
            )
            self._progress.start()

    def update(self, snapshot: BatchProgress) -> None:
        """Take the engine's latest progress snapshot (its ``on_progress`` callback)."""
        self._snapshot = snapshot

    def advance(self, outcome: SendOutcome, key: str | None) -> None:
        """Show one finished message with the latest snapshot's numbers."""
        self._lines += 1
        snap = self._snapshot
        done = max(self._lines, snap.done if snap is not None else 0)
        rate = f"{snap.rate:.1f}" if snap is not None else "-"
        eta = f"{snap.eta:.0f} s" if snap is not None and snap.eta is not None else "-"
        in_flight = snap.in_flight if snap is not None else 0
        counted = snap.counts if snap is not None else {outcome.status: self._lines}
        counts = " ".join(f"{k.value}={v}" for k, v in sorted(counted.items(), key=_by_value) if v)
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task,
                completed=min(done, self._total),
                rate=rate,
                eta=eta,
                in_flight=in_flight,
                counts=counts,
            )
            return
        self._stream.write(
            f"[{self._lines}/{self._total}] {outcome.status.value:<8} {safe(key or '-')} "
            f"({rate} msg/s, ETA {eta}, {in_flight} in flight; {counts})\n"
        )
        self._stream.flush()

    def close(self) -> None:
        """Stop the live display."""
        if self._progress is not None:
            self._progress.stop()


def _by_value(item: tuple[DeliveryStatus, int]) -> str:
    return item[0].value


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
