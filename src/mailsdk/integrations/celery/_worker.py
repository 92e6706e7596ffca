# pyright: reportMissingTypeStubs=false, reportUnknownMemberType=false
# pyright: reportUnknownVariableType=false, reportUnknownArgumentType=false
# (celery ships no type information: its objects are Unknown to a strict checker.)
"""Per-process state of a Celery worker and the two tasks that send through it.

Layer: L7 (integrations.celery, private). Imports ``celery``, ``opentelemetry`` (API only), the
Redis integration and the private delivery helpers.

Prefork workers fork their children after importing the app, and a socket or a Redis connection
must never cross a fork. So nothing is built at import: ``worker_process_init`` (in each child,
after the fork) builds the process state, the first task opens the connection, later tasks reuse
it, and ``worker_process_shutdown`` closes it. Other pools (solo, threads) build the state on
first use; a PID check rebuilds it if a process was forked behind our back.
"""

from __future__ import annotations

import logging
import os
import threading
import typing
from collections.abc import Mapping, Sequence

import celery
import celery.signals
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from mailsdk.integrations._deliver import deliver_chunk, is_retryable
from mailsdk.integrations._sessions import LeasedSession
from mailsdk.integrations._wire import JsonDict, decode_item
from mailsdk.integrations.celery._config import WorkerSettings, load_factory, settings_from

__all__ = [
    "MailTasks",
    "TRACE_HEADER",
    "install",
    "worker_state",
]

_log = logging.getLogger("mailsdk.integrations.celery")
_tracer = trace.get_tracer("mailsdk.integrations.celery")

#: The task header carrying the producer's W3C trace context.
TRACE_HEADER = "mailsdk_otel"


class _ProcessState:
    """What one worker process owns: the session, the limiters and the ledger."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.pid = os.getpid()
        self.settings = settings
        self.rate: typing.Any = None
        self.ledger: typing.Any = None
        limiter: typing.Any = None
        self._redis: typing.Any = None
        if settings.redis_url is not None:
            from mailsdk.integrations.redis import (
                DeliveryLedger,
                RedisConnectionLimiter,
                RedisRateLimiter,
                from_url,
            )

            self._redis = from_url(settings.redis_url)
            if settings.message_rates or settings.recipient_rates:
                self.rate = RedisRateLimiter(
                    self._redis,
                    settings.limits_name,
                    messages=settings.message_rates,
                    recipients=settings.recipient_rates,
                )
            if settings.max_connections:
                limiter = RedisConnectionLimiter(
                    self._redis,
                    settings.limits_name,
                    limit=settings.max_connections,
                    lease_ttl=settings.lease_ttl,
                )
            if settings.ledger:
                self.ledger = DeliveryLedger(
                    self._redis, settings.ledger, claim_ttl=settings.claim_ttl
                )
        self.sessions = LeasedSession(
            load_factory(settings.client), limiter, idle_timeout=settings.idle_timeout
        )
        self.lock = threading.Lock()

    def close(self) -> None:
        self.sessions.close()
        if self._redis is not None:
            self._redis.close()


_STATE: dict[str, _ProcessState] = {}
_STATE_LOCK = threading.Lock()


def worker_state(app: celery.Celery) -> _ProcessState:
    """This process's state for ``app`` (built on first use, rebuilt after a fork)."""
    with _STATE_LOCK:
        state = _STATE.get(app.main or "")
        if state is None or state.pid != os.getpid():
            state = _ProcessState(settings_from(app.conf))
            _STATE[app.main or ""] = state
        return state


def _close_all(**_kwargs: object) -> None:
    with _STATE_LOCK:
        states = [s for s in _STATE.values() if s.pid == os.getpid()]
        _STATE.clear()
    for state in states:
        try:
            state.close()
        except Exception:  # shutting down: log, never raise into Celery
            _log.exception("closing the mailsdk worker state failed")


def _trace_carrier(request: typing.Any) -> Mapping[str, str]:
    carrier = getattr(request, TRACE_HEADER, None)
    if carrier is None:
        headers = getattr(request, "headers", None) or {}
        carrier = headers.get(TRACE_HEADER) if isinstance(headers, Mapping) else None
    return carrier if isinstance(carrier, Mapping) else {}


class MailTasks(typing.NamedTuple):
    """The tasks :func:`install` registered on an app.

    Attributes:
        send_message: ``send_message(item)``: one encoded item; returns its JSON result.
        send_chunk: ``send_chunk(items)``: encoded items; returns ``{"results": [...]}``.
    """

    app: celery.Celery
    send_message: typing.Any
    send_chunk: typing.Any


def _run(task: typing.Any, items: Sequence[JsonDict], done: list[JsonDict]) -> list[JsonDict]:
    """Deliver ``items``, retrying the retryable ones through Celery; all results by index."""
    app = task.app
    state = worker_state(app)
    decoded = [decode_item(item) for item in items]
    indexes = [int(item.get("index", n)) for n, item in enumerate(items)]
    token = otel_context.attach(propagate.extract(_trace_carrier(task.request)))
    try:
        with _tracer.start_as_current_span(
            f"mailsdk.celery.{task.name.rsplit('.', 1)[-1]}", kind=trace.SpanKind.CONSUMER
        ) as span:
            span.set_attribute("mailsdk.celery.items", len(decoded))
            span.set_attribute("mailsdk.celery.retries", int(task.request.retries or 0))
            results = deliver_chunk(
                decoded,
                sessions=state.sessions,
                rate=state.rate,
                ledger=state.ledger,
                indexes=indexes,
            )
    finally:
        otel_context.detach(token)
    final = list(done)
    again: list[tuple[JsonDict, JsonDict]] = []
    for item, result in zip(items, results, strict=True):
        if is_retryable(result):
            again.append((item, result))
        else:
            final.append(result)
    retries = int(task.request.retries or 0)
    schedule = state.settings.retry
    if again and retries + 1 < schedule.attempts:
        raise task.retry(
            args=(),
            kwargs={
                "items": [{**item, "index": result["index"]} for item, result in again],
                "done": final,
            },
            countdown=schedule.delay(retries + 1),
            max_retries=schedule.attempts - 1,
        )
    final.extend(result for _item, result in again)
    return sorted(final, key=lambda r: int(r.get("index", 0)))


def install(app: celery.Celery, *, prefix: str = "mailsdk") -> MailTasks:
    """Register the mail tasks on ``app`` and tie the per-process state to the worker signals.

    Call it where the app is defined (the worker imports that module). The tasks run with
    ``acks_late`` and ``reject_on_worker_lost``: a task whose worker died is delivered again, and
    the ledger makes that safe.

    Args:
        app: the Celery app; its config holds the ``mailsdk_*`` settings.
        prefix: the task names' prefix (``<prefix>.send_message``, ``<prefix>.send_chunk``).
    """

    def send_chunk(
        self: typing.Any, items: list[JsonDict] | None = None, done: list[JsonDict] | None = None
    ) -> JsonDict:
        """Send a chunk of encoded items; ``{"results": [...]}`` in item order."""
        return {"results": _run(self, list(items or []), list(done or []))}

    def send_message(
        self: typing.Any, item: JsonDict | None = None, **kwargs: typing.Any
    ) -> JsonDict:
        """Send one encoded item; its JSON result."""
        # Celery hands over decoded JSON; _run checks every item (a None one included).
        items = typing.cast("list[JsonDict]", kwargs.get("items") or [item])
        return _run(self, items, list(kwargs.get("done") or []))[0]

    options = {"bind": True, "acks_late": True, "reject_on_worker_lost": True}
    chunk_task = app.task(name=f"{prefix}.send_chunk", **options)(send_chunk)
    message_task = app.task(name=f"{prefix}.send_message", **options)(send_message)

    def on_process_init(**_kwargs: object) -> None:
        worker_state(app)  # after the fork: settings read, client built, nothing connected

    celery.signals.worker_process_init.connect(on_process_init, weak=False)
    celery.signals.worker_process_shutdown.connect(_close_all, weak=False)
    return MailTasks(app, message_task, chunk_task)
