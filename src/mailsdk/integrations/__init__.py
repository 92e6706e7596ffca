"""Adapters to the frameworks that run mail at scale: Redis, Celery and Django.

Layer: L7 (integrations), a sibling of ``mailsdk.api`` and ``mailsdk.compat``. Each subpackage
needs its own extra and imports its framework only when imported itself:

* :mod:`mailsdk.integrations.redis` (extra ``redis``): cluster-wide rate limits, a connection
  semaphore with expiring leases and the delivery ledger, usable from any process.
* :mod:`mailsdk.integrations.celery` (extra ``celery``): one pool per worker process, tasks to
  send a message or a chunk of a batch, and a helper that fans a batch out over the workers.
* :mod:`mailsdk.integrations.django` (extra ``django``): an ``EMAIL_BACKEND``.

See docs/scaling-out.md.
"""

from __future__ import annotations

__all__: list[str] = []
