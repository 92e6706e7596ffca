"""Progress events and the final report of a batch.

Layer: L5b (batch, pure accounting). The clock is injected; the runners feed one
:meth:`BatchTracker.finished` per final outcome and read :class:`Progress` and
:class:`BatchReport` from it.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
import typing
from collections.abc import Callable, Mapping, Sequence

import attrs

from mailsdk.flows import DeliveryStatus, SendOutcome

__all__ = ["BatchReport", "BatchTracker", "Progress"]


@attrs.frozen(kw_only=True)
class Progress:
    """A snapshot of a running batch, sent to ``on_progress`` after every final outcome.

    Attributes:
        done: messages with a final outcome.
        in_flight: messages read from the input and not finished yet (sending or waiting to
            be retried).
        counts: final outcomes per status.
        elapsed: seconds since the batch started.
        rate: final outcomes per second so far.
        total: the number of items when the input has a length, else ``None``.
        eta: estimated seconds until the end (``None`` when ``total`` is unknown or nothing
            finished yet).
        connections: how many connections the pool lets the batch use now: its
            ``max_connections``, fewer while the server throttles (``None``: not known).
    """

    done: int
    in_flight: int
    counts: Mapping[DeliveryStatus, int]
    elapsed: float
    rate: float
    total: int | None = None
    eta: float | None = None
    connections: int | None = None


def _percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile of sorted values (``None`` for no values)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _jsonable(outcome: SendOutcome, latency: float) -> dict[str, object]:
    result, error = outcome.result, outcome.error
    line: dict[str, object] = {
        "index": outcome.index,
        "key": outcome.key,
        "status": outcome.status.value,
        "attempts": outcome.attempts,
        "never_started": outcome.never_started,
        "latency_ms": round(latency * 1000.0, 3),
    }
    if result is not None:
        line["accepted"] = list(result.accepted)
        line["refused"] = {rcpt: str(reply) for rcpt, reply in result.refused.items()}
        line["queue_id"] = result.queue_id
    if error is not None:
        line["error"] = {"type": type(error).__name__, "message": str(error)}
    return line


@attrs.frozen(kw_only=True)
class BatchReport:
    """What a batch did, once it has ended (or been cancelled).

    Attributes:
        outcomes: every final outcome, in completion order.
        latencies: seconds from each message's first try to its final outcome, by index.
        elapsed: seconds from the start of the batch to its last outcome.
        cancelled: the batch was interrupted; unfinished messages are reported FAILED (never
            sent) or UNKNOWN.
    """

    outcomes: tuple[SendOutcome, ...]
    latencies: Mapping[int, float]
    elapsed: float
    cancelled: bool = False

    @property
    def total(self) -> int:
        """The number of messages with a final outcome."""
        return len(self.outcomes)

    @property
    def counts(self) -> dict[DeliveryStatus, int]:
        """Final outcomes per status (every status present, zero included)."""
        counts = dict.fromkeys(DeliveryStatus, 0)
        for outcome in self.outcomes:
            counts[outcome.status] += 1
        return counts

    @property
    def by_status(self) -> dict[DeliveryStatus, list[SendOutcome]]:
        """The outcomes per status (every status present)."""
        groups: dict[DeliveryStatus, list[SendOutcome]] = {s: [] for s in DeliveryStatus}
        for outcome in self.outcomes:
            groups[outcome.status].append(outcome)
        return groups

    @property
    def throughput(self) -> float:
        """Final outcomes per second over the whole batch."""
        return self.total / self.elapsed if self.elapsed > 0 else 0.0

    def latency(self, fraction: float) -> float | None:
        """The latency percentile ``fraction`` (0-1) in seconds; ``None`` for an empty batch."""
        return _percentile(sorted(self.latencies.values()), fraction)

    @property
    def p50(self) -> float | None:
        """Median latency, in seconds."""
        return self.latency(0.50)

    @property
    def p95(self) -> float | None:
        """95th percentile latency, in seconds."""
        return self.latency(0.95)

    @property
    def p99(self) -> float | None:
        """99th percentile latency, in seconds."""
        return self.latency(0.99)

    def to_jsonl(self, target: str | os.PathLike[str] | typing.TextIO) -> int:
        """Write one JSON object per message (index, key, status, attempts, never_started,
        latency, accepted, refused, queue id, error) to a path or a text file; return the
        number of lines."""
        if isinstance(target, str | os.PathLike):
            with open(target, "w", encoding="utf-8") as handle:
                return self.to_jsonl(handle)
        for outcome in self.outcomes:
            latency = self.latencies.get(outcome.index, 0.0)
            target.write(json.dumps(_jsonable(outcome, latency), ensure_ascii=False) + "\n")
        return len(self.outcomes)

    def summary(self) -> str:
        """A one-line human summary (counts, throughput, p50/p95)."""
        counts = ", ".join(f"{s.value} {n}" for s, n in self.counts.items() if n)
        out = io.StringIO()
        out.write(f"{self.total} messages in {self.elapsed:.2f}s ({self.throughput:.1f}/s)")
        if counts:
            out.write(f": {counts}")
        if self.p50 is not None and self.p95 is not None:
            out.write(f"; latency p50 {self.p50 * 1000:.1f} ms, p95 {self.p95 * 1000:.1f} ms")
        if self.cancelled:
            out.write(" (cancelled)")
        return out.getvalue()


class BatchTracker:
    """The accounting of one running batch (not thread-safe: one owner feeds it).

    Args:
        total: the number of items, when known.
        clock: a monotonic clock in seconds.
        connections: returns the connections the batch may use now (``Progress.connections``).
    """

    def __init__(
        self,
        total: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        connections: Callable[[], int] | None = None,
    ) -> None:
        self._clock = clock
        self._connections = connections
        self._start = clock()
        self._end = self._start
        self.total = total
        self.read = 0
        self._outcomes: list[SendOutcome] = []
        self._latencies: dict[int, float] = {}
        self._counts = dict.fromkeys(DeliveryStatus, 0)
        self.cancelled = False

    @property
    def done(self) -> int:
        """The number of final outcomes so far."""
        return len(self._outcomes)

    def finished(self, outcome: SendOutcome, latency: float) -> Progress:
        """Record one final outcome; return the progress snapshot after it."""
        self.add(outcome, latency)
        return self.progress()

    def add(self, outcome: SendOutcome, latency: float) -> None:
        """Record one final outcome (no snapshot: for a batch nobody watches)."""
        self._outcomes.append(outcome)
        self._latencies[outcome.index] = latency
        self._counts[outcome.status] += 1
        self._end = self._clock()

    def progress(self) -> Progress:
        """The current :class:`Progress`."""
        elapsed = self._clock() - self._start
        done = self.done
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = None
        if self.total is not None and rate > 0:
            eta = max(0, self.total - done) / rate
        return Progress(
            done=done,
            in_flight=max(0, self.read - done),
            counts=dict(self._counts),
            elapsed=elapsed,
            rate=rate,
            total=self.total,
            eta=eta,
            connections=self._connections() if self._connections is not None else None,
        )

    def report(self) -> BatchReport:
        """The :class:`BatchReport` of what finished so far."""
        return BatchReport(
            outcomes=tuple(self._outcomes),
            latencies=dict(self._latencies),
            elapsed=self._end - self._start,
            cancelled=self.cancelled,
        )
