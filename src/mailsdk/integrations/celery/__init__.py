"""Celery integration (extra ``celery``): one pool per worker process, shared limits and the
delivery ledger, tasks to send a message or a chunk, and a batch fan-out into a ``BatchReport``.

Layer: L7 (integrations). Needs ``celery`` with the Redis transport
(``pip install mailsdk[celery]``)::

    from celery import Celery
    from mailsdk.integrations.celery import install, send_batch
    from mailsdk.batch import RetryPolicy
    from mailsdk.integrations.redis import Rate

    app = Celery("mail", broker="redis://...", backend="redis://...")
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        mailsdk_client="myproject.mail:build_client",
        mailsdk_message_rates=[Rate.per_second(10)],
        mailsdk_max_connections=4,
        mailsdk_retry=RetryPolicy(attempts=5, backoff=2.0),
    )
    tasks = install(app)

    report = send_batch(tasks, outgoing_items, chunk_size=100)   # a mailsdk.batch.BatchReport
    print(report.summary(), report.counts)

See docs/scaling-out.md for the settings that matter.
"""

from __future__ import annotations

from mailsdk.integrations.celery._config import WorkerSettings, settings_from
from mailsdk.integrations.celery._worker import TRACE_HEADER, MailTasks, install
from mailsdk.integrations.celery.fanout import send_batch

__all__ = [
    "MailTasks",
    "TRACE_HEADER",
    "WorkerSettings",
    "install",
    "send_batch",
    "settings_from",
]
