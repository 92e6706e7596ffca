"""The delivery engine behind ``mailsdk batch`` and the demo's batch: many messages over a few
connections, at a bounded rate, stoppable between messages.

Layer: L8 command line (private). :func:`deliver` is the one function the commands call; it
runs worker threads that each hold one session (reconnecting after a broken one) and yields one
:class:`~mailsdk.SendOutcome` per message as they finish. When the pool and batch engine of
``mailsdk.batch`` are available this is the single place to switch to them.

Stopping (Ctrl-C): no new message is started; messages already in flight finish, so their
outcome is known. Items never started are simply not yielded (the caller reports them as not
sent). A message whose end-of-data reply never came is ``UNKNOWN`` and is never resent.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import queue
import re
import threading
import time
import typing
from collections.abc import Iterator, Sequence
from email.message import Message

import attrs

from mailsdk._types import MessageLike, MessageSource
from mailsdk.builder import ClientBuilder
from mailsdk.cli._exit import status_of_error
from mailsdk.client import Session
from mailsdk.errors import (
    ConfigurationError,
    ConnectionLost,
    InvalidInputError,
    MailError,
    TransportError,
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


def _message_like(source: MessageSource) -> MessageLike:
    """A message a session sends: file paths are read, byte chunks joined."""
    if isinstance(source, Message | bytes | str):
        return source
    if isinstance(source, os.PathLike):
        try:
            return pathlib.Path(source).read_bytes()
        except OSError as exc:
            raise InvalidInputError(f"cannot read message file {os.fspath(source)!r}") from exc
    return b"".join(source)


class _Worker:
    def __init__(self, builder: ClientBuilder, shared: _Shared) -> None:
        self._client = builder.build()
        self._shared = shared
        self._session: Session | None = None

    def run(self) -> None:
        shared = self._shared
        try:
            while True:
                index = shared.next_index()
                if index is None:
                    return
                item = shared.items[index]
                shared.in_flight.add(index)
                try:
                    outcome = outcome_of(index, item, self._send(item))
                finally:
                    shared.in_flight.discard(index)
                shared.results.put(outcome)
        finally:
            if self._session is not None:
                with contextlib.suppress(MailError):
                    self._session.quit()
                self._session.close()
            shared.results.put(None)

    def _send(self, item: Outgoing) -> SendResult | MailError:
        try:
            if self._session is None or self._session.closed:
                self._session = self._client.connect()
            return self._session.send_message(
                _message_like(item.message),
                sender=item.sender,
                recipients=item.recipients,
                mail_options=item.mail_options,
                rcpt_options=item.rcpt_options,
            )
        except MailError as exc:
            if isinstance(exc, TransportError | ConnectionLost) and self._session is not None:
                self._session.close()
                self._session = None
            return exc


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
