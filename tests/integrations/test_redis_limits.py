"""The Redis token bucket and connection semaphore against a real redis-server."""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("redis", reason="the redis extra is not installed")

import redis
from tests._support.redis_server import RedisServer, free_port

from mailsdk.errors import ConfigurationError, InvalidInputError, TransportError
from mailsdk.integrations.redis import (
    AsyncRedisConnectionLimiter,
    AsyncRedisRateLimiter,
    CoordinationUnavailable,
    Rate,
    RedisConnectionLimiter,
    RedisRateLimiter,
)

pytestmark = pytest.mark.redis


def test_burst_goes_at_once_then_each_waits_its_turn(redis_client: redis.Redis) -> None:
    # 1 token per second (per hour: refill during the test is negligible), 5 in the bucket.
    limiter = RedisRateLimiter(redis_client, "acct", messages=[Rate.per_hour(3600, burst=5)])
    waits = [limiter.reserve() for _ in range(8)]
    assert waits[:5] == [0.0] * 5
    # The 6th waits ~1 s, the 7th ~2 s, the 8th ~3 s (less the time the calls took).
    for n, wait in enumerate(waits[5:], start=1):
        assert n - 0.5 < wait <= n, waits


def test_two_limiters_with_one_name_share_the_budget(redis_client: redis.Redis) -> None:
    a = RedisRateLimiter(redis_client, "shared", messages=[Rate.per_hour(3600, burst=2)])
    b = RedisRateLimiter(redis_client, "shared", messages=[Rate.per_hour(3600, burst=2)])
    other = RedisRateLimiter(redis_client, "other", messages=[Rate.per_hour(3600, burst=2)])
    assert a.reserve() == 0.0
    assert b.reserve() == 0.0
    assert a.reserve() > 0.5  # the third of the shared budget waits
    assert other.reserve() == 0.0  # another account is untouched


def test_recipients_are_counted_separately(redis_client: redis.Redis) -> None:
    limiter = RedisRateLimiter(
        redis_client,
        "acct",
        messages=[Rate.per_hour(36000, burst=100)],
        recipients=[Rate.per_hour(3600, burst=10)],
    )
    assert limiter.reserve(recipients=10) == 0.0
    # The message bucket has room, the recipient bucket is empty: 5 recipients wait ~5 s.
    assert 4.5 < limiter.reserve(recipients=5) <= 5.0
    # A message with no recipients counted only takes a message token.
    assert limiter.reserve(recipients=0) == 0.0


def test_every_period_applies(redis_client: redis.Redis) -> None:
    limiter = RedisRateLimiter(
        redis_client, "acct", messages=[Rate.per_second(1000), Rate.per_minute(3)]
    )
    assert [limiter.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.reserve() > 15.0  # the per-minute budget (one every 20 s) is spent


def test_penalty_delays_everyone_and_reservations_queue_behind_it(
    redis_client: redis.Redis,
) -> None:
    limiter = RedisRateLimiter(redis_client, "acct", messages=[Rate.per_hour(3600, burst=2)])
    peer = RedisRateLimiter(redis_client, "acct", messages=[Rate.per_hour(3600, burst=2)])
    limiter.penalize(30.0)
    first = peer.reserve()
    assert 29.0 < first <= 30.0
    assert peer.reserve() < first + 0.1  # the bucket refilled during the penalty: burst of 2
    assert peer.reserve() > first + 0.5  # then the rate again, behind the penalty


def test_concurrent_reservations_never_hand_out_more_than_the_budget(
    redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    limiter = RedisRateLimiter(redis_client, "acct", messages=[Rate.per_hour(3600, burst=10)])
    waits: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
        mine = RedisRateLimiter(client, "acct", messages=[Rate.per_hour(3600, burst=10)])
        got = [mine.reserve() for _ in range(10)]
        with lock:
            waits.extend(got)
        client.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert limiter is not None
    waits.sort()
    # 40 reservations, 10 free; the rest queue one second apart: the k-th (0-based) after the
    # burst waits about k+1 seconds, so no two share a slot.
    assert waits.count(0.0) == 10
    for k, wait in enumerate(waits[10:]):
        assert k + 0.5 < wait <= k + 1, waits


def test_bad_rates_are_configuration_errors(redis_client: redis.Redis) -> None:
    with pytest.raises(ConfigurationError):
        Rate(0)
    with pytest.raises(ConfigurationError):
        Rate(10, float("nan"))
    with pytest.raises(ConfigurationError):
        Rate(10, burst=-1)
    with pytest.raises(ConfigurationError):
        RedisRateLimiter(redis_client, "acct")
    with pytest.raises(ConfigurationError):
        RedisRateLimiter(redis_client, "acct", messages=[Rate(1), Rate(2)])
    limiter = RedisRateLimiter(redis_client, "acct", messages=[Rate(1)])
    with pytest.raises(ConfigurationError):
        limiter.penalize(float("inf"))
    with pytest.raises(ConfigurationError):
        limiter.reserve(messages=-1)


def test_redis_down_is_a_clear_error_without_the_password() -> None:
    port = free_port()  # nothing listens there
    client = redis.Redis.from_url(
        f"redis://:hunter2-secret@127.0.0.1:{port}/0", socket_timeout=1, socket_connect_timeout=1
    )
    limiter = RedisRateLimiter(client, "acct", messages=[Rate(10)])
    with pytest.raises(CoordinationUnavailable) as info:
        limiter.reserve()
    assert isinstance(info.value, TransportError)
    assert f"127.0.0.1:{port}" in str(info.value)
    assert "hunter2" not in str(info.value) and "hunter2" not in repr(info.value)
    conns = RedisConnectionLimiter(client, "acct", limit=1)
    with pytest.raises(CoordinationUnavailable):
        conns.try_acquire()


def test_connection_cap_holds_and_release_frees_a_slot(redis_client: redis.Redis) -> None:
    a = RedisConnectionLimiter(redis_client, "mailbox", limit=2)
    b = RedisConnectionLimiter(redis_client, "mailbox", limit=2)
    first, second = a.try_acquire(), b.try_acquire()
    assert first and second and first != second
    assert a.try_acquire() is None
    assert b.holders() == 2
    b.release(second)
    third = a.try_acquire()
    assert third is not None
    assert a.renew(first) is True
    a.release(first)
    a.release(first)  # idempotent
    assert a.renew(first) is False


def test_a_dead_holders_lease_expires(redis_client: redis.Redis) -> None:
    import time

    limiter = RedisConnectionLimiter(redis_client, "mailbox", limit=1, lease_ttl=0.3)
    lease = limiter.try_acquire()
    assert lease is not None
    assert limiter.try_acquire() is None
    # The holder "dies": it never renews. After the TTL (Redis' clock) the slot is free again.
    deadline = time.monotonic() + 10
    while (fresh := limiter.try_acquire()) is None:
        assert time.monotonic() < deadline, "the dead lease never expired"
        time.sleep(0.05)
    assert fresh != lease
    assert limiter.renew(lease) is False  # the dead holder learns it lost the slot


async def test_async_limiters_share_keys_with_the_sync_ones(
    redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    import redis.asyncio

    aclient = redis.asyncio.Redis.from_url(redis_server.url, socket_timeout=5)
    try:
        sync_rate = RedisRateLimiter(redis_client, "acct", messages=[Rate.per_hour(3600, burst=1)])
        async_rate = AsyncRedisRateLimiter(aclient, "acct", messages=[Rate.per_hour(3600, burst=1)])
        assert await async_rate.reserve() == 0.0
        assert sync_rate.reserve() > 0.5
        await async_rate.penalize(60)
        assert await async_rate.reserve() > 59
        sync_conns = RedisConnectionLimiter(redis_client, "box", limit=1)
        async_conns = AsyncRedisConnectionLimiter(aclient, "box", limit=1)
        lease = await async_conns.try_acquire()
        assert lease is not None
        assert sync_conns.try_acquire() is None
        assert await async_conns.renew(lease)
        await async_conns.release(lease)
        assert sync_conns.try_acquire() is not None
    finally:
        await aclient.aclose()


@pytest.mark.parametrize("recipients", [10**7, 10**12, 10**18])
def test_a_reservation_no_budget_can_pay_is_refused_and_takes_nothing(
    redis_client: redis.Redis, recipients: int
) -> None:
    limiter = RedisRateLimiter(
        redis_client, "acct", messages=[Rate.per_second(10)], recipients=[Rate.per_minute(100)]
    )
    assert limiter.reserve(messages=1, recipients=1) == 0.0
    # Before: 10**7 made every sender of the budget wait 69 days, 10**12 nineteen thousand
    # years, and 10**18 broke the script half-way (tokens written, expiry failed), so every
    # later reservation of anyone failed with CoordinationUnavailable.
    with pytest.raises(InvalidInputError, match="30 days"):
        limiter.reserve(messages=1, recipients=recipients)
    assert limiter.reserve(messages=1, recipients=1) == 0.0  # the budget is untouched
    # A deep queue inside the bound is still a queue, not an error.
    assert 50 < limiter.reserve(messages=1, recipients=200) < 70


async def test_the_async_limiter_refuses_an_unpayable_reservation_too(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    import redis.asyncio

    aclient = redis.asyncio.Redis.from_url(redis_server.url, socket_timeout=5)
    try:
        limiter = AsyncRedisRateLimiter(aclient, "acct", messages=[Rate.per_hour(1)])
        with pytest.raises(InvalidInputError):
            await limiter.reserve(messages=1000)  # 1000 hours
        assert await limiter.reserve() == 0.0
    finally:
        await aclient.aclose()


def test_a_holder_with_a_shorter_lease_ttl_never_expires_the_others_leases(
    redis_client: redis.Redis,
) -> None:
    import time

    # A rolling deploy: old workers with 30 s leases, new ones with 0.2 s, one budget.
    old = RedisConnectionLimiter(redis_client, "box", limit=2, lease_ttl=30)
    new = RedisConnectionLimiter(redis_client, "box", limit=2, lease_ttl=0.2)
    kept = old.try_acquire()
    assert kept is not None
    short = new.try_acquire()
    assert short is not None
    new.release(short)
    time.sleep(0.8)
    # Before: the short holder set the whole set's expiry to 0.4 s, and the old lease, alive
    # for 30 s more, vanished with it: the cap let a third connection in.
    assert old.renew(kept) is True
    assert old.holders() == 1
    assert new.try_acquire() is not None
    assert new.try_acquire() is None  # still at most 2


def test_a_replayed_acquire_of_the_same_lease_is_still_granted(redis_client: redis.Redis) -> None:
    from mailsdk.integrations.redis import limits

    limiter = RedisConnectionLimiter(redis_client, "box", limit=1, lease_ttl=30)
    args = [1, 30_000, "lease-1"]
    assert int(limits._ACQUIRE(redis_client, [limiter._key], args)) == 1
    # The same call again (its reply was lost, the client retried): before, the lease counted
    # against the cap of 1, the answer was "full" and the slot stayed taken by nobody for 30 s.
    assert int(limits._ACQUIRE(redis_client, [limiter._key], args)) == 1
    assert limiter.holders() == 1
    assert limiter.try_acquire() is None  # and no one else got in
