"""Retry policy and the pure retry decision for one outcome of a batch.

Layer: L5b (batch, pure planning). No I/O: the runners ask :func:`plan_retry` what to do with an
outcome and do it themselves.

The decision follows the outcome's :class:`~mailsdk.flows.outcomes.DeliveryStatus` first, then
the reply table of :mod:`mailsdk.protocol.retry`:

* ACCEPTED: done.
* UNKNOWN: done (the server may have the message) unless the policy says ``resend_unknown``.
* FAILED (never handed over): the whole message again when the error is retryable (or the
  server broke the protocol: the next connection may behave).
* REFUSED and PARTIAL: only the recipients refused with a retryable (4xx) reply, in a new
  transaction with just them; a refused sender or data (4xx) sends the whole message again.
* 452 4.5.3 (too many recipients per transaction): the rest go at once, in another transaction,
  without counting against the attempts while each transaction makes progress.
* Any throttling reply (see the table) also penalises the shared rate limiter.
"""

from __future__ import annotations

import math
import random
import typing
from collections.abc import Callable, Mapping

import attrs

from mailsdk.errors import (
    ConfigurationError,
    DataRefused,
    MailError,
    RecipientsRefused,
    RemoteProtocolError,
    ReplyError,
)
from mailsdk.flows import DeliveryStatus, SendOutcome
from mailsdk.protocol.reply import Reply
from mailsdk.protocol.retry import RetryAdvice

__all__ = ["RetryDecision", "RetryPolicy", "never_started", "plan_retry"]


def _non_negative(_: object, attribute: attrs.Attribute[typing.Any], value: object) -> None:
    # Caller input: a str or a NaN must be a typed refusal, never a TypeError or "no limit".
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not (
        number and math.isfinite(typing.cast("float", value)) and typing.cast("float", value) >= 0
    ):
        raise ConfigurationError(
            f"RetryPolicy.{attribute.name} must be a finite number >= 0, not {value!r}"
        )


def _elapsed(_: object, attribute: attrs.Attribute[typing.Any], value: object) -> None:
    # NaN would silently mean "no limit" (every comparison with it is false).
    if value is not None:
        _non_negative(_, attribute, value)


def _attempts(_: object, attribute: attrs.Attribute[typing.Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"RetryPolicy.attempts must be an integer >= 1, not {value!r}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How a batch retries transient failures.

    Attributes:
        attempts: the most tries per message, the first one included (1 = never retry).
        backoff: the delay before the first retry, in seconds.
        multiplier: each further retry waits ``multiplier`` times longer...
        max_delay: ...up to this many seconds.
        jitter: the fraction of each delay that is random (0 = exact delays, 1 = "full jitter":
            anywhere between 0 and the delay), so retries from many connections spread out.
        max_elapsed: no retry starts later than this many seconds after the message's first
            try (``None``: no limit).
        throttle_delay: how long every connection of the pool pauses when the server signals
            throttling (421/451 4.7.x, 452 "too many", 4.3.2).
        resend_unknown: also resend messages whose fate is UNKNOWN (the end of data was sent and
            no reply came). This risks delivering them twice; use it only when duplicates are
            harmless or removed downstream.
    """

    attempts: int = attrs.field(default=3, validator=_attempts)
    backoff: float = attrs.field(default=1.0, validator=_non_negative)
    multiplier: float = attrs.field(default=2.0, validator=_non_negative)
    max_delay: float = attrs.field(default=60.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.5, validator=_non_negative)
    max_elapsed: float | None = attrs.field(default=300.0, validator=_elapsed)
    throttle_delay: float = attrs.field(default=5.0, validator=_non_negative)
    resend_unknown: bool = False

    @classmethod
    def never(cls) -> RetryPolicy:
        """A policy that never retries (still splits on 452 4.5.3 and honours throttling)."""
        return cls(attempts=1)

    def delay(self, tries: int, rand: Callable[[], float] = random.random) -> float:
        """The delay before the next try, after ``tries`` tries (exponential, with jitter)."""
        base = min(self.max_delay, self.backoff * self.multiplier ** max(0, tries - 1))
        return base * (1.0 - min(1.0, self.jitter) * rand())


@attrs.frozen
class RetryDecision:
    """What to do with one outcome.

    Attributes:
        retry: send again.
        recipients: resend only to these recipients (``None``: the whole message, same envelope).
        delay: seconds to wait before the retry.
        counts: the retry counts against ``RetryPolicy.attempts`` (a recipient split does not).
        throttle: seconds every connection must pause (0: no throttling signalled, or the
            policy's ``throttle_delay`` is 0).
        reconnect: the server asked for (or needs) a new connection.
        throttled: the server signalled throttling (the pool also cuts its connections).
    """

    retry: bool
    recipients: tuple[str, ...] | None = None
    delay: float = 0.0
    counts: bool = True
    throttle: float = 0.0
    reconnect: bool = False
    throttled: bool = False


_FINAL: RetryDecision = RetryDecision(False)


def never_started(outcome: SendOutcome) -> bool:
    """True for an outcome of a message that was never started: it sat behind a broken
    connection or a 421, or the batch stopped (Ctrl-C, cancellation) before sending it.

    Such a message was not tried at all. ``send_many`` and the batch runners mark it where they
    make the outcome (:attr:`SendOutcome.never_started <mailsdk.SendOutcome>`); this reads that
    marker (never the error's text).
    """
    return outcome.never_started and outcome.status is DeliveryStatus.FAILED


def _replies_of(outcome: SendOutcome) -> Mapping[str, Reply]:
    if outcome.result is not None:
        return outcome.result.refused
    if isinstance(outcome.error, RecipientsRefused):
        return outcome.error.refused
    return {}


def plan_retry(
    policy: RetryPolicy,
    outcome: SendOutcome,
    *,
    tries: int,
    elapsed: float,
    replayable: bool = True,
    rand: Callable[[], float] = random.random,
) -> RetryDecision:
    """Decide whether and how to retry one outcome (see the module docstring).

    Args:
        policy: the batch's retry policy.
        outcome: the outcome of the latest try.
        tries: the tries made so far that count against ``policy.attempts``.
        elapsed: seconds since the message's first try started.
        replayable: the message source can be read again (bytes, str, a Message, a path);
            a one-shot stream or iterator never is.
        rand: the source of jitter, in ``[0, 1)``.

    Returns:
        The :class:`RetryDecision`.
    """
    status = outcome.status
    if status is DeliveryStatus.ACCEPTED:
        return _FINAL
    error = outcome.error
    refused: Mapping[str, Reply] = (
        _replies_of(outcome) if status is not DeliveryStatus.FAILED else {}
    )
    verdicts = [r.verdict for r in refused.values()]
    if isinstance(error, ReplyError) and not isinstance(error, RecipientsRefused):
        verdicts.append(error.reply.verdict)
    throttled = any(v.throttled for v in verdicts)
    reconnect = any(v.reconnect for v in verdicts)
    decision = _decide(
        policy, outcome, refused, tries=tries, elapsed=elapsed, replayable=replayable,
        rand=rand, reconnect=reconnect, throttle=policy.throttle_delay if throttled else 0.0,
    )  # fmt: skip
    return attrs.evolve(decision, throttled=True) if throttled else decision


def _decide(
    policy: RetryPolicy,
    outcome: SendOutcome,
    refused: Mapping[str, Reply],
    *,
    tries: int,
    elapsed: float,
    replayable: bool,
    rand: Callable[[], float],
    reconnect: bool,
    throttle: float,
) -> RetryDecision:
    status, error = outcome.status, outcome.error
    final = RetryDecision(False, throttle=throttle, reconnect=reconnect)
    if not replayable or (status is DeliveryStatus.UNKNOWN and not policy.resend_unknown):
        return final

    whole = _whole_message(status, error, refused)
    if whole:
        if status is not DeliveryStatus.UNKNOWN and not _transient(status, error):
            return final
        return _schedule(
            policy, None, tries=tries, elapsed=elapsed, rand=rand, throttle=throttle,
            reconnect=reconnect,
        )  # fmt: skip
    split = tuple(r for r, reply in refused.items() if reply.verdict.advice is RetryAdvice.SPLIT)
    later = tuple(r for r, reply in refused.items() if reply.verdict.retryable and r not in split)
    if later:
        return _schedule(
            policy, (*split, *later), tries=tries, elapsed=elapsed, rand=rand,
            throttle=throttle, reconnect=reconnect,
        )  # fmt: skip
    if split:
        progressed = outcome.result is not None and bool(outcome.result.accepted)
        return RetryDecision(
            True, split, 0.0, counts=not progressed, throttle=throttle, reconnect=reconnect
        ) if progressed or tries < policy.attempts else final  # fmt: skip
    return final


def _transient(status: DeliveryStatus, error: MailError | None) -> bool:
    """True when a failure may pass on another try. A FAILED message was never handed over, so
    a server that broke the protocol mid-run (its connection is gone) is worth another one."""
    if error is None:
        return False
    if status is DeliveryStatus.FAILED and isinstance(error, RemoteProtocolError):
        return True
    return error.is_retryable


def _whole_message(
    status: DeliveryStatus, error: MailError | None, refused: Mapping[str, Reply]
) -> bool:
    """True when a retry must send the whole message (not a subset of recipients)."""
    if status in (DeliveryStatus.FAILED, DeliveryStatus.UNKNOWN):
        return True
    if status is DeliveryStatus.PARTIAL:
        return False
    # REFUSED: per recipient when the recipients were refused; whole for sender/data refusals.
    per_recipient = isinstance(error, RecipientsRefused) or bool(refused)
    return not per_recipient or isinstance(error, DataRefused)


def _schedule(
    policy: RetryPolicy,
    recipients: tuple[str, ...] | None,
    *,
    tries: int,
    elapsed: float,
    rand: Callable[[], float],
    throttle: float,
    reconnect: bool,
) -> RetryDecision:
    if tries >= policy.attempts:
        return RetryDecision(False, throttle=throttle, reconnect=reconnect)
    delay = max(policy.delay(tries, rand), throttle)
    if policy.max_elapsed is not None and elapsed + delay > policy.max_elapsed:
        return RetryDecision(False, throttle=throttle, reconnect=reconnect)
    return RetryDecision(True, recipients, delay, True, throttle, reconnect)
