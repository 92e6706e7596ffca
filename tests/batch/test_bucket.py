"""TokenBucket with an injected clock: rates, bursts, debt, penalties, limits combined."""

from __future__ import annotations

import threading

import pytest

from mailsdk.batch import LocalConnectionLimiter, RateLimiter, TokenBucket
from mailsdk.errors import ConfigurationError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(messages_per_second=10, burst=3, clock=clock)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    waits = [bucket.reserve() for _ in range(3)]
    assert waits == pytest.approx([0.1, 0.2, 0.3])
    clock.now += 0.3  # the debt is paid: the next waits one interval
    assert bucket.reserve() == pytest.approx(0.1)


def test_no_window_exceeds_rate_plus_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(messages_per_second=50, burst=10, clock=clock)
    starts = []
    for _ in range(2000):  # callers that always send as soon as they are allowed
        starts.append(clock.now + bucket.reserve())
        clock.now += 0.001
    starts.sort()
    for i, t in enumerate(starts):
        in_window = sum(1 for s in starts[i:] if s < t + 10.0)
        assert in_window <= 50 * 10 + 10


def test_per_minute_and_per_hour_limits_both_hold() -> None:
    clock = Clock()
    bucket = TokenBucket(messages_per_minute=60, messages_per_hour=100, burst=1, clock=clock)
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(36.0)  # the hourly rate (100/h) binds


def test_recipients_are_counted() -> None:
    clock = Clock()
    bucket = TokenBucket(recipients_per_second=10, recipient_burst=10, clock=clock)
    assert bucket.reserve(recipients=10) == 0.0
    assert bucket.reserve(recipients=5) == pytest.approx(0.5)
    assert bucket.reserve(messages=1, recipients=0) == 0.0  # messages are not limited here


def test_penalty_pauses_and_restarts_from_empty() -> None:
    clock = Clock()
    bucket = TokenBucket(messages_per_second=10, burst=5, clock=clock)
    bucket.penalize(2.0)
    assert bucket.reserve() == pytest.approx(2.1)
    assert bucket.reserve() == pytest.approx(2.2)  # no burst right after the pause
    bucket.penalize(-1.0)  # ignored
    bucket.penalize(float("nan"))


def test_unlimited_bucket_keeps_penalties() -> None:
    clock = Clock()
    bucket = TokenBucket(clock=clock)
    assert not bucket.limited
    assert bucket.reserve() == 0.0
    bucket.penalize(3.0)
    clock.now += 1.0
    assert bucket.reserve() == pytest.approx(2.0)
    clock.now += 2.0
    assert bucket.reserve() == 0.0


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan"), True])
def test_bad_rates_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(messages_per_second=bad)


def test_thread_safe_reservations_are_all_counted() -> None:
    clock = Clock()
    bucket = TokenBucket(messages_per_second=100, burst=1, clock=clock)
    waits: list[float] = []
    lock = threading.Lock()

    def reserve() -> None:
        for _ in range(100):
            w = bucket.reserve()
            with lock:
                waits.append(w)

    threads = [threading.Thread(target=reserve) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(waits)[-1] == pytest.approx(3.99)  # 400 sends spaced 10 ms, none lost


def test_bucket_is_a_rate_limiter() -> None:
    limiter: RateLimiter = TokenBucket()
    assert limiter.reserve() == 0.0


def test_local_connection_limiter() -> None:
    cap = LocalConnectionLimiter(2)
    a, b = cap.try_acquire(), cap.try_acquire()
    assert a and b and a != b
    assert cap.try_acquire() is None
    assert cap.renew(a)
    cap.release(a)
    cap.release(a)  # idempotent
    assert not cap.renew(a)
    assert cap.try_acquire() is not None
    with pytest.raises(ValueError):
        LocalConnectionLimiter(0)


@pytest.mark.parametrize("bad", ["5", [1]])
def test_rates_that_are_no_number_are_a_typed_error_not_a_type_error(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="positive"):
        TokenBucket(burst=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="positive"):
        TokenBucket(messages_per_second=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 2.5, "3", True])
def test_a_connection_limit_must_be_a_whole_number(bad: object) -> None:
    # NaN used to be accepted and then compared false with every count: no limit at all.
    with pytest.raises(ConfigurationError, match="connection limit"):
        LocalConnectionLimiter(bad)  # type: ignore[arg-type]
