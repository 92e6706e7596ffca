"""The delivery engine behind ``mailsdk batch`` and the demo's batch: many messages over a few
pooled connections, at a bounded rate, with retries, stoppable between messages.

Layer: L8 command line (private). :func:`deliver` is the one function the commands call: it
runs ``Client.pool(max_connections=N).send_batch(...)`` (each connection sends with
``Session.send_many``, message N+1's envelope pipelined behind message N's body) with a
:class:`~mailsdk.batch.TokenBucket` for ``--rate`` and a :class:`~mailsdk.batch.RetryPolicy`
for ``--retries``, and yields one :class:`~mailsdk.SendOutcome` per message as it finishes.

Stopping (Ctrl-C): the batch reads no more input; messages already being sent finish, so their
outcome is known (a second Ctrl-C stops waiting: those are UNKNOWN). Items never started get no
outcome (the caller reports them as not sent). A message whose end-of-data reply never came is
UNKNOWN and is never resent.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Iterator, Sequence

import attrs

from mailsdk.batch import Progress, RetryPolicy, TokenBucket
from mailsdk.builder import ClientBuilder
from mailsdk.errors import ConfigurationError
from mailsdk.flows import Outgoing, SendOutcome

__all__ = ["Delivery", "Rate", "deliver", "parse_rate"]

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


class Delivery:
    """A running batch: iterate :meth:`outcomes`; afterwards (or after Ctrl-C or an error)
    :meth:`finish` returns the outcomes that were recorded but not yet yielded.

    Args:
        builder: how to connect.
        items: the messages; outcomes carry their ``index`` in this sequence.
        connections: the pool size (1-100).
        rate: the maximum sending rate across all connections.
        retries: how many times a transient failure is retried (UNKNOWN never is).
        on_progress: called with the pool's :class:`~mailsdk.batch.Progress` (rate, ETA,
            messages in flight) after every final outcome, before it is yielded.
        processes: worker processes sharing the connections and the rate (``None``: this
            process; see ``Pool.send_batch``).

    Raises:
        ConfigurationError: connections, retries or processes out of range.
    """

    def __init__(
        self,
        builder: ClientBuilder,
        items: Sequence[Outgoing],
        *,
        connections: int = 1,
        rate: Rate | None = None,
        retries: int = 2,
        on_progress: Callable[[Progress], None] | None = None,
        processes: int | None = None,
    ) -> None:
        if not 1 <= connections <= 100:
            raise ConfigurationError("connections must be between 1 and 100")
        if not 0 <= retries <= 20:
            raise ConfigurationError("retries must be between 0 and 20")
        bucket = TokenBucket(messages_per_second=rate.count / rate.per) if rate else None
        self._pool = builder.build().pool(max_connections=min(connections, max(1, len(items))))
        self._run = self._pool.send_batch(
            items,
            rate=bucket,
            retry=RetryPolicy(attempts=retries + 1),
            on_progress=on_progress,
            processes=processes,
        )
        self._seen: set[int] = set()

    def outcomes(self) -> Iterator[SendOutcome]:
        """Final outcomes in completion order."""
        for outcome in self._run:
            yield outcome
            # Seen once the caller came back for the next one, i.e. finished with this one:
            # an interrupt while the caller handles it leaves it to finish() (never dropped).
            self._seen.add(outcome.index)

    def finish(self) -> list[SendOutcome]:
        """Stop (idempotent), close the pool, and return the outcomes not yielded yet (and the
        one the caller was handling when it was interrupted, if any)."""
        try:
            self._run.close()
        finally:
            self._pool.close()
        late = [o for o in self._run.report.outcomes if o.index not in self._seen]
        self._seen.update(o.index for o in late)
        return late


def deliver(
    builder: ClientBuilder,
    items: Sequence[Outgoing],
    *,
    connections: int = 1,
    rate: Rate | None = None,
    retries: int = 2,
    on_progress: Callable[[Progress], None] | None = None,
    processes: int | None = None,
) -> Delivery:
    """Start sending ``items``; see :class:`Delivery`. The one switch point for the engine."""
    return Delivery(
        builder,
        items,
        connections=connections,
        rate=rate,
        retries=retries,
        on_progress=on_progress,
        processes=processes,
    )
