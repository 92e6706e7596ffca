"""The delivery engine behind ``mailsdk batch`` and the demo's batch: many messages over a few
connections, at a bounded rate, stoppable between messages.

Layer: L8 command line (private). :func:`deliver` is the one function the commands call; it
runs worker threads that each hold one session and send with ``Session.send_many`` (message
N+1's envelope pipelined behind message N's body), reconnecting after a broken connection, and
yields one :class:`~mailsdk.SendOutcome` per message as they finish. When the pool and batch
engine of ``mailsdk.pool`` / ``mailsdk.batch`` are available this is the single place to
switch to them.

Stopping (Ctrl-C): no new message is started; messages already in flight finish, so their
outcome is known. Items never started are simply not yielded (the caller reports them as not
sent). A message whose end-of-data reply never came is ``UNKNOWN`` and is never resent.
"""

from __future__ import annotations

import contextlib
import queue
import re
import threading
import time
import typing
from collections.abc import Iterator, Sequence

import attrs

from mailsdk.builder import ClientBuilder
from mailsdk.cli._exit import status_of_error
from mailsdk.errors import (
    ConfigurationError,
    MailError,
)
from mailsdk.flows import DeliveryStatus, Outgoing, SendOutcome, SendResult

__all__ = ["Delivery", "Rate", "deliver", "outcome_of", "parse_rate"]

_UNITS: typing.Final = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hour": 3600.0}


@attrs.frozen
class Rate:
    """At most ``count`` messages per ``per`` seconds (a token bucket of ``count`` tokens)."""

    count: float
    per: float

    @property
    def interval(self) -> float:
        """Seconds between two messages at the sustained rate."""
        return self.per / self.count


def parse_rate(text: str) -> Rate:
    """``"30/min"``, ``"5/s"``, ``"1000/hour"`` → :class:`Rate`.

    Raises:
        ConfigurationError: anything else.
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*/\s*([a-z]+)\s*", text.lower())
    if m is None or m.group(2) not in _UNITS or float(m.group(1)) <= 0:
        raise ConfigurationError(f"rate {text!r}: use N/s, N/min or N/hour (e.g. 30/min)")
    return Rate(float(m.group(1)), _UNITS[m.group(2)])


class _Bucket:
    """A thread-safe token bucket; :meth:`take` waits (interruptibly) for a token."""

    def __init__(self, rate: Rate) -> None:
        self._rate = rate
        self._tokens = 1.0  # start with one token: no burst at start-up beyond the first message
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def take(self, stop: threading.Event) -> bool:
        while not stop.is_set():
            with self._lock:
                now = time.monotonic()
                self._tokens = min(
                    self._rate.count, self._tokens + (now - self._last) / self._rate.interval
                )
                self._last = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return True
                wait = (1.0 - self._tokens) * self._rate.interval
            stop.wait(min(wait, 0.25))
        return False


def outcome_of(index: int, item: Outgoing, result: SendResult | MailError) -> SendOutcome:
    """The :class:`SendOutcome` of one send attempt."""
    if isinstance(result, SendResult):
        status = DeliveryStatus.ACCEPTED if result.ok else DeliveryStatus.PARTIAL
        return SendOutcome(index=index, status=status, result=result, key=item.key)
    status = status_of_error(result)
    return SendOutcome(index=index, status=status, error=result, key=item.key)


class _Worker:
    """One connection: ``Session.send_many`` over a feed that takes items from the shared
    queue one at a time (so cross-message pipelining works and the rate limit holds), and a
    new connection when the old one broke."""

    def __init__(self, builder: ClientBuilder, shared: _Shared) -> None:
        self._client = builder.build()
        self._shared = shared

    def run(self) -> None:
        try:
            while not self._shared.stop.is_set():
                if not self._one_connection():
                    return
        finally:
            self._shared.results.put(None)

    def _one_connection(self) -> bool:
        """Send on one connection until the input ends (False) or the connection breaks (True)."""
        shared = self._shared
        try:
            session = self._client.connect()
        except MailError as exc:
            # The next message cannot be sent; report it and try again with the one after
            # (a server that is down fails each message once, quickly, instead of looping).
            index = shared.next_index()
            if index is None:
                return False
            shared.results.put(outcome_of(index, shared.items[index], exc))
            return True
        taken: list[int] = []

        def feed() -> Iterator[Outgoing]:
            while not session.closed:
                index = shared.next_index()
                if index is None:
                    return
                taken.append(index)
                shared.in_flight.add(index)
                yield shared.items[index]

        try:
            for outcome in session.send_many(feed()):
                index = taken[outcome.index]
                shared.in_flight.discard(index)
                # send_many numbers its own input; the report numbers the batch's
                shared.results.put(attrs.evolve(outcome, index=index))
        finally:
            broken = session.closed
            if not broken:
                with contextlib.suppress(MailError):
                    session.quit()
            session.close()
        return broken


class _Shared:
    def __init__(self, items: Sequence[Outgoing], rate: Rate | None, stop: threading.Event):
        self.items = items
        self.stop = stop
        self.results: queue.Queue[SendOutcome | None] = queue.Queue()
        self.in_flight: set[int] = set()
        self._next = 0
        self._lock = threading.Lock()
        self._bucket = _Bucket(rate) if rate is not None else None

    def next_index(self) -> int | None:
        if self.stop.is_set():
            return None
        if self._bucket is not None and not self._bucket.take(self.stop):
            return None
        with self._lock:
            if self.stop.is_set() or self._next >= len(self.items):
                return None
            index, self._next = self._next, self._next + 1
            return index


class Delivery:
    """A running delivery: iterate :meth:`outcomes`; on Ctrl-C call :meth:`drain`.

    Args:
        builder: how to connect (each worker builds its client once and reconnects as needed).
        items: the messages; outcomes carry their ``index`` in this sequence.
        connections: parallel sessions (1-100).
        rate: the maximum sending rate across all sessions.

    Raises:
        ConfigurationError: connections out of range.
    """

    def __init__(
        self,
        builder: ClientBuilder,
        items: Sequence[Outgoing],
        *,
        connections: int = 1,
        rate: Rate | None = None,
    ) -> None:
        if not 1 <= connections <= 100:
            raise ConfigurationError("connections must be between 1 and 100")
        self._shared = _Shared(items, rate, threading.Event())
        count = min(connections, max(1, len(items)))
        # Build every client before starting any thread: a configuration error surfaces here.
        workers = [_Worker(builder, self._shared) for _ in range(count)]
        self._running = count
        for n, worker in enumerate(workers):
            threading.Thread(target=worker.run, name=f"mailsdk-batch-{n + 1}", daemon=True).start()

    def _next(self, timeout: float) -> SendOutcome | None:
        while self._running:
            try:
                outcome = self._shared.results.get(timeout=timeout)
            except queue.Empty:
                return None
            if outcome is None:
                self._running -= 1
                continue
            return outcome
        return None

    def outcomes(self) -> Iterator[SendOutcome]:
        """Outcomes in completion order until every worker is done."""
        while self._running:
            outcome = self._next(0.2)
            if outcome is not None:
                yield outcome

    @property
    def in_flight(self) -> set[int]:
        """Indexes of messages being sent right now."""
        return set(self._shared.in_flight)

    def stop(self) -> None:
        """Start no new message (messages in flight go on)."""
        self._shared.stop.set()

    def drain(self, timeout: float) -> tuple[list[SendOutcome], set[int]]:
        """Stop, then collect the outcomes of messages in flight for up to ``timeout`` seconds.

        Returns:
            The outcomes that arrived, and the indexes still in flight when the time ran out
            (their fate is not known: report them ``UNKNOWN``).
        """
        self.stop()
        deadline = time.monotonic() + timeout
        found: list[SendOutcome] = []
        while self._running and time.monotonic() < deadline:
            outcome = self._next(0.1)
            if outcome is not None:
                found.append(outcome)
        return found, set(self._shared.in_flight)


def deliver(
    builder: ClientBuilder,
    items: Sequence[Outgoing],
    *,
    connections: int = 1,
    rate: Rate | None = None,
) -> Delivery:
    """Start sending ``items``; see :class:`Delivery`. The one switch point for the engine."""
    return Delivery(builder, items, connections=connections, rate=rate)
