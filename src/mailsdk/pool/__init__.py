"""Connection pools and batch delivery: :class:`Pool` and :class:`AsyncPool`.

Layer: L5c (pool). Builds on the clients (``mailsdk.client``) and the batch planning of
``mailsdk.batch``. Create pools with :meth:`mailsdk.Client.pool` / :meth:`mailsdk.AsyncClient.pool`.
"""

from __future__ import annotations

from mailsdk.pool._async_batch import AsyncBatchRun
from mailsdk.pool._process_batch import ProcessBatchRun
from mailsdk.pool._sync_batch import BatchRun
from mailsdk.pool.async_pool import AsyncPool
from mailsdk.pool.sync_pool import Pool

__all__ = ["AsyncBatchRun", "AsyncPool", "BatchRun", "Pool", "ProcessBatchRun"]
