"""Send a chunk of wire items under the shared limits and the ledger: claim, wait, send, record.

Layer: L7 (integrations, private). Imports ``mailsdk.client``/``flows``/``errors`` and the other
private integration helpers; no framework. The Celery tasks are thin wrappers around
:func:`deliver_chunk`; plain processes can call it too.

Per item, in this order (each step can only make the item *not* go out, never go out twice):

1. ``ledger.claim``: a message the ledger shows as final or parked is reported, not sent; one
   another live worker holds is *deferred*.
2. ``rate.reserve``: sleep the returned wait (the tokens are ours already).
3. take the process's session (under a connection lease).
4. ``ledger.sending`` (refused when our claim was lost meanwhile: deferred, not sent).
5. the transaction, classified into a :class:`DeliveryStatus`.
6. ``ledger.record`` (retried while Redis restarts; if it stays down the entry stays ``sending``
   and is parked as UNKNOWN later, and the error says so).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
import typing
import uuid
from collections.abc import Sequence

from mailsdk.errors import DeliveryUnknown, MailError, ReplyError, TransportError
from mailsdk.flows import DeliveryStatus, SendOutcome
from mailsdk.integrations._errors import CoordinationUnavailable
from mailsdk.integrations._sessions import LeasedSession
from mailsdk.integrations._wire import JsonDict, WireItem, outcome_to_json

if typing.TYPE_CHECKING:
    from mailsdk.integrations.redis import DeliveryLedger

__all__ = [
    "DEFERRED",
    "RateLimiterLike",
    "classify_error",
    "deliver_chunk",
    "is_retryable",
]

_log = logging.getLogger("mailsdk.integrations")

#: The status of an item that was not attempted now and should be tried again later.
DEFERRED = "deferred"


class RateLimiterLike(typing.Protocol):
    """The batch engine's ``RateLimiter`` protocol (structural copy)."""

    def reserve(self, *, messages: int = 1, recipients: int = 0) -> float:
        """Take the tokens for one send; return the seconds to wait."""
        ...

    def penalize(self, seconds: float) -> None:
        """No send for ``seconds`` (server-signalled throttling)."""
        ...


def _deferred(index: int, key: str, reason: str, ledger: str | None = None) -> JsonDict:
    return {
        "index": index,
        "key": key,
        "status": DEFERRED,
        "reason": reason,
        "ledger": ledger,
        "attempts": 0,
    }


def classify_error(index: int, key: str | None, exc: MailError) -> SendOutcome:
    """The outcome of a transaction that raised ``exc``.

    ``DeliveryUnknown`` (end-of-data written, no reply) is UNKNOWN; a server refusal is REFUSED;
    anything else stopped the message before its end-of-data and is FAILED (never sent).
    """
    if isinstance(exc, DeliveryUnknown):
        status = DeliveryStatus.UNKNOWN
    elif isinstance(exc, ReplyError):
        status = DeliveryStatus.REFUSED
    else:
        status = DeliveryStatus.FAILED
    return SendOutcome(index=index, status=status, error=exc, key=key)


def _throttled(exc: MailError) -> bool:
    if not isinstance(exc, ReplyError):
        return False
    enhanced = exc.reply.enhanced
    return exc.reply.code == 421 or (
        exc.reply.is_transient and enhanced is not None and enhanced.subject == 7
    )


def is_retryable(result: JsonDict) -> bool:
    """True for an item worth another attempt later (deferred, not handed over, or 4xx)."""
    status = result.get("status")
    if status == DEFERRED:
        return True
    if status == DeliveryStatus.FAILED.value:
        return bool(result.get("retryable"))
    return status == DeliveryStatus.REFUSED.value and bool(result.get("transient"))


_T = typing.TypeVar("_T")


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


def _record(
    ledger: DeliveryLedger,
    key: str,
    owner: str,
    status: DeliveryStatus,
    detail: JsonDict,
    *,
    patience: float,
) -> str | None:
    """Record, waiting out a Redis restart; the error text when it never got through."""
    try:
        _patient(lambda: ledger.record(key, owner, status, detail), patience)
    except CoordinationUnavailable as exc:
        _log.error("ledger write for %s failed; it will be parked as UNKNOWN", key)
        return str(exc)
    return None


def _unclaim(ledger: DeliveryLedger | None, key: str, owner: str) -> None:
    """Give a claim back after nothing was sent, so a retry need not wait for it to expire."""
    if ledger is None or not owner:
        return
    with contextlib.suppress(CoordinationUnavailable):  # else it expires on its own
        ledger.record(key, owner, DeliveryStatus.FAILED, {"reason": "not attempted"})


def deliver_chunk(
    items: Sequence[WireItem],
    *,
    sessions: LeasedSession,
    rate: RateLimiterLike | None = None,
    ledger: DeliveryLedger | None = None,
    first_index: int = 0,
    indexes: Sequence[int] | None = None,
    penalty: float = 10.0,
    patience: float = 30.0,
) -> list[JsonDict]:
    """Send ``items`` one transaction each over the process's session; one JSON result each.

    A result is :func:`~mailsdk.integrations._wire.outcome_to_json`'s dict plus ``ledger`` (the
    ledger's verdict), or ``status: "deferred"`` for an item not attempted now. Items after a
    Redis failure that outlasts ``patience`` seconds are deferred (nothing is sent without the
    ledger's claim); shorter outages (a restart) are waited out.
    """
    results: list[JsonDict] = []
    broken: str | None = None
    for offset, item in enumerate(items):
        index = indexes[offset] if indexes is not None else first_index + offset
        if broken is not None:
            results.append(_deferred(index, item.key, broken))
            continue
        owner = ""
        attempts = 1
        try:
            if ledger is not None:
                # One owner token for every try: a claim that Redis executed but whose reply
                # was lost (a restart) is found again as ours, not as someone else's.
                token = uuid.uuid4().hex
                claim = _patient(functools.partial(ledger.claim, item.key, owner=token), patience)
                if not claim.may_send:
                    if claim.verdict == "busy":
                        results.append(_deferred(index, item.key, "claimed by another worker"))
                    else:
                        results.append(
                            {
                                "index": index,
                                "key": item.key,
                                "status": claim.verdict,
                                "ledger": claim.verdict,
                                "duplicate": True,
                                "attempts": claim.attempts,
                            }
                        )
                    continue
                owner, attempts = claim.owner, claim.attempts
            if rate is not None:
                reserve = functools.partial(
                    rate.reserve, messages=1, recipients=len(item.recipients)
                )
                wait = _patient(reserve, patience)
                if wait > 0:
                    time.sleep(wait)
            with sessions.use() as session:
                if ledger is not None and not _patient(
                    functools.partial(ledger.sending, item.key, owner), patience
                ):
                    results.append(_deferred(index, item.key, "claim lost before sending"))
                    continue
                try:
                    result = session.send_message(
                        item.data, sender=item.sender, recipients=list(item.recipients)
                    )
                except MailError as exc:
                    outcome = classify_error(index, item.key, exc)
                    if rate is not None and _throttled(exc):
                        with contextlib.suppress(CoordinationUnavailable):  # best effort
                            rate.penalize(penalty)
                    raise _Sent(outcome) from exc
                status = DeliveryStatus.PARTIAL if result.refused else DeliveryStatus.ACCEPTED
                outcome = SendOutcome(index=index, status=status, result=result, key=item.key)
        except _Sent as sent:
            outcome = sent.outcome
        except CoordinationUnavailable as exc:
            broken = f"Redis unavailable: {exc}"
            results.append(_deferred(index, item.key, broken))
            _unclaim(ledger, item.key, owner)
            continue
        except MailError as exc:  # connecting, the lease, the limiter: nothing was sent
            results.append(_deferred(index, item.key, f"{type(exc).__name__}: {exc}"))
            _unclaim(ledger, item.key, owner)
            continue
        summary = outcome_to_json(outcome)
        summary["attempts"] = attempts
        if outcome.status is DeliveryStatus.FAILED:
            # The connection broke before end-of-data: nothing was handed over, try again.
            summary["retryable"] = isinstance(outcome.error, TransportError)
        if ledger is not None:
            state = outcome.status
            if state is DeliveryStatus.REFUSED and summary.get("transient"):
                state = DeliveryStatus.FAILED  # a 4xx: nothing accepted, may be tried again
            error = _record(ledger, item.key, owner, state, summary, patience=patience)
            summary["ledger"] = state.value if error is None else "unrecorded"
            if error is not None:
                summary["ledger_error"] = error
                broken = f"Redis unavailable: {error}"
        results.append(summary)
    return results


class _Sent(Exception):
    """Carries the outcome of a transaction that raised out of the session block."""

    def __init__(self, outcome: SendOutcome) -> None:
        super().__init__(outcome.status.value)
        self.outcome = outcome
