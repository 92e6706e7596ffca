# pyright: reportMissingTypeStubs=false, reportUnknownMemberType=false
# pyright: reportUnknownVariableType=false, reportUnknownArgumentType=false
# (celery ships no type information: its objects are Unknown to a strict checker.)
"""Per-process state of a Celery worker and the two tasks that send through it.

Layer: L7 (integrations.celery, private). Imports ``celery``, ``opentelemetry`` (API only), the
Redis integration and the private delivery helpers.

Prefork workers fork their children after importing the app, and a socket or a Redis connection
must never cross a fork. So nothing is built at import: ``worker_process_init`` (in each child,
after the fork) builds the process state, the first task creates the process's
:class:`~mailsdk.pool.Pool` (``mailsdk_pool_size`` connections, under the cluster-wide
connection cap, its leases kept alive by a :class:`LeaseKeeper`), later tasks reuse its
connections, and ``worker_process_shutdown`` closes it. Other pools (solo, threads) build the
state on first use and close it on ``worker_shutdown``; a PID check rebuilds it if a process
was forked behind our back.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import typing
from collections.abc import Mapping, Sequence

import celery
import celery.signals
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from mailsdk.batch import ConnectionLimiter, RateLimiter
from mailsdk.errors import MailError
from mailsdk.flows import DeliveryStatus
from mailsdk.integrations._deliver import deliver_chunk, is_retryable
from mailsdk.integrations._leases import LeaseKeeper
from mailsdk.integrations._wire import JsonDict, decode_item
from mailsdk.integrations.celery._config import WorkerSettings, settings_from

if typing.TYPE_CHECKING:
    from mailsdk.integrations.redis import DeliveryLedger
    from mailsdk.pool import Pool

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
    """What one worker process owns: its pool, the shared limiters and the ledger.

    Built after the fork (settings read, Redis clients made: they connect on first use); the
    pool itself is created by the first task that needs it, so a process that never sends
    never connects.
    """

    def __init__(self, settings: WorkerSettings) -> None:
        self.pid = os.getpid()
        self.settings = settings
        # Typed as the batch engine's protocols: mypy checks that the Redis limiters fit them.
        self.rate: RateLimiter | None = None
        self.ledger: DeliveryLedger | None = None
        self.leases: LeaseKeeper | None = None
        self._redis: typing.Any = None
        self._factory = settings.client_factory()
        self._pool: Pool | None = None
        self._lock = threading.Lock()
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
                cap: ConnectionLimiter = RedisConnectionLimiter(
                    self._redis,
                    settings.limits_name,
                    limit=settings.max_connections,
                    lease_ttl=settings.lease_ttl,
                )
                self.leases = LeaseKeeper(cap)
            if settings.ledger:
                self.ledger = DeliveryLedger(
                    self._redis, settings.ledger, claim_ttl=settings.claim_ttl
                )

    @property
    def pool(self) -> Pool:
        """This process's pool (created on first use, after the fork)."""
        with self._lock:
            if self._pool is None or self._pool.closed:
                self._pool = self._factory().pool(
                    max_connections=self.settings.pool_size,
                    idle_timeout=self.settings.idle_timeout,
                    connection_limiter=self.leases,
                )
            return self._pool

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        try:
            if pool is not None:
                pool.close()  # QUIT and release the leases of the idle connections
        finally:
            if self.leases is not None:
                self.leases.close()
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


def _not_built(key: str, index: int, exc: Exception) -> JsonDict:
    """The result of an item whose worker could not build its client (a configuration error:
    FAILED, never sent, not retried; without it the chunk task failed and its items came back
    UNKNOWN, as if they might have gone out)."""
    shown = str(exc) if isinstance(exc, MailError) else type(exc).__name__
    return {
        "index": index,
        "key": key,
        "status": DeliveryStatus.FAILED.value,
        "retryable": False,
        "attempts": 0,
        "reason": "the worker could not build its mailsdk client",
        # A mailsdk error's text is safe to pass on; a foreign one's might quote a secret.
        "error": {"type": type(exc).__name__, "message": f"the client factory failed: {shown}"},
    }


def _run(
    task: typing.Any, items: Sequence[JsonDict], done: list[JsonDict], started: float | None
) -> list[JsonDict]:
    """Deliver ``items``, retrying the retryable ones through Celery with the settings'
    :class:`~mailsdk.batch.RetryPolicy` (its backoff and jitter between task runs, its
    ``attempts`` and ``max_elapsed`` as the bounds); all results by index."""
    started = time.time() if started is None else float(started)
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
            try:
                pool = state.pool
            except Exception as exc:  # the client factory failed: nothing claimed, none sent
                _log.error("the mailsdk client could not be built: %s", type(exc).__name__)
                results = [
                    _not_built(item.key, index, exc)
                    for item, index in zip(decoded, indexes, strict=True)
                ]
            else:
                results = deliver_chunk(
                    decoded,
                    pool=pool,
                    rate=state.rate,
                    ledger=state.ledger,
                    retry=state.settings.retry,
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
    policy = state.settings.retry
    delay = policy.delay(retries + 1)
    # A message another worker holds is looked at again once that claim would lapse: a dead
    # worker's claims (claim_ttl, minutes) outlast the backoff (seconds), and retrying before
    # they lapse only spends the attempts and ends the message FAILED, never sent.
    # (Plus a second: the claim's clock is Redis's, the countdown's this host's.)
    lapses = [float(r["retry_after"]) + 1.0 for _i, r in again if r.get("retry_after")]
    delay = max([delay, *lapses])
    elapsed = time.time() - started
    in_time = policy.max_elapsed is None or elapsed + delay <= policy.max_elapsed
    if again and retries + 1 < policy.attempts and in_time:
        raise task.retry(
            args=(),
            kwargs={
                "items": [{**item, "index": result["index"]} for item, result in again],
                "done": final,
                "started": started,
            },
            countdown=delay,
            max_retries=policy.attempts - 1,
        )
    final.extend(result for _item, result in again)
    return sorted(final, key=lambda r: int(r.get("index", 0)))


def _summary(value: object, noun: str) -> str:
    count = len(value) if isinstance(value, list | tuple) else int(value is not None)
    return f"<{count} {noun}>"


class _QuietTask(celery.Task):  # type: ignore[misc]  # celery ships no type hints
    """A task whose published messages describe their arguments instead of showing them.

    Celery puts a repr of the arguments into every task message (``argsrepr``/``kwargsrepr``),
    which ``celery events``, Flower and the worker log display: here that would be whole
    messages and their addresses. Retries publish through :meth:`apply_async` too.
    """

    def apply_async(  # pyright: ignore[reportIncompatibleMethodOverride]  # celery passes keywords
        self,
        args: typing.Any = None,
        kwargs: typing.Any = None,
        *more: typing.Any,
        **options: typing.Any,
    ) -> typing.Any:
        given = dict(kwargs or {})
        shown = {
            name: _summary(given[name], noun)
            for name, noun in (("item", "message"), ("items", "messages"), ("done", "results"))
            if name in given
        }
        options.setdefault("argsrepr", f"<{len(args or ())} arguments>")
        options.setdefault("kwargsrepr", repr(shown))
        return super().apply_async(args, kwargs, *more, **options)


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
        self: typing.Any,
        items: list[JsonDict] | None = None,
        done: list[JsonDict] | None = None,
        started: float | None = None,
    ) -> JsonDict:
        """Send a chunk of encoded items; ``{"results": [...]}`` in item order."""
        return {"results": _run(self, list(items or []), list(done or []), started)}

    def send_message(
        self: typing.Any, item: JsonDict | None = None, **kwargs: typing.Any
    ) -> JsonDict:
        """Send one encoded item; its JSON result."""
        # Celery hands over decoded JSON; _run checks every item (a None one included).
        items = typing.cast("list[JsonDict]", kwargs.get("items") or [item])
        return _run(self, items, list(kwargs.get("done") or []), kwargs.get("started"))[0]

    options = {"bind": True, "acks_late": True, "reject_on_worker_lost": True, "base": _QuietTask}
    chunk_task = app.task(name=f"{prefix}.send_chunk", **options)(send_chunk)
    message_task = app.task(name=f"{prefix}.send_message", **options)(send_message)

    def on_process_init(**_kwargs: object) -> None:
        worker_state(app)  # after the fork: settings read, client built, nothing connected

    celery.signals.worker_process_init.connect(on_process_init, weak=False)
    celery.signals.worker_process_shutdown.connect(_close_all, weak=False)  # prefork children
    # solo, threads, gevent/eventlet: the tasks ran in the worker's own process, which only
    # sends worker_shutdown (in a prefork parent it finds no state of its own: a no-op).
    celery.signals.worker_shutdown.connect(_close_all, weak=False)
    return MailTasks(app, message_task, chunk_task)
