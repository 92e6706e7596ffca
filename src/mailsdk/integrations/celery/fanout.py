# pyright: reportMissingTypeStubs=false, reportUnknownMemberType=false
# pyright: reportUnknownVariableType=false, reportUnknownArgumentType=false
# (celery ships no type information: its objects are Unknown to a strict checker.)
"""Fan a batch out into chunk tasks and gather one report.

Layer: L7 (integrations.celery). Imports ``celery``, ``opentelemetry`` (API) and the private
integration helpers.

The producer encodes every message once (explicit envelope, ledger key), splits the batch into
chunks, publishes one ``send_chunk`` task per chunk with the current trace context in a header,
and waits for all of them. Every input item appears in the report exactly once: with its
outcome, as a duplicate the ledger refused to resend, as UNKNOWN (parked for review), or as
*lost track of* when its chunk task itself failed (the error says why; the ledger still knows
what was sent).
"""

from __future__ import annotations

import collections
import contextlib
import time
import typing
from collections.abc import Iterable, Mapping, Sequence

import attrs
import celery
from opentelemetry import propagate

from mailsdk.errors import InvalidInputError, MailError
from mailsdk.flows import Outgoing
from mailsdk.integrations._wire import JsonDict, encode_item
from mailsdk.integrations.celery._worker import TRACE_HEADER, MailTasks

if typing.TYPE_CHECKING:
    from mailsdk.integrations.redis import DeliveryLedger

__all__ = ["ClusterReport", "send_batch"]


@attrs.frozen
class ClusterReport:
    """What a fanned-out batch did, one JSON-safe result per input item, in input order.

    Attributes:
        results: one dict per item (``status``, ``reply``, ``queue_id``, ``accepted``,
            ``refused``, ``error``, ``ledger``, ``attempts``...).
        chunk_errors: the errors of chunk tasks that failed as a whole (type and message).
    """

    results: Sequence[JsonDict]
    chunk_errors: Sequence[str] = ()

    @property
    def counts(self) -> Mapping[str, int]:
        """How many items ended in each status."""
        return dict(collections.Counter(str(r.get("status")) for r in self.results))

    @property
    def unknown(self) -> list[str]:
        """Keys of the items whose delivery is UNKNOWN (review them: see the ledger)."""
        return [str(r.get("key")) for r in self.results if r.get("status") == "unknown"]

    @property
    def delivered(self) -> int:
        """How many items the server confirmed (accepted or partial), duplicates included."""
        return sum(1 for r in self.results if r.get("status") in ("accepted", "partial"))

    @property
    def ok(self) -> bool:
        """True when every item was accepted (now or by an earlier delivery)."""
        return all(r.get("status") == "accepted" for r in self.results)


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
) -> ClusterReport:
    """Send ``items`` through the workers in chunks and wait for every chunk.

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
    errors: list[str] = []
    for chunk, handle in zip(_chunks(encoded, chunk_size), pending, strict=True):
        try:
            answer = _get(handle, deadline)
            for result in answer["results"]:
                by_index[int(result["index"])] = result
        except Exception as exc:  # the chunk as a whole: report it, item by item
            errors.append(f"{type(exc).__name__}: {exc}")
            for payload in chunk:
                by_index.setdefault(int(payload["index"]), _lost(payload, exc, ledger))
        finally:
            if _has_backend(tasks.app):
                with contextlib.suppress(Exception):
                    handle.forget()
    return ClusterReport([by_index[i] for i in sorted(by_index)], tuple(errors))


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
    result: JsonDict = {
        "index": payload["index"],
        "key": payload["key"],
        "status": "lost",
        "error": {"type": type(exc).__name__, "message": str(exc)},
    }
    if ledger is not None:
        try:
            entry = ledger.get(str(payload["key"]))
        except MailError:
            entry = None
        if entry is not None and entry.state.value in ("accepted", "partial", "refused", "unknown"):
            result["status"] = entry.state.value
            result["ledger"] = entry.state.value
    return result


def _has_backend(app: celery.Celery) -> bool:
    return bool(app.conf.get("result_backend"))
