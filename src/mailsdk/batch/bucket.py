"""An in-process token bucket for messages and recipients per second, minute and hour.

Layer: L5b (batch, pure planning). The clock is injected, so the tests drive it by hand.

Each configured rate is one bucket that refills continuously at ``amount / window`` tokens per
second up to its capacity (the burst). A reservation takes its tokens at once, possibly into
debt, and returns when the debt is paid off (the generic cell rate algorithm), so over any
window of ``w`` seconds at most ``burst + rate * w`` sends start. A penalty (server throttling)
empties every bucket and moves its refill start to the end of the penalty, so the sends that
queue up behind a throttle resume at the configured rate, not in one burst.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import attrs

from mailsdk.errors import ConfigurationError

__all__ = ["TokenBucket"]


@attrs.define
class _Bucket:
    rate: float  # tokens per second
    capacity: float
    tokens: float
    stamp: float  # the time ``tokens`` holds at (may lie in the future after a penalty)

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, amount: float, now: float) -> float:
        """Take ``amount`` tokens; return the time at which they are paid for."""
        self.refill(now)
        self.tokens -= amount
        return self.stamp + max(0.0, -self.tokens) / self.rate

    def penalize(self, until: float, now: float) -> None:
        self.refill(now)
        if until > self.stamp:
            self.tokens = min(self.tokens, 0.0)
            self.stamp = until


def _share(bucket: _Bucket, parts: int, now: float) -> _Bucket:
    bucket.refill(now)
    capacity = bucket.capacity / parts
    return _Bucket(bucket.rate / parts, capacity, min(capacity, bucket.tokens / parts), now)


def _checked(name: str, value: object) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and value > 0)
    ):
        raise ConfigurationError(f"{name} must be a positive number, not {value!r}")
    return float(value)


class TokenBucket:
    """A thread-safe :class:`~mailsdk.batch.limits.RateLimiter` for one process.

    Share one instance between pools (or pass it to several batches) to share the limit. It also
    works as the rate of an :class:`~mailsdk.pool.AsyncPool` (its methods never block).

    Args:
        messages_per_second: messages (transactions) per second; the per-minute and per-hour
            forms are alternatives or additional limits (all configured limits hold).
        recipients_per_second: recipients per second (and per minute, per hour).
        burst: the capacity of the message buckets: how many messages may start at once after a
            quiet period. Defaults to one second's worth of the rate, at least 1.
        recipient_burst: the same for the recipient buckets.
        clock: a monotonic clock in seconds (injected by tests).

    Raises:
        ConfigurationError: a rate or burst is not a positive finite number (a
            ``ValueError`` too).
    """

    def __init__(
        self,
        *,
        messages_per_second: float | None = None,
        messages_per_minute: float | None = None,
        messages_per_hour: float | None = None,
        recipients_per_second: float | None = None,
        recipients_per_minute: float | None = None,
        recipients_per_hour: float | None = None,
        burst: float | None = None,
        recipient_burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._penalty_until = -math.inf
        now = clock()
        burst = _checked("burst", burst)
        recipient_burst = _checked("recipient_burst", recipient_burst)

        def buckets(rates: dict[str, float | None], cap: float | None) -> list[_Bucket]:
            out: list[_Bucket] = []
            for name, window in (("second", 1.0), ("minute", 60.0), ("hour", 3600.0)):
                amount = _checked(f"per_{name}", rates[name])
                if amount is None:
                    continue
                rate = amount / window
                capacity = cap if cap is not None else max(1.0, rate)
                out.append(_Bucket(rate, capacity, capacity, now))
            return out

        self._messages = buckets(
            {"second": messages_per_second, "minute": messages_per_minute,
             "hour": messages_per_hour},
            burst,
        )  # fmt: skip
        self._recipients = buckets(
            {"second": recipients_per_second, "minute": recipients_per_minute,
             "hour": recipients_per_hour},
            recipient_burst,
        )  # fmt: skip

    def __repr__(self) -> str:
        rates = [f"{b.rate:g}/s msg" for b in self._messages]
        rates += [f"{b.rate:g}/s rcpt" for b in self._recipients]
        return f"<TokenBucket {', '.join(rates) or 'unlimited'}>"

    @property
    def limited(self) -> bool:
        """True when at least one rate is configured (an unlimited bucket only keeps penalties)."""
        return bool(self._messages or self._recipients)

    def reserve(self, *, messages: int = 1, recipients: int = 0) -> float:
        """Take the tokens for one send now; return the seconds to wait before sending it.

        Never blocks. Thread-safe. The tokens are taken even when the wait is not zero: the
        caller is expected to send after the wait (or to give the slot up for good).
        """
        if not self._messages and not self._recipients:  # no rate, only penalties: no lock
            until = self._penalty_until
            return 0.0 if until == -math.inf else max(0.0, until - self._clock())
        with self._lock:
            now = self._clock()
            ready = self._penalty_until
            if messages:
                for bucket in self._messages:
                    ready = max(ready, bucket.take(messages, now))
            if recipients:
                for bucket in self._recipients:
                    ready = max(ready, bucket.take(recipients, now))
            return max(0.0, ready - now)

    def divided(self, parts: int) -> tuple[TokenBucket, ...]:
        """``parts`` independent buckets whose rates and bursts add up to this one's, for
        processes that cannot share one bucket: each gets ``1/parts`` of every rate and burst
        (a share's burst may be below one message: a send then waits for the rest, so the
        shares together never exceed this bucket's limits)."""
        if type(parts) is not int or parts < 1:  # run-time check: bool, float, str
            raise ConfigurationError(f"parts must be an int >= 1, got {parts!r}")
        shares: list[TokenBucket] = []
        with self._lock:
            shares.extend(self._share(parts) for _ in range(parts))
        return tuple(shares)

    def _share(self, parts: int) -> TokenBucket:
        share = TokenBucket(clock=self._clock)
        now = share._clock()
        share._messages = [_share(b, parts, now) for b in self._messages]
        share._recipients = [_share(b, parts, now) for b in self._recipients]
        share._penalty_until = self._penalty_until
        return share

    def penalize(self, seconds: float) -> None:
        """No send starts for ``seconds`` from now; afterwards the rate restarts from empty."""
        if not (math.isfinite(seconds) and seconds > 0):
            return
        with self._lock:
            now = self._clock()
            until = now + seconds
            self._penalty_until = max(self._penalty_until, until)
            for bucket in (*self._messages, *self._recipients):
                bucket.penalize(until, now)
