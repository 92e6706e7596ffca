"""Batch delivery building blocks: rate limits, retry policy, progress and reports.

Layer: L5b (batch). Pure planning and accounting used by the pools of :mod:`mailsdk.pool`
(which run the batches: ``pool.send_batch(...)``); imports ``mailsdk.client`` and below only.
"""

from __future__ import annotations

from mailsdk.batch.bucket import TokenBucket
from mailsdk.batch.limits import (
    AsyncConnectionLimiter,
    AsyncRateLimiter,
    ConnectionLimiter,
    LocalConnectionLimiter,
    RateLimiter,
)
from mailsdk.batch.report import BatchReport, Progress
from mailsdk.batch.retry import RetryDecision, RetryPolicy, never_started, plan_retry

__all__ = [
    "AsyncConnectionLimiter",
    "AsyncRateLimiter",
    "BatchReport",
    "ConnectionLimiter",
    "LocalConnectionLimiter",
    "Progress",
    "RateLimiter",
    "RetryDecision",
    "RetryPolicy",
    "TokenBucket",
    "never_started",
    "plan_retry",
]
