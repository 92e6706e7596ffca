# pyright: reportMissingTypeStubs=false, reportUnknownMemberType=false
# pyright: reportUnknownVariableType=false, reportUnknownArgumentType=false
# (celery ships no type information: its objects are Unknown to a strict checker.)
"""Fan a batch out into chunk tasks and gather one :class:`~mailsdk.batch.BatchReport`.

Layer: L7 (integrations.celery). Imports ``celery``, ``opentelemetry`` (API) and the private
integration helpers.

The producer encodes every message once (explicit envelope, ledger key), splits the batch into
chunks, publishes one ``send_chunk`` task per chunk with the current trace context in a header,
and waits for all of them. Every input item appears in the report exactly once, as a
:class:`~mailsdk.SendOutcome` rebuilt from the worker's JSON result (status, final reply, queue
id, accepted and refused recipients, error): a duplicate the ledger refused to resend keeps the
ledger's status with ``attempts == 0``; an item parked as UNKNOWN is UNKNOWN (see
``DeliveryLedger.unknown()``); an item deferred until the retries ran out is FAILED (never
sent), or UNKNOWN when another live worker held it; an item whose chunk task failed as a
whole (or timed out) takes the ledger's word when a ledger is given and the ledger has a final
state for it, and is UNKNOWN otherwise (its task may still run, or run again: it is never
reported as not sent).
"""

from __future__ import annotations

import contextlib
import time
import typing
from collections.abc import Iterable, Sequence

import celery
from opentelemetry import propagate

from mailsdk.batch import BatchReport
from mailsdk.errors import InvalidInputError, MailError
from mailsdk.flows import Outgoing
from mailsdk.integrations._wire import JsonDict, encode_item, outcome_from_json
from mailsdk.integrations.celery._worker import TRACE_HEADER, MailTasks

if typing.TYPE_CHECKING:
    from mailsdk.integrations.redis import DeliveryLedger

__all__ = ["send_batch"]


def _chunks(items: Sequence[JsonDict], size: int) -> list[list[JsonDict]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def send_batch(
    tasks: MailTasks,
    items: Iterable[Outgoing],
    *,
    chunk_size: int = 100,
    timeout: float | None = 3600.0,
    queue: str | None = None,
    ledger: DeliveryLedger | None = None,
) -> BatchReport:
    """Send ``items`` through the workers in chunks and wait for every chunk.

    Returns:
        The :class:`~mailsdk.batch.BatchReport`: one outcome per item, in input order (the
        latencies are each chunk's time from publication to its result).

    Args:
        tasks: what :func:`~mailsdk.integrations.celery.install` returned.
        items: the messages (each needs a key or a Message-ID: the ledger keys by it).
        chunk_size: items per task.
        timeout: seconds to wait for all chunks (``None``: forever).
        queue: the Celery queue to publish to (default: the task's).
        ledger: the workers' ledger; when a chunk's result is lost (its task failed as a whole),
            each of its items is reported with what the ledger knows about it.

    Raises:
        InvalidInputError: an item cannot be encoded (nothing was published).
    """
    if chunk_size < 1:
        raise InvalidInputError("chunk_size must be >= 1")
    encoded = []
    for index, item in enumerate(items):
        payload = encode_item(item)
        payload["index"] = index
        encoded.append(payload)
    keys = [p["key"] for p in encoded]
    if len(set(keys)) != len(keys):
        raise InvalidInputError("two items of one batch share a key; the ledger would skip one")
    started = time.monotonic()
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    options: dict[str, typing.Any] = {"headers": {TRACE_HEADER: carrier}}
    if queue is not None:
        options["queue"] = queue
    pending = [
        tasks.send_chunk.apply_async(kwargs={"items": chunk}, **options)
        for chunk in _chunks(encoded, chunk_size)
    ]
    deadline = None if timeout is None else time.monotonic() + timeout
    by_index: dict[int, JsonDict] = {}
    latencies: dict[int, float] = {}
    for chunk, handle in zip(_chunks(encoded, chunk_size), pending, strict=True):
        try:
            answer = _get(handle, deadline)
            for result in answer["results"]:
                by_index[int(result["index"])] = result
        except Exception as exc:  # the chunk as a whole: report it, item by item
            for payload in chunk:
                by_index.setdefault(int(payload["index"]), _lost(payload, exc, ledger))
        finally:
            if _has_backend(tasks.app):
                with contextlib.suppress(Exception):
                    handle.forget()
        now = time.monotonic() - started
        for payload in chunk:
            latencies[int(payload["index"])] = now
    outcomes = []
    for index in sorted(by_index):
        if 0 <= index < len(encoded):
            outcomes.append(outcome_from_json(by_index[index], sender=encoded[index]["sender"]))
    return BatchReport(
        outcomes=tuple(outcomes), latencies=latencies, elapsed=time.monotonic() - started
    )


def _transient_backend_error(exc: Exception) -> bool:
    import kombu.exceptions
    import redis.exceptions

    connection_errors = (
        OSError,
        kombu.exceptions.OperationalError,
        redis.exceptions.ConnectionError,
    )
    return isinstance(exc, connection_errors)


def _get(handle: typing.Any, deadline: float | None) -> JsonDict:
    """Wait for one chunk's result, riding out a result backend that restarts meanwhile."""
    while True:
        left = None if deadline is None else max(0.1, deadline - time.monotonic())
        try:
            answer = handle.get(timeout=left, propagate=True, disable_sync_subtasks=False)
        except Exception as exc:
            if not _transient_backend_error(exc):
                raise
            if deadline is not None and time.monotonic() >= deadline:
                raise
            time.sleep(0.5)
            continue
        if not isinstance(answer, dict) or not isinstance(answer.get("results"), list):
            raise InvalidInputError("a chunk task returned something that is not its results")
        return answer


def _lost(payload: JsonDict, exc: Exception, ledger: DeliveryLedger | None) -> JsonDict:
    """The result of an item whose chunk task failed as a whole: the ledger's word, if any."""
    result: JsonDict = {
        "index": payload["index"],
        "key": payload["key"],
        "status": "lost",
        "error": {"type": type(exc).__name__, "message": f"the chunk task failed: {exc}"},
    }
    if ledger is not None:
        try:
            entry = ledger.get(str(payload["key"]))
        except MailError:
            entry = None
        state = entry.state.value if entry is not None else None
        if state in ("accepted", "partial", "refused", "unknown"):
            result["status"] = result["ledger"] = state
            if state != "unknown" and entry is not None and entry.detail:
                result.update({k: v for k, v in entry.detail.items() if k not in ("index", "key")})
                result["status"] = state
        else:
            # Not sent *yet*, perhaps: the task may still be running (a timeout) or be
            # delivered again, so "lost" (UNKNOWN in the report), never "not sent".
            result["ledger"] = state
    return result


def _has_backend(app: celery.Celery) -> bool:
    return bool(app.conf.get("result_backend"))
