"""The work of one batch: items read lazily, retries scheduled, outcomes merged (no I/O).

Each pooled connection sends a run of items through ``send_many`` (pipelined across messages),
which reports every item it was given: ACCEPTED, PARTIAL, REFUSED, FAILED (never handed over)
or UNKNOWN (end of data sent, no reply); the helpers here classify what else can happen.

Layer: L5c (pool). Shared by the sync and the async batch runners, which serialise calls (a lock
or the event loop) and do the sending and sleeping themselves.
"""

from __future__ import annotations

import email.message
import email.utils
import heapq
import itertools
import math
import os
import random
import typing
from collections.abc import Callable, Iterable, Iterator

import attrs

from mailsdk.batch.limits import RateLimiter
from mailsdk.batch.retry import RetryDecision, RetryPolicy, never_started, plan_retry
from mailsdk.errors import (
    ConfigurationError,
    ConnectionLost,
    DeliveryUnknown,
    MailError,
    RecipientsRefused,
    RemoteProtocolError,
    ReplyError,
)
from mailsdk.flows import DeliveryStatus, Outgoing, SendOutcome, SendResult
from mailsdk.protocol.reply import Reply

__all__ = [
    "Scheduler",
    "Work",
    "as_outgoing",
    "checked_wait",
    "halts",
    "never_sent",
    "not_started",
    "out_of_step",
    "outcome_of_error",
    "paced_now",
    "recipient_count",
    "renumbered",
    "throttling",
]


_ACCEPTED: typing.Final = DeliveryStatus.ACCEPTED
#: What ``plan_retry`` decides for an accepted message: final, no retry, no throttling.
FINAL_DECISION: typing.Final = RetryDecision(False)


def as_outgoing(item: object) -> Outgoing:
    """An :class:`Outgoing` as it is, anything else as the message of one."""
    return item if isinstance(item, Outgoing) else Outgoing(item)  # type: ignore[arg-type]


def _replayable(source: object) -> bool:
    return isinstance(source, bytes | str | email.message.Message | os.PathLike)


def checked_wait(value: object) -> float:
    """The seconds a rate limiter asked to wait, checked: a custom limiter is caller code.

    A negative wait means "now". NaN or infinity (or no number at all) would park the message
    for ever or crash the sleep with a bare ``OverflowError``/``TypeError``.

    Raises:
        ConfigurationError: the limiter returned no finite number.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(
            f"the rate limiter's reserve() must return a finite number of seconds, not {value!r}"
        )
    return max(0.0, float(value))


def recipient_count(item: Outgoing) -> int:
    """The recipients of an item, for the recipient rate (headers counted when not given)."""
    if item.recipients is not None:
        return len(item.recipients)
    message = item.message
    if isinstance(message, email.message.Message):
        fields = [str(v) for k in ("To", "Cc", "Bcc") for v in message.get_all(k, [])]
        return max(1, len(email.utils.getaddresses(fields)))
    return 1


def paced_now(work: Work, limiter: RateLimiter, clock: Callable[[], float]) -> bool:
    """Take the tokens for ``work`` from a limiter whose ``reserve()`` never waits: ``True``
    when the send may go now; otherwise the wait is noted on the work (``ready``, by the
    runner's ``clock``: this module reads no time) and ``False`` returned (the connection is
    not held for it)."""
    wait = limiter.reserve(messages=1, recipients=recipient_count(work.send))
    if wait != 0:  # a custom limiter is caller code: anything but 0 is checked
        wait = checked_wait(wait)
    if wait <= 0:
        return True
    work.paced = True
    work.ready = clock() + wait
    return False


def outcome_of_error(index: int, error: MailError, *, unknown: bool = False) -> SendOutcome:
    """REFUSED for a server refusal, UNKNOWN when the end of data may have been sent (or the
    error says so), FAILED otherwise. A connection that could not be had is a FAILED try (not
    "never started"): the batch did try to send the message, and the try counts."""
    if unknown or isinstance(error, DeliveryUnknown):
        if not isinstance(error, DeliveryUnknown):
            error = DeliveryUnknown(f"the end of data may have been sent, no reply came: {error}")
        return SendOutcome(index=index, status=DeliveryStatus.UNKNOWN, error=error)
    if isinstance(error, ReplyError):
        return SendOutcome(index=index, status=DeliveryStatus.REFUSED, error=error)
    return SendOutcome(index=index, status=DeliveryStatus.FAILED, error=error)


#: The fields :func:`renumbered` copies: every field of ``SendOutcome`` (a test checks it).
RENUMBERED_FIELDS: typing.Final = (
    "index", "status", "result", "error", "key", "attempts", "never_started",
)  # fmt: skip


def renumbered(outcome: SendOutcome, index: int, key: str | None, attempts: int) -> SendOutcome:
    """``outcome`` with the batch's index, key and attempts (``attrs.evolve`` without its
    per-call introspection: this runs once per message)."""
    return SendOutcome(
        index=index,
        status=outcome.status,
        result=outcome.result,
        error=outcome.error,
        key=key,
        attempts=attempts,
        never_started=outcome.never_started,
    )


def never_sent(outcome: SendOutcome) -> bool:
    """True for a FAILED outcome of an item the session never started (its typed marker):
    sending it elsewhere is no new try (see :func:`mailsdk.batch.never_started`)."""
    return never_started(outcome)


def not_started(index: int, reason: str, *, key: str | None = None) -> SendOutcome:
    """The FAILED outcome of an item this run never started, with the typed marker set."""
    return SendOutcome(
        index=index,
        status=DeliveryStatus.FAILED,
        error=ConnectionLost(f"not sent: {reason}"),
        key=key,
        attempts=0,
        never_started=True,
    )


def out_of_step(outcome: SendOutcome) -> SendOutcome | None:
    """A refusal carried by a 2xx/3xx reply means the server's replies no longer match the
    commands (a server that sent an extra reply): nothing more on that session can be trusted.
    Returns the outcome as FAILED (the message was not handed over), or ``None`` if in step."""
    error = outcome.error
    if outcome.status is not DeliveryStatus.REFUSED or not isinstance(error, ReplyError):
        return None
    if error.reply.code >= 400:
        return None
    broken = RemoteProtocolError(
        f"the server's replies are out of step with the commands ({error})"
    )
    return attrs.evolve(outcome, status=DeliveryStatus.FAILED, result=None, error=broken)


def throttling(error: BaseException) -> bool:
    """True when an error carries a throttling reply (see ``ReplyVerdict.throttled``): the
    pool then cuts the connections it uses."""
    if isinstance(error, RecipientsRefused):
        return any(reply.verdict.throttled for reply in error.refused.values())
    return isinstance(error, ReplyError) and error.reply.verdict.throttled


def halts(outcome: SendOutcome) -> bool:
    """True when an outcome means its connection is done (broken, silent, or closing by 421):
    no more work is fed to that session."""
    if outcome.status in (DeliveryStatus.FAILED, DeliveryStatus.UNKNOWN):
        return True
    error = outcome.error
    return isinstance(error, ReplyError) and error.reply.code == 421


@attrs.define(eq=False)
class Work:
    """One item of a batch, across its tries."""

    index: int
    item: Outgoing
    send: Outgoing
    replayable: bool
    tries: int = 0  # tries that count against the policy's attempts
    sends: int = 0  # every try
    started: float | None = None
    ready: float = 0.0  # not sent before this time (a retry's back-off or reserved tokens)
    paced: bool = False  # the rate limiter's tokens for the next send are already taken
    epoch: int = 0  # the pool's concurrency epoch when the latest try started
    accepted: list[str] = attrs.Factory(list[str])
    refused: dict[str, Reply] = attrs.Factory(dict[str, Reply])
    result: SendResult | None = None


def _merged(work: Work, last: SendOutcome) -> SendOutcome:
    """The final outcome of an item tried more than once: recipients of every try merged."""
    base = last.result or work.result
    if not work.accepted:
        return attrs.evolve(last, index=work.index, key=work.item.key, attempts=work.sends)
    status = DeliveryStatus.ACCEPTED
    if last.status is DeliveryStatus.UNKNOWN:
        status = DeliveryStatus.UNKNOWN
    elif work.refused or last.status is DeliveryStatus.FAILED:
        status = DeliveryStatus.PARTIAL
    result = base
    if base is not None:
        replies = dict(base.recipient_replies)
        replies.update(work.refused)
        result = attrs.evolve(
            base,
            accepted=tuple(work.accepted),
            refused=dict(work.refused),
            recipient_replies=replies,
        )
    error = None if status is DeliveryStatus.ACCEPTED else last.error
    return SendOutcome(
        index=work.index,
        status=status,
        result=result,
        error=error,
        key=work.item.key,
        attempts=work.sends,
    )


class Scheduler:
    """Reads the input lazily, hands out due work, and turns outcomes into final ones.

    Args:
        items: the batch input (``Outgoing`` or message forms), read only when work is taken.
        policy: the retry policy.
        rand: the jitter source.
    """

    def __init__(
        self,
        items: Iterable[object],
        policy: RetryPolicy,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._items: Iterator[tuple[int, object]] = enumerate(items)
        self.policy = policy
        self._rand = rand
        self._retries: list[tuple[float, int, Work]] = []
        self._seq = itertools.count()
        self.exhausted = False
        self.stopped = False
        self.read = 0
        self.outstanding = 0
        #: an exception raised by the input iterator (re-raised to the consumer at the end).
        self.input_error: BaseException | None = None

    @property
    def finished(self) -> bool:
        """True once the input is exhausted (or the batch stopped) and nothing is outstanding."""
        return (self.exhausted or self.stopped) and self.outstanding == 0

    def next_ready(self) -> float | None:
        """When the earliest scheduled retry is due (``None``: no retry waiting)."""
        return self._retries[0][0] if self._retries else None

    def take(self, now: float) -> Work | None:
        """Due work: a retry whose time has come, else the next input item; ``None`` if none now."""
        if self.stopped:
            return None
        if self._retries and self._retries[0][0] <= now:
            return heapq.heappop(self._retries)[2]
        if self.exhausted:
            return None
        try:
            index, raw = next(self._items)
        except StopIteration:
            self.exhausted = True
            return None
        except Exception as exc:  # the caller's generator failed: stop reading, report it
            self.exhausted = True
            self.input_error = exc
            return None
        self.read += 1
        self.outstanding += 1
        item = raw if type(raw) is Outgoing else as_outgoing(raw)  # the usual type tested first
        message = item.message
        return Work(index, item, item, type(message) is bytes or _replayable(message))

    def record(
        self, work: Work, outcome: SendOutcome, now: float
    ) -> tuple[SendOutcome | None, RetryDecision]:
        """Take the outcome of one try; return the final outcome (or ``None``: retry scheduled).

        A never-started outcome (the first item of a run, which the runners cannot requeue
        for free without risking a loop) uses up one of the policy's attempts but is not
        counted in ``SendOutcome.attempts``: nothing of it reached the server.
        """
        if outcome.status is _ACCEPTED and work.sends == 0:
            # The usual case, a first try accepted whole: final at once (plan_retry would say
            # so), with nothing of earlier tries to merge.
            work.sends = 1
            if work.started is None:
                work.started = now
            self.outstanding -= 1
            return renumbered(outcome, work.index, work.item.key, 1), FINAL_DECISION
        started = not outcome.never_started
        if started:
            work.sends += 1
        if work.started is None:
            work.started = now
        if outcome.result is not None:
            work.result = outcome.result
            for rcpt in outcome.result.accepted:
                work.refused.pop(rcpt, None)
                if rcpt not in work.accepted:
                    work.accepted.append(rcpt)
            work.refused.update(outcome.result.refused)
        elif isinstance(outcome.error, RecipientsRefused):
            work.refused.update(outcome.error.refused)
        decision = plan_retry(
            self.policy,
            outcome,
            tries=work.tries + 1,
            elapsed=now - work.started,
            replayable=work.replayable,
            rand=self._rand,
        )
        if decision.counts:
            work.tries += 1
        send: Outgoing | None = None
        if decision.retry and not self.stopped:
            if decision.recipients is None:
                # The same envelope as the try that failed: after a per-recipient retry that is
                # the remaining recipients only, never again those already accepted.
                send = work.send
            else:
                remaining = tuple(r for r in decision.recipients if r not in work.accepted)
                if remaining:
                    sender = (
                        outcome.result.sender if outcome.result is not None else work.send.sender
                    )
                    send = attrs.evolve(work.item, sender=sender, recipients=remaining)
        if send is not None:
            work.send = send
            work.ready = now + decision.delay
            heapq.heappush(self._retries, (work.ready, next(self._seq), work))
            return None, decision
        self.outstanding -= 1
        if work.sends == 0 or (work.sends == 1 and started):
            final = renumbered(outcome, work.index, work.item.key, work.sends)
        else:  # an earlier try reached the server: the message as a whole was started
            final = _merged(work, attrs.evolve(outcome, never_started=False))
        return final, decision

    def requeue(self, work: Work, now: float) -> None:
        """Put back work that was never sent (its connection closed before it): no try used."""
        if self.stopped:
            return
        work.ready = now
        work.paced = False  # whatever was reserved for it went unused; the next send reserves
        heapq.heappush(self._retries, (now, next(self._seq), work))

    def abandon(self, work: Work, *, handed_over: bool, reason: str) -> SendOutcome:
        """The final outcome of work that cannot finish (the batch was cancelled).

        Args:
            handed_over: the work was given to a session whose fate is unknown (UNKNOWN);
                otherwise it was never sent in this try (FAILED, marked never started unless an
                earlier try reached the server; no try is counted for it).
        """
        self.outstanding -= 1
        if handed_over:
            work.sends += 1
            error = DeliveryUnknown(f"batch cancelled while sending: {reason}")
            outcome = SendOutcome(
                index=work.index, status=DeliveryStatus.UNKNOWN, error=error, key=work.item.key
            )
            return outcome if work.sends == 1 else _merged(work, outcome)
        outcome = not_started(work.index, reason, key=work.item.key)
        if work.sends == 0:
            return outcome
        # Tried before (a retry was waiting): the earlier tries' recipients stand, and the
        # message as a whole was started, so it is not marked never started.
        last = attrs.evolve(outcome, never_started=False, attempts=work.sends)
        return _merged(work, last)

    def stop(self, reason: str) -> list[SendOutcome]:
        """Stop: read no more input; the retries still waiting end FAILED (never resent)."""
        self.stopped = True
        waiting = [entry[2] for entry in self._retries]
        self._retries.clear()
        return [self.abandon(w, handed_over=False, reason=reason) for w in waiting]
