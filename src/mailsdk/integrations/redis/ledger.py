# pyright: reportMissingTypeStubs=false, reportUnknownMemberType=false
# pyright: reportUnknownVariableType=false, reportUnknownArgumentType=false
# (redis ships no type information: its objects are Unknown to a strict checker.)
"""The delivery ledger: which message was sent, by whom, with what outcome, in Redis.

Layer: L7 (integrations.redis). Imports ``redis`` (the extra), ``mailsdk.flows`` and L0.

Every message is keyed by its ``Outgoing.key`` (else its Message-ID). Before a send a worker
*claims* the message atomically; just before the transaction starts it marks it ``sending``; after
the server's answer it *records* the outcome. So a task delivered twice (a worker crash with
``acks_late``, a visibility timeout, a duplicate publish) never sends twice:

* ``accepted``, ``partial``, ``refused``: final, never resent.
* ``sending`` whose owner's claim expired: the owner may have written end-of-data, so the
  message is parked as ``unknown`` for a human (see :meth:`DeliveryLedger.unknown`), never resent.
* ``claimed`` whose owner's claim expired: nothing reached the server; another worker may take it.
* ``failed`` (a transient failure, nothing handed over): may be claimed and sent again.

The ledger must survive a Redis restart, so run Redis with persistence (``appendonly yes``).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import json
import math
import typing
import uuid

import attrs
import redis

from mailsdk.errors import ConfigurationError
from mailsdk.flows import DeliveryStatus
from mailsdk.integrations.redis import _scripts
from mailsdk.integrations.redis._connection import Script, run

__all__ = ["Claim", "DeliveryLedger", "LedgerEntry", "LedgerState"]

_CLAIM = Script(_scripts.LEDGER_CLAIM)
_SENDING = Script(_scripts.LEDGER_MARK_SENDING)
_RECORD = Script(_scripts.LEDGER_RECORD)
_RENEW = Script(_scripts.LEDGER_RENEW)
_RESOLVE = Script(_scripts.LEDGER_RESOLVE)
_PRUNE = Script(_scripts.LEDGER_PRUNE)
_SWEEP = Script(_scripts.LEDGER_SWEEP)


def _raw(key: str) -> bytes:
    """``key`` as Redis stores it: UTF-8, with surrogate escapes (``os.fsdecode`` file names,
    undecodable header bytes) kept as the bytes they stand for instead of failing."""
    return key.encode("utf-8", "surrogateescape")


class LedgerState(enum.Enum):
    """Where a message stands in the ledger."""

    CLAIMED = "claimed"
    SENDING = "sending"
    ACCEPTED = "accepted"
    PARTIAL = "partial"
    REFUSED = "refused"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @classmethod
    def of(cls, status: DeliveryStatus) -> LedgerState:
        """The ledger state recording a final :class:`DeliveryStatus`."""
        return cls(status.value)


class Claim(typing.NamedTuple):
    """The answer to :meth:`DeliveryLedger.claim`.

    Attributes:
        verdict: ``claimed`` (the caller owns it and may send), a final state (``accepted``,
            ``partial``, ``refused``: do not send), ``unknown`` (parked: do not send) or
            ``busy`` (another live owner is on it: do not send now, look again later).
        owner: the owner token to pass to :meth:`DeliveryLedger.sending` / ``record``.
        attempts: how many claims the message has had.
        holder: for ``busy``, the live holder's state: ``claimed`` (not sent yet) or
            ``sending`` (it may be at the server now); else empty.
        lapses_in: for ``busy``, the seconds until the holder's claim lapses unless renewed
            (look again then: a dead holder's message is taken over or parked UNKNOWN).
    """

    verdict: str
    owner: str
    attempts: int
    holder: str = ""
    lapses_in: float = 0.0

    @property
    def may_send(self) -> bool:
        """True when the caller owns the message and nothing says it was sent."""
        return self.verdict == "claimed"


@attrs.frozen
class LedgerEntry:
    """One message's ledger record (as listed by :meth:`DeliveryLedger.unknown`)."""

    key: str
    state: LedgerState
    attempts: int
    updated: float
    detail: dict[str, typing.Any] | None
    reason: str | None


class DeliveryLedger:
    """The ledger in Redis (see the module docstring for the states).

    Args:
        client: a ``redis.Redis`` client (with socket timeouts).
        name: the ledger's namespace (one per account or application).
        claim_ttl: seconds a claim lives; longer than one send takes, shorter than you want a
            crashed worker's messages to wait before another worker looks at them.
        retention: seconds an entry is kept after its last update (the duplicate window).
        prefix: the key prefix.
    """

    def __init__(
        self,
        client: redis.Redis,
        name: str = "default",
        *,
        claim_ttl: float = 300.0,
        retention: float = 7 * 24 * 3600.0,
        prefix: str = "mailsdk",
    ) -> None:
        if not math.isfinite(claim_ttl) or claim_ttl < 0.1:
            raise ConfigurationError(f"claim_ttl must be >= 0.1 seconds, not {claim_ttl!r}")
        if not math.isfinite(retention) or retention < claim_ttl:
            raise ConfigurationError("retention must be finite and at least claim_ttl")
        if not name or any(c.isspace() for c in name):
            raise ConfigurationError(f"ledger name must be a non-empty word, not {name!r}")
        self._client = client
        self._base = f"{prefix}:ledger:{{{name}}}"
        self._parked = f"{self._base}:unknown"
        self._in_flight = f"{self._base}:sending"  # entries marked sending, by claim expiry
        self._claim_ms = max(100, math.ceil(claim_ttl * 1000))
        self._retention_s = math.ceil(retention)
        self.claim_ttl = claim_ttl

    def __repr__(self) -> str:
        return f"<DeliveryLedger {self._base!r}>"

    def _entry(self, key: str) -> str:
        digest = hashlib.sha256(_raw(key)).hexdigest()
        return f"{self._base}:m:{digest}"

    def claim(self, key: str, *, owner: str | None = None) -> Claim:
        """Atomically claim ``key`` for sending (see :class:`Claim` for the verdicts).

        Args:
            key: the message key.
            owner: reuse an owner token (a retry of the same attempt); default a new one.

        Raises:
            CoordinationUnavailable: Redis failed (nothing was claimed or sent).
        """
        owner = owner or uuid.uuid4().hex
        args: list[str | bytes | int | float] = [
            owner,
            self._claim_ms,
            self._retention_s,
            _raw(key),
        ]
        keys = [self._entry(key), self._parked, self._in_flight]
        reply = _CLAIM(self._client, keys, args)
        verdict, attempts = reply[0], reply[1]
        text = verdict.decode() if isinstance(verdict, bytes) else str(verdict)
        if len(reply) < 4:
            return Claim(text, owner, int(attempts))
        holder = reply[3].decode() if isinstance(reply[3], bytes) else str(reply[3])
        return Claim(text, owner, int(attempts), holder, max(0, int(reply[2])) / 1000)

    def sending(self, key: str, owner: str) -> bool:
        """Mark a claimed message as being sent (call right before the transaction starts).

        Returns:
            ``True`` if the caller still owns it; ``False`` if the claim was lost (do not send).
        """
        keys = [self._entry(key), self._in_flight]
        return int(_SENDING(self._client, keys, [owner, self._claim_ms])) == 1

    def renew(self, keys: typing.Sequence[str], owner: str) -> int:
        """Extend ``owner``'s live claims (``claimed`` or ``sending``) of ``keys`` by ``claim_ttl``.

        A sender working through a long chunk calls it every ``claim_ttl / 3`` so its claims
        never lapse while it is still alive (a dead sender stops renewing: its claims lapse).

        Returns:
            How many claims were renewed (an expired or recorded one is left alone).
        """
        if not keys:
            return 0
        entries = [self._entry(key) for key in keys]
        return int(_RENEW(self._client, entries, [owner, self._claim_ms]))

    def record(
        self,
        key: str,
        owner: str,
        status: DeliveryStatus,
        detail: dict[str, typing.Any] | None = None,
    ) -> bool:
        """Record the outcome of a send (UNKNOWN is parked for review).

        Returns:
            ``True`` when recorded; ``False`` when the caller no longer owns the entry.
        """
        blob = json.dumps(detail or {}, separators=(",", ":"), default=str)
        args: list[str | bytes | int | float] = [
            owner,
            LedgerState.of(status).value,
            blob,
            self._retention_s,
            _raw(key),
        ]
        keys = [self._entry(key), self._parked, self._in_flight]
        return int(_RECORD(self._client, keys, args)) == 1

    def get(self, key: str) -> LedgerEntry | None:
        """The entry of ``key``, or ``None`` when the ledger has never seen it."""
        fields = run(self._client, lambda: self._client.hgetall(self._entry(key)))
        if not fields:
            return None
        got = {k.decode(): v.decode("utf-8", "replace") for k, v in fields.items()}
        if b"key" in fields:  # exactly as given (a key may hold surrogate escapes: file names)
            got["key"] = fields[b"key"].decode("utf-8", "surrogateescape")
        detail = json.loads(got["detail"]) if got.get("detail") else None
        return LedgerEntry(
            key=got.get("key", key),
            state=LedgerState(got.get("state", "unknown")),
            attempts=int(got.get("attempts", "0")),
            updated=int(got.get("updated", "0")) / 1000,
            detail=detail,
            reason=got.get("reason"),
        )

    def unknown(self, limit: int = 1000) -> list[LedgerEntry]:
        """The messages parked as UNKNOWN, oldest first: review each, then :meth:`resolve` it.

        First parks every message a sender left ``sending`` whose claim has lapsed (it died
        mid-transaction and no task claimed the message again), so the list is complete.
        Parked keys whose entry expired (after ``retention``) or moved on are dropped from the
        parked set as they are met, so they never crowd live ones out of the first ``limit``.
        """
        self._sweep()
        entries: list[LedgerEntry] = []
        start = 0
        page = max(1, min(limit, 500))
        while len(entries) < limit:
            page_of = functools.partial(self._client.zrange, self._parked, start, start + page - 1)
            keys = run(self._client, page_of)
            if not keys:
                break
            stale: list[str] = []
            for raw in keys:
                key = raw.decode("utf-8", "surrogateescape")
                entry = self.get(key)
                if entry is not None and entry.state is LedgerState.UNKNOWN:
                    if len(entries) < limit:
                        entries.append(entry)
                else:
                    stale.append(key)
            if stale:  # atomically: only those still not UNKNOWN (one may be parked again)
                entry_keys = [self._entry(key) for key in stale]
                raw = [_raw(key) for key in stale]
                dropped = int(_PRUNE(self._client, [self._parked, *entry_keys], raw))
            else:
                dropped = 0
            start += len(keys) - dropped
        return entries

    def _sweep(self) -> None:
        """Park the messages whose sender stopped while ``sending`` (see LEDGER_SWEEP)."""
        seconds, micros = run(self._client, self._client.time)
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        lapsed = functools.partial(
            self._client.zrangebyscore, self._in_flight, "-inf", now_ms, start=0, num=10_000
        )
        for name in run(self._client, lapsed):
            entry = name.decode() if isinstance(name, bytes) else str(name)
            _SWEEP(self._client, [entry, self._parked, self._in_flight], [self._retention_s])

    def resolve(self, key: str, *, delivered: bool) -> bool:
        """Close the review of a parked message.

        Only a message parked as UNKNOWN now is changed: a mistyped key, or one the ledger
        shows accepted (or being sent right now), is left alone and ``False`` returned.

        Args:
            key: the message key.
            delivered: ``True`` when it did arrive (recorded as accepted, never sent again);
                ``False`` when it did not (the entry is dropped: the next send of it goes out).

        Returns:
            ``True`` when the message was parked and is resolved now.
        """
        args: list[str | bytes | int | float] = [
            1 if delivered else 0,
            _raw(key),
            self._retention_s,
        ]
        found = _RESOLVE(self._client, [self._entry(key), self._parked], args)
        text = found.decode() if isinstance(found, bytes) else str(found)
        return text == LedgerState.UNKNOWN.value
