"""BatchTracker, Progress and BatchReport: counts, percentiles, ETA, JSONL export."""

from __future__ import annotations

import io
import json
import pathlib

from mailsdk import errors
from mailsdk.batch.report import BatchReport, BatchTracker
from mailsdk.flows import DeliveryStatus, SendOutcome, SendResult
from mailsdk.protocol.reply import Reply


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def accepted(index: int) -> SendOutcome:
    result = SendResult(
        sender="s@x.test",
        accepted=("r@x.test",),
        reply=Reply.build(250, f"2.0.0 Ok: queued as Q{index}"),
        size=10,
    )
    return SendOutcome(index=index, status=DeliveryStatus.ACCEPTED, result=result, key=f"k{index}")


def test_progress_rate_and_eta() -> None:
    clock = Clock()
    tracker = BatchTracker(total=10, clock=clock)
    tracker.read = 4
    clock.now += 2.0
    tracker.finished(accepted(0), 0.5)
    progress = tracker.finished(accepted(1), 0.7)
    assert progress.done == 2 and progress.in_flight == 2
    assert progress.rate == 1.0 and progress.eta == 8.0
    assert progress.counts[DeliveryStatus.ACCEPTED] == 2
    assert progress.counts[DeliveryStatus.UNKNOWN] == 0
    unknown_total = BatchTracker(clock=clock)
    assert unknown_total.progress().eta is None


def test_report_percentiles_and_counts() -> None:
    outcomes = tuple(accepted(i) for i in range(100))
    report = BatchReport(
        outcomes=outcomes, latencies={i: (i + 1) / 1000 for i in range(100)}, elapsed=4.0
    )
    assert report.p50 == 0.05 and report.p95 == 0.095 and report.p99 == 0.099
    assert report.throughput == 25.0
    assert report.counts[DeliveryStatus.ACCEPTED] == 100
    assert "100 messages" in report.summary() and "accepted 100" in report.summary()
    empty = BatchReport(outcomes=(), latencies={}, elapsed=0.0)
    assert empty.p50 is None and empty.throughput == 0.0


def test_jsonl_one_line_per_message(tmp_path: pathlib.Path) -> None:
    failed = SendOutcome(
        index=1,
        status=DeliveryStatus.FAILED,
        error=errors.ConnectionLost("reset by peer"),
        attempts=3,
    )
    report = BatchReport(
        outcomes=(accepted(0), failed), latencies={0: 0.01, 1: 2.5}, elapsed=3.0, cancelled=True
    )
    path = tmp_path / "report.jsonl"
    assert report.to_jsonl(path) == 2
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == {
        "index": 0,
        "key": "k0",
        "status": "accepted",
        "attempts": 1,
        "never_started": False,
        "latency_ms": 10.0,
        "accepted": ["r@x.test"],
        "refused": {},
        "queue_id": "Q0",
    }
    assert lines[1]["error"] == {"type": "ConnectionLost", "message": "reset by peer"}
    assert lines[1]["attempts"] == 3 and "(cancelled)" in report.summary()
    assert lines[1]["never_started"] is False


def test_jsonl_marks_a_message_that_was_never_started() -> None:
    unsent = SendOutcome(
        index=0,
        status=DeliveryStatus.FAILED,
        error=errors.ConnectionLost("the batch was stopped"),
        attempts=0,
        never_started=True,
    )
    out = io.StringIO()
    BatchReport(outcomes=(unsent,), latencies={}, elapsed=1.0).to_jsonl(out)
    line = json.loads(out.getvalue())
    assert line["never_started"] is True and line["attempts"] == 0
