"""Send a chunk of wire items through the process's pool under the shared limits and the ledger.

Layer: L7 (integrations, private). Imports ``mailsdk.pool``/``batch``/``flows``/``errors`` and
the other private integration helpers; no framework. The Celery tasks are thin wrappers around
:func:`deliver_chunk`; plain processes can call it too.

The chunk goes out as one ``pool.send_batch`` run (pipelined across messages, on as many pooled
connections as the pool and the shared connection cap allow). The ledger brackets it:

1. ``ledger.claim`` every item first. One the ledger shows as final or parked is reported, not
   sent; one another live sender holds is *deferred*.
2. The batch reads its input lazily, one item just before that item's MAIL FROM is written, so
   each item is marked ``sending`` *as the pool takes it*: always before its end-of-data can
   be written, and only for the few items a connection actually holds. A crash leaves those few
   ``sending`` (parked as UNKNOWN, the safe answer) and the rest merely ``claimed`` (their
   claims lapse and another worker sends them).
3. Every final outcome is recorded as it arrives: accepted, partial and refused are final;
   FAILED (never handed over) and 4xx refusals release the message for a retry; UNKNOWN is
   parked. Ledger writes wait out a Redis restart; one that never gets through leaves the entry
   ``sending`` (parked as UNKNOWN later), and the result says so.

A keeper thread renews the chunk's claims while it runs, so a long chunk never loses them.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
import typing
import uuid
from collections.abc import Iterator, Sequence

import attrs

from mailsdk.batch import RateLimiter, RetryPolicy
from mailsdk.errors import MailError, ProtocolError, TransportError
from mailsdk.flows import DeliveryStatus, Outgoing, SendOutcome
from mailsdk.integrations._errors import CoordinationUnavailable
from mailsdk.integrations._wire import JsonDict, WireItem, outcome_to_json

if typing.TYPE_CHECKING:
    from mailsdk.integrations.redis import DeliveryLedger
    from mailsdk.pool import Pool

__all__ = ["DEFERRED", "PatientRate", "deliver_chunk", "is_retryable"]

_log = logging.getLogger("mailsdk.integrations")

#: The status of an item that was not attempted now and should be tried again later.
DEFERRED = "deferred"

_T = typing.TypeVar("_T")

#: The fields of an earlier send's result that a duplicate of it repeats.
_EARLIER: typing.Final = frozenset(
    {"reply", "queue_id", "accepted", "refused", "error", "transient"}
)

#: Why a message another live sender holds was not attempted, by the holder's ledger state.
_BUSY: typing.Final = {
    "claimed": "claimed by another worker",
    "sending": "being sent by another worker",
}


def _patient(call: typing.Callable[[], _T], patience: float) -> _T:
    """Run a Redis call, retrying for ``patience`` seconds while Redis is down (a restart)."""
    deadline = time.monotonic() + patience
    delay = 0.1
    while True:
        try:
            return call()
        except CoordinationUnavailable:
            if time.monotonic() + delay >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


class PatientRate:
    """A :class:`~mailsdk.batch.RateLimiter` that rides out a restart of the store behind it.

    ``reserve`` is retried for ``patience`` seconds while it raises
    :class:`CoordinationUnavailable` (then the error ends the batch: nothing more is sent
    without the shared limit); ``penalize`` is best effort.
    """

    def __init__(self, rate: RateLimiter, patience: float) -> None:
        self.rate = rate
        self.patience = patience

    def reserve(self, *, messages: int = 1, recipients: int = 0) -> float:
        """The wrapped ``reserve``, patient with Redis restarts."""
        call = functools.partial(self.rate.reserve, messages=messages, recipients=recipients)
        return _patient(call, self.patience)

    def penalize(self, seconds: float) -> None:
        """The wrapped ``penalize``; a Redis failure is logged, never raised."""
        try:
            self.rate.penalize(seconds)
        except CoordinationUnavailable as exc:
            _log.warning("could not share a throttling penalty: %s", exc)


def is_retryable(result: JsonDict) -> bool:
    """True for an item worth another attempt later (deferred, not handed over, or 4xx)."""
    status = result.get("status")
    if status == DEFERRED:
        return True
    if status == DeliveryStatus.FAILED.value:
        return bool(result.get("retryable"))
    return status == DeliveryStatus.REFUSED.value and bool(result.get("transient"))


def _deferred(index: int, key: str, reason: str) -> JsonDict:
    return {
        "index": index,
        "key": key,
        "status": DEFERRED,
        "reason": reason,
        "attempts": 0,
        "never_started": True,
    }


def _never_retry_locally(policy: RetryPolicy | None) -> RetryPolicy:
    """The policy of the pool's run: one try (the caller retries later, e.g. through Celery,
    with the same policy's backoff), with the policy's throttle pause and UNKNOWN rule."""
    return RetryPolicy.never() if policy is None else attrs.evolve(policy, attempts=1)


def _retryable_failure(outcome: SendOutcome) -> bool:
    """A FAILED message was never handed over: worth a retry unless the error is local or
    permanent (bad input, configuration, a refused login)."""
    error = outcome.error
    return error is None or error.is_retryable or isinstance(error, TransportError | ProtocolError)


class _ClaimKeeper:
    """Renews the chunk's unrecorded claims every ``claim_ttl / 3`` while the chunk runs."""

    def __init__(self, ledger: DeliveryLedger, owner: str, keys: Sequence[str]) -> None:
        self._ledger, self._owner = ledger, owner
        self._pending = set(keys)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        every = max(0.05, float(getattr(ledger, "claim_ttl", 300.0)) / 3)
        self._thread = threading.Thread(
            target=self._keep, args=(every,), name="mailsdk-claim-keeper", daemon=True
        )
        self._thread.start()

    def done(self, key: str) -> None:
        with self._lock:
            self._pending.discard(key)

    def _keep(self, every: float) -> None:
        while not self._stop.wait(every):
            with self._lock:
                keys = sorted(self._pending)
            try:
                self._ledger.renew(keys, self._owner)
            except MailError as exc:  # Redis restarting: the next round tries again
                _log.warning("could not renew the chunk's ledger claims: %s", exc)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class _Chunk:
    """The state of one :func:`deliver_chunk` call."""

    def __init__(
        self,
        items: Sequence[WireItem],
        indexes: Sequence[int],
        ledger: DeliveryLedger | None,
        patience: float,
    ) -> None:
        self.items, self.indexes = items, indexes
        self.ledger, self.patience = ledger, patience
        # One owner token per chunk run: a claim that Redis executed but whose reply was lost
        # (a restart) is found again as ours, not as someone else's.
        self.owner = uuid.uuid4().hex
        self.results: dict[int, JsonDict] = {}
        self.claims: dict[int, int] = {}  # position -> the ledger's attempt count
        self.handed: list[int] = []  # batch index -> position
        self.broken: str | None = None
        self.keeper: _ClaimKeeper | None = None

    def claim_all(self) -> list[int]:
        """Claim every item; the positions that may be sent."""
        ledger = self.ledger
        seen: set[str] = set()
        mine: list[int] = []
        for pos, item in enumerate(self.items):
            index = self.indexes[pos]
            if self.broken is not None:
                self.results[pos] = _deferred(index, item.key, self.broken)
            elif item.key in seen:  # the same key twice in one chunk: once is enough
                self.results[pos] = _deferred(index, item.key, "the same key twice in one chunk")
            elif ledger is None:
                mine.append(pos)
            else:
                claim_call = functools.partial(ledger.claim, item.key, owner=self.owner)
                try:
                    claim = _patient(claim_call, self.patience)
                except CoordinationUnavailable as exc:
                    self.broken = f"Redis unavailable: {exc}"
                    self.results[pos] = _deferred(index, item.key, self.broken)
                    continue
                if claim.may_send:
                    mine.append(pos)
                    self.claims[pos] = claim.attempts
                elif claim.verdict == "busy":
                    self.results[pos] = {
                        **_deferred(index, item.key, _BUSY.get(claim.holder, _BUSY["claimed"])),
                        # When to look again (a dead holder's claim has lapsed by then), and
                        # whether the message may be at the server already.
                        "retry_after": claim.lapses_in,
                        "holder": claim.holder,
                        "never_started": False,  # another sender holds it: it may have gone out
                    }
                else:
                    self.results[pos] = {
                        **self.earlier(item.key),
                        "index": index,
                        "key": item.key,
                        "status": claim.verdict,
                        "ledger": claim.verdict,
                        "duplicate": True,
                        "attempts": claim.attempts,
                        "reason": f"the ledger shows it {claim.verdict}: not sent again",
                    }
            seen.add(item.key)
        if self.broken is not None:  # nothing is sent without the ledger: give the claims back
            for pos in mine:
                self.unclaim(pos)
                self.results[pos] = _deferred(self.indexes[pos], self.items[pos].key, self.broken)
            return []
        if ledger is not None and mine:
            self.keeper = _ClaimKeeper(ledger, self.owner, [self.items[p].key for p in mine])
        return mine

    def earlier(self, key: str) -> JsonDict:
        """What the ledger recorded of the send that made ``key`` final (its reply, queue id,
        recipients), so a duplicate reports the same result; empty when unavailable."""
        assert self.ledger is not None
        try:
            entry = self.ledger.get(key)
        except CoordinationUnavailable:
            return {}
        detail = entry.detail if entry is not None and entry.detail else {}
        return {k: v for k, v in detail.items() if k in _EARLIER}

    def feed(self, positions: Sequence[int]) -> Iterator[Outgoing]:
        """The batch input: each item marked ``sending`` as the pool takes it."""
        for pos in positions:
            if self.broken is not None:
                return
            item = self.items[pos]
            if self.ledger is not None:
                mark = functools.partial(self.ledger.sending, item.key, self.owner)
                try:
                    mine = _patient(mark, self.patience)
                except CoordinationUnavailable as exc:
                    self.broken = f"Redis unavailable: {exc}"
                    return
                if not mine:
                    self.results[pos] = _deferred(
                        self.indexes[pos], item.key, "claim lost before sending"
                    )
                    continue
            self.handed.append(pos)
            yield Outgoing(item.data, sender=item.sender, recipients=item.recipients, key=item.key)

    def unclaim(self, pos: int) -> None:
        """Give a claim back after nothing was sent, so a retry need not wait for it to lapse."""
        if self.ledger is None or pos not in self.claims:
            return
        if self.keeper is not None:
            self.keeper.done(self.items[pos].key)
        with contextlib.suppress(CoordinationUnavailable):  # else it lapses on its own
            detail = {"reason": "not attempted"}
            self.ledger.record(self.items[pos].key, self.owner, DeliveryStatus.FAILED, detail)

    def record(self, outcome: SendOutcome) -> None:
        """Turn one final outcome into its JSON result and write it to the ledger."""
        pos = self.handed[outcome.index]
        item = self.items[pos]
        summary = outcome_to_json(attrs.evolve(outcome, index=self.indexes[pos], key=item.key))
        summary["attempts"] = self.claims.get(pos, outcome.attempts)
        if outcome.status is DeliveryStatus.FAILED:
            summary["retryable"] = _retryable_failure(outcome)
        self.results[pos] = summary
        if self.ledger is None:
            return
        if self.keeper is not None:
            self.keeper.done(item.key)
        state = outcome.status
        if state is DeliveryStatus.REFUSED and summary.get("transient"):
            state = DeliveryStatus.FAILED  # a 4xx: nothing accepted, may be tried again
        try:
            write = functools.partial(self.ledger.record, item.key, self.owner, state, summary)
            # Once Redis has stayed down for a whole patience, one try per outcome: a chunk of
            # outcomes must not wait out the same outage once each.
            _patient(write, self.patience if self.broken is None else 0.0)
        except CoordinationUnavailable as exc:
            _log.error("ledger write for %s failed; it will be parked as UNKNOWN", item.key)
            summary["ledger"] = "unrecorded"
            summary["ledger_error"] = str(exc)
            self.broken = f"Redis unavailable: {exc}"
        else:
            summary["ledger"] = state.value

    def close(self, positions: Sequence[int], crash: BaseException | None) -> list[JsonDict]:
        """Stop the keeper; every item the batch never took gets its result; all in order."""
        if self.keeper is not None:
            self.keeper.close()
        for pos in positions:
            if pos in self.results:
                continue
            item, index = self.items[pos], self.indexes[pos]
            if pos in self.handed:  # taken by the pool, no outcome: it may have gone out
                self.results[pos] = {
                    **_deferred(index, item.key, "the batch lost track of it"),
                    "status": DeliveryStatus.UNKNOWN.value,
                    "never_started": False,  # it may have gone out
                    "ledger": "sending",
                }
                continue
            self.unclaim(pos)
            if isinstance(crash, MailError) and not crash.is_retryable:
                self.results[pos] = {
                    **_deferred(index, item.key, str(crash)),
                    "status": DeliveryStatus.FAILED.value,
                    "retryable": False,
                    "error": {"type": type(crash).__name__, "message": str(crash)},
                }
            else:
                reason = self.broken or (f"{type(crash).__name__}: {crash}" if crash else "")
                self.results[pos] = _deferred(index, item.key, reason or "not taken by the pool")
        return [self.results[pos] for pos in range(len(self.items))]


def deliver_chunk(
    items: Sequence[WireItem],
    *,
    pool: Pool,
    rate: RateLimiter | None = None,
    ledger: DeliveryLedger | None = None,
    retry: RetryPolicy | None = None,
    first_index: int = 0,
    indexes: Sequence[int] | None = None,
    patience: float = 30.0,
) -> list[JsonDict]:
    """Send ``items`` as one pipelined ``pool.send_batch`` run; one JSON result each, in order.

    A result is :func:`~mailsdk.integrations._wire.outcome_to_json`'s dict plus ``ledger`` (the
    ledger's verdict) and ``attempts`` (the ledger's claim count), or ``status: "deferred"`` for
    an item not attempted now. The pool tries each message once (``retry`` gives the throttle
    pause and the UNKNOWN rule; its backoff is for the caller's later retries). Redis outages
    shorter than ``patience`` seconds are waited out; longer ones defer what was not sent yet.
    """
    positions = list(range(len(items)))
    chunk = _Chunk(
        items,
        list(indexes) if indexes is not None else [first_index + p for p in positions],
        ledger,
        patience,
    )
    mine = chunk.claim_all()
    crash: BaseException | None = None
    if mine:
        shared = PatientRate(rate, patience) if rate is not None else None
        run = pool.send_batch(chunk.feed(mine), rate=shared, retry=_never_retry_locally(retry))
        try:
            for outcome in run:
                chunk.record(outcome)
        except Exception as exc:  # the batch stopped (a limiter failure, a refused login...)
            _log.warning("the batch of a chunk stopped: %s: %s", type(exc).__name__, exc)
            crash = exc
        finally:
            run.close()
            for outcome in run.report.outcomes:  # the ones finished after the stop
                if chunk.handed[outcome.index] not in chunk.results:
                    chunk.record(outcome)
    return chunk.close(positions, crash)
