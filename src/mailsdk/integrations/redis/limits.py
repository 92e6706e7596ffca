"""Cluster-wide limits in Redis: a token bucket and a connection semaphore with leases.

Layer: L7 (integrations.redis). Imports ``redis`` (the extra) and L0.

They implement the batch engine's ``RateLimiter`` / ``ConnectionLimiter`` protocols (and the
``Async`` variants) structurally, so every process sharing one account, whether Celery workers
or plain scripts, shares one budget:

* :class:`RedisRateLimiter`: messages and recipients per second/minute/hour, each with a burst.
  One ``EVALSHA`` per reservation takes the tokens from every bucket atomically and returns how
  long the caller must wait; the clock is Redis ``TIME``, never the workers'.
* :class:`RedisConnectionLimiter`: at most N concurrent connections. A lease is a member of a
  sorted set scored by its expiry; a worker that dies stops renewing and its lease lapses after
  ``lease_ttl`` seconds, so a crash never leaks a slot for good.
"""

from __future__ import annotations

import math
import typing
import uuid
from collections.abc import Sequence

import attrs
import redis
import redis.asyncio

from mailsdk.errors import ConfigurationError, InvalidInputError
from mailsdk.integrations.redis import _scripts
from mailsdk.integrations.redis._connection import Script, run

__all__ = [
    "AsyncRedisConnectionLimiter",
    "AsyncRedisRateLimiter",
    "Rate",
    "RedisConnectionLimiter",
    "RedisRateLimiter",
]

_BUCKET = Script(_scripts.RATE_RESERVE)
_ACQUIRE = Script(_scripts.SEMAPHORE_ACQUIRE)
_RENEW = Script(_scripts.SEMAPHORE_RENEW)
_RELEASE = Script(_scripts.SEMAPHORE_RELEASE)


def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ConfigurationError(f"Rate.{attribute.name} must be a positive number, not {value!r}")


@attrs.frozen
class Rate:
    """``count`` tokens per ``per`` seconds, with a bucket of ``burst`` tokens.

    Attributes:
        count: tokens added per period.
        per: the period in seconds (1 = per second, 60 = per minute, 3600 = per hour).
        burst: the bucket size: how many may go at once after an idle spell (default ``count``).
    """

    count: float = attrs.field(validator=_positive)
    per: float = attrs.field(default=1.0, validator=_positive)
    burst: float | None = attrs.field(default=None)

    def __attrs_post_init__(self) -> None:
        if self.burst is not None:
            _positive(self, attrs.fields(Rate).burst, self.burst)  # type: ignore[arg-type]

    @classmethod
    def per_second(cls, count: float, *, burst: float | None = None) -> Rate:
        """``count`` per second."""
        return cls(count, 1.0, burst)

    @classmethod
    def per_minute(cls, count: float, *, burst: float | None = None) -> Rate:
        """``count`` per minute."""
        return cls(count, 60.0, burst)

    @classmethod
    def per_hour(cls, count: float, *, burst: float | None = None) -> Rate:
        """``count`` per hour."""
        return cls(count, 3600.0, burst)

    @property
    def capacity(self) -> float:
        """The bucket size in tokens."""
        return self.burst if self.burst is not None else self.count

    @property
    def tokens_per_second(self) -> float:
        """The refill rate."""
        return self.count / self.per


def _check_name(name: str) -> str:
    if not name or any(c.isspace() for c in name):
        raise ConfigurationError(f"limiter name must be a non-empty word, not {name!r}")
    return name


class _BucketPlan:
    """The keys and per-bucket arguments of one limiter (shared by the sync and async sides)."""

    def __init__(
        self, name: str, messages: Sequence[Rate], recipients: Sequence[Rate], prefix: str
    ) -> None:
        if not messages and not recipients:
            raise ConfigurationError("a rate limiter needs at least one message or recipient Rate")
        base = f"{prefix}:rate:{{{_check_name(name)}}}"
        self.penalty_key = f"{base}:penalty"
        self.buckets = [(f"{base}:m:{r.per:g}", r, "m") for r in messages]
        self.buckets += [(f"{base}:r:{r.per:g}", r, "r") for r in recipients]
        if len({k for k, _r, _d in self.buckets}) != len(self.buckets):
            raise ConfigurationError("two Rates of one kind share a period; merge them")

    def keys(self) -> list[str]:
        return [self.penalty_key, *(k for k, _r, _d in self.buckets)]

    @staticmethod
    def wait(wait_us: object, messages: int, recipients: int) -> float:
        """The script's answer in seconds; -1 (nothing taken) raises."""
        value = int(typing.cast(int, wait_us))
        if value < 0:
            days = _scripts.RATE_MAX_WAIT // 86400
            raise InvalidInputError(
                f"reserving {messages} message(s) and {recipients} recipient(s) would wait more "
                f"than {days} days: larger than this budget can pay (nothing was taken)"
            )
        return value / 1_000_000

    def args(self, messages: int, recipients: int, penalty_us: int = 0) -> list[str | int | float]:
        if messages < 0 or recipients < 0:
            raise ConfigurationError("messages and recipients must not be negative")
        out: list[str | int | float] = [penalty_us]
        for _key, rate, kind in self.buckets:
            cost = messages if kind == "m" else recipients
            out += [repr(rate.tokens_per_second), repr(rate.capacity), cost]
        return out


def _penalty_us(seconds: float) -> int:
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigurationError(f"penalty must be a finite number of seconds >= 0, not {seconds}")
    return max(1, math.ceil(seconds * 1_000_000))


class RedisRateLimiter:
    """A token bucket shared through Redis (``RateLimiter`` protocol of the batch engine).

    Args:
        client: a ``redis.Redis`` client (give it socket timeouts: see ``from_url``).
        name: the budget's name: every limiter with the same name and prefix shares it.
        messages: message Rates (e.g. ``[Rate.per_second(10), Rate.per_hour(10_000)]``).
        recipients: recipient Rates.
        prefix: the key prefix.

    Raises:
        ConfigurationError: no Rate, or two Rates of one kind with the same period.
    """

    #: Every process using the same name shares the budget, so ``send_batch(processes=N)``
    #: gives this limiter to each worker as it is (rather than refusing it).
    shared_across_processes: typing.ClassVar[bool] = True

    def __init__(
        self,
        client: redis.Redis,
        name: str,
        *,
        messages: Sequence[Rate] = (),
        recipients: Sequence[Rate] = (),
        prefix: str = "mailsdk",
    ) -> None:
        self._client = client
        self._plan = _BucketPlan(name, messages, recipients, prefix)

    def __repr__(self) -> str:
        return f"<RedisRateLimiter {self._plan.penalty_key.rsplit(':', 1)[0]!r}>"

    def reserve(self, *, messages: int = 1, recipients: int = 0) -> float:
        """Take the tokens for one send now; return the seconds to wait before sending it.

        Never blocks (one round trip). Raises ``CoordinationUnavailable`` when Redis fails.
        """
        args = self._plan.args(messages, recipients)
        wait_us = _BUCKET(self._client, self._plan.keys(), args)
        return self._plan.wait(wait_us, messages, recipients)

    def penalize(self, seconds: float) -> None:
        """No send through this budget for ``seconds`` from now (server-signalled throttling)."""
        _BUCKET(self._client, self._plan.keys(), self._plan.args(0, 0, _penalty_us(seconds)))


class AsyncRedisRateLimiter:
    """:class:`RedisRateLimiter` for ``redis.asyncio`` clients (``AsyncRateLimiter``)."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        name: str,
        *,
        messages: Sequence[Rate] = (),
        recipients: Sequence[Rate] = (),
        prefix: str = "mailsdk",
    ) -> None:
        self._client = client
        self._plan = _BucketPlan(name, messages, recipients, prefix)

    async def reserve(self, *, messages: int = 1, recipients: int = 0) -> float:
        """See :meth:`RedisRateLimiter.reserve`."""
        args = self._plan.args(messages, recipients)
        wait_us = await _BUCKET.acall(self._client, self._plan.keys(), args)
        return self._plan.wait(wait_us, messages, recipients)

    async def penalize(self, seconds: float) -> None:
        """See :meth:`RedisRateLimiter.penalize`."""
        args = self._plan.args(0, 0, _penalty_us(seconds))
        await _BUCKET.acall(self._client, self._plan.keys(), args)


def _semaphore_key(name: str, prefix: str) -> str:
    return f"{prefix}:conn:{{{_check_name(name)}}}"


def _check_limit(limit: int, lease_ttl: float) -> int:
    if isinstance(limit, bool) or limit < 1:
        raise ConfigurationError(f"connection limit must be an int >= 1, not {limit!r}")
    if not math.isfinite(lease_ttl) or lease_ttl < 0.1:
        raise ConfigurationError(f"lease_ttl must be >= 0.1 seconds, not {lease_ttl!r}")
    return max(100, math.ceil(lease_ttl * 1000))


class RedisConnectionLimiter:
    """At most ``limit`` concurrent connections across processes (``ConnectionLimiter``).

    Args:
        client: a ``redis.Redis`` client.
        name: the budget's name (e.g. the mailbox or account).
        limit: the maximum number of live leases.
        lease_ttl: seconds a lease lives without :meth:`renew` (a dead holder's slot frees then).
        prefix: the key prefix.
    """

    def __init__(
        self,
        client: redis.Redis,
        name: str,
        *,
        limit: int,
        lease_ttl: float = 30.0,
        prefix: str = "mailsdk",
    ) -> None:
        self._ttl_ms = _check_limit(limit, lease_ttl)
        self._client = client
        self._key = _semaphore_key(name, prefix)
        self.limit = limit
        self.lease_ttl = lease_ttl

    def __repr__(self) -> str:
        return f"<RedisConnectionLimiter {self._key!r} limit={self.limit}>"

    def try_acquire(self) -> str | None:
        """A new lease id, or ``None`` when ``limit`` leases are alive. Never blocks."""
        lease = uuid.uuid4().hex
        got = _ACQUIRE(self._client, [self._key], [self.limit, self._ttl_ms, lease])
        return lease if int(got) == 1 else None

    def renew(self, lease: str) -> bool:
        """Extend ``lease`` by ``lease_ttl``; ``False`` if it had expired (stop using it)."""
        return int(_RENEW(self._client, [self._key], [self._ttl_ms, lease])) == 1

    def release(self, lease: str) -> None:
        """Give the slot back (idempotent)."""
        _RELEASE(self._client, [self._key], [lease])

    def holders(self) -> int:
        """How many leases are alive now (for monitoring and tests)."""
        _RENEW(self._client, [self._key], [self._ttl_ms, ""])  # prunes the expired ones
        return int(run(self._client, lambda: self._client.zcard(self._key)))


class AsyncRedisConnectionLimiter:
    """:class:`RedisConnectionLimiter` for ``redis.asyncio`` clients."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        name: str,
        *,
        limit: int,
        lease_ttl: float = 30.0,
        prefix: str = "mailsdk",
    ) -> None:
        self._ttl_ms = _check_limit(limit, lease_ttl)
        self._client = client
        self._key = _semaphore_key(name, prefix)
        self.limit = limit
        self.lease_ttl = lease_ttl

    async def try_acquire(self) -> str | None:
        """See :meth:`RedisConnectionLimiter.try_acquire`."""
        lease = uuid.uuid4().hex
        got = await _ACQUIRE.acall(self._client, [self._key], [self.limit, self._ttl_ms, lease])
        return lease if int(got) == 1 else None

    async def renew(self, lease: str) -> bool:
        """See :meth:`RedisConnectionLimiter.renew`."""
        return int(await _RENEW.acall(self._client, [self._key], [self._ttl_ms, lease])) == 1

    async def release(self, lease: str) -> None:
        """See :meth:`RedisConnectionLimiter.release`."""
        await _RELEASE.acall(self._client, [self._key], [lease])


if typing.TYPE_CHECKING:  # mypy checks that the limiters fit the batch engine's protocols
    from mailsdk.batch import limits as _protocols

    _RATE: type[_protocols.RateLimiter] = RedisRateLimiter
    _ASYNC_RATE: type[_protocols.AsyncRateLimiter] = AsyncRedisRateLimiter
    _CAP: type[_protocols.ConnectionLimiter] = RedisConnectionLimiter
    _ASYNC_CAP: type[_protocols.AsyncConnectionLimiter] = AsyncRedisConnectionLimiter
