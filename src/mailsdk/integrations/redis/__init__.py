"""Cluster-wide limits and the delivery ledger in Redis (extra ``redis``).

Layer: L7 (integrations). Needs ``redis`` (``pip install mailsdk[redis]``); usable from any
process, with or without Celery::

    import redis
    from mailsdk.integrations.redis import DeliveryLedger, Rate, RedisRateLimiter

    r = redis.Redis.from_url(url, socket_timeout=5)
    rate = RedisRateLimiter(r, "office365", messages=[Rate.per_minute(30)])
    ledger = DeliveryLedger(r, "newsletters")

See docs/scaling-out.md.
"""

from __future__ import annotations

from mailsdk.integrations.redis._connection import CoordinationUnavailable, from_url
from mailsdk.integrations.redis.ledger import Claim, DeliveryLedger, LedgerEntry, LedgerState
from mailsdk.integrations.redis.limits import (
    AsyncRedisConnectionLimiter,
    AsyncRedisRateLimiter,
    Rate,
    RedisConnectionLimiter,
    RedisRateLimiter,
)

__all__ = [
    "AsyncRedisConnectionLimiter",
    "AsyncRedisRateLimiter",
    "Claim",
    "CoordinationUnavailable",
    "DeliveryLedger",
    "LedgerEntry",
    "LedgerState",
    "Rate",
    "RedisConnectionLimiter",
    "RedisRateLimiter",
    "from_url",
]
