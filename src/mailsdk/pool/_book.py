"""Pool bookkeeping as pure state changes: which connection takes the next send, which to close.

Layer: L5c (pool). No I/O and no clock of its own: every method takes ``now`` and returns what
the caller must do (open a connection, health-check one, close some), after httpcore's
connection-pool shape. The sync and async pools wrap one :class:`PoolBook` in their lock.

A slot is one pooled connection. It is *busy* while exactly one caller holds it (checked out),
so a session is never used by two callers at once; it is *idle* otherwise. A slot is retired
(closed by the caller) when it has sent ``max_messages_per_connection`` messages, is older than
``max_connection_age``, has been idle longer than ``idle_timeout``, or its session broke; and
when more connections are open than the adaptive :class:`~mailsdk.pool._concurrency.Concurrency`
limit allows (the server throttled: see :meth:`PoolBook.throttled`).
"""

from __future__ import annotations

import itertools
import math
import typing

import attrs

from mailsdk.pool._concurrency import Concurrency

__all__ = ["Open", "PoolBook", "PoolLimits", "Reuse", "Slot", "Wait"]

S = typing.TypeVar("S")


def _positive_or_none(_: object, attribute: attrs.Attribute[typing.Any], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{attribute.name} must be a number or None")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be > 0 (or None for no limit)")


def _at_least_one(_: object, attribute: attrs.Attribute[typing.Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be an integer >= 1")


@attrs.frozen(kw_only=True)
class PoolLimits:
    """The limits of one pool (see :class:`mailsdk.pool.Pool` for their meaning)."""

    max_connections: int = attrs.field(default=4, validator=_at_least_one)
    max_messages_per_connection: int | None = attrs.field(default=1000)
    max_connection_age: float | None = attrs.field(default=300.0, validator=_positive_or_none)
    idle_timeout: float | None = attrs.field(default=30.0, validator=_positive_or_none)
    health_check_after: float = attrs.field(default=1.0)
    checkout_timeout: float | None = attrs.field(default=30.0, validator=_positive_or_none)

    def __attrs_post_init__(self) -> None:
        per = self.max_messages_per_connection
        if per is not None:
            _at_least_one(self, attrs.fields(PoolLimits).max_messages_per_connection, per)
        if not (math.isfinite(self.health_check_after) and self.health_check_after >= 0):
            raise ValueError("health_check_after must be a finite number >= 0")


@attrs.define(eq=False)
class Slot(typing.Generic[S]):
    """One pooled connection. ``session`` is ``None`` until the caller has opened it."""

    id: int
    created: float
    last_used: float
    session: S | None = None
    lease: str | None = None
    messages: int = 0
    busy: bool = True


@attrs.frozen
class Reuse(typing.Generic[S]):
    """Use this idle connection; ``check`` asks for a health check (NOOP) first."""

    slot: Slot[S]
    check: bool


@attrs.frozen
class Open(typing.Generic[S]):
    """Open a new connection for this (reserved, busy) slot, then call :meth:`PoolBook.opened`
    or, if it fails, :meth:`PoolBook.discard`."""

    slot: Slot[S]


@attrs.frozen
class Wait:
    """Every connection is busy and the pool is full: wait for a check-in."""


class PoolBook(typing.Generic[S]):
    """The state of one pool (not thread-safe: the owner serialises calls).

    Args:
        limits: the pool's :class:`PoolLimits`.
    """

    def __init__(self, limits: PoolLimits) -> None:
        self.limits = limits
        self._slots: list[Slot[S]] = []
        self._ids = itertools.count(1)
        self.closed = False
        #: the adaptive limit on connections in use (cut by server throttling).
        self.concurrency = Concurrency(limits.max_connections)

    # -- counts (for gauges and tests) ----------------------------------------------------------

    @property
    def open(self) -> int:
        """Connections open or being opened."""
        return len(self._slots)

    @property
    def busy(self) -> int:
        """Connections checked out by a caller."""
        return sum(1 for s in self._slots if s.busy)

    @property
    def idle(self) -> int:
        """Open connections waiting for work."""
        return sum(1 for s in self._slots if not s.busy)

    # -- decisions --------------------------------------------------------------------------------

    def _retire(self, slot: Slot[S], now: float) -> bool:
        limits = self.limits
        per = limits.max_messages_per_connection
        if per is not None and slot.messages >= per:
            return True
        age = limits.max_connection_age
        return age is not None and now - slot.created >= age

    def _expired(self, slot: Slot[S], now: float) -> bool:
        idle = self.limits.idle_timeout
        return self._retire(slot, now) or (idle is not None and now - slot.last_used >= idle)

    def checkout(self, now: float) -> tuple[Reuse[S] | Open[S] | Wait, list[Slot[S]]]:
        """Decide how the next caller gets a connection.

        Returns:
            The decision, and the idle slots that expired (removed: the caller closes them).
        """
        if self.closed:
            raise RuntimeError("the pool is closed")
        expired = self.expire(now)
        limit = self.concurrency.limit
        idle = [s for s in self._slots if not s.busy]
        if idle and len(self._slots) - len(idle) < limit:
            # Most recently used first: the others idle out sooner, so a quiet pool shrinks.
            slot = max(idle, key=lambda s: s.last_used)
            slot.busy = True
            check = now - slot.last_used >= self.limits.health_check_after
            return Reuse(slot, check), expired
        if len(self._slots) < limit:
            slot = Slot[S](next(self._ids), created=now, last_used=now)
            self._slots.append(slot)
            return Open(slot), expired
        return Wait(), expired

    def opened(self, slot: Slot[S], session: S, lease: str | None, now: float) -> None:
        """The caller opened the connection of an :class:`Open` slot (it stays busy)."""
        slot.session = session
        slot.lease = lease
        slot.created = slot.last_used = now

    def discard(self, slot: Slot[S]) -> None:
        """Forget a slot: opening failed, the health check failed or the session broke."""
        if slot in self._slots:
            self._slots.remove(slot)

    def allowance(self, slot: Slot[S]) -> int | None:
        """How many more messages this connection may send (``None``: no limit)."""
        per = self.limits.max_messages_per_connection
        return None if per is None else max(0, per - slot.messages)

    def checkin(self, slot: Slot[S], now: float, *, sent: int, usable: bool) -> bool:
        """A caller is done with a slot.

        Args:
            sent: messages sent on it during this checkout.
            usable: the session is still open and in a clean state.

        Returns:
            ``True`` when the slot stays in the pool (idle), ``False`` when the caller must close
            it (QUIT if ``usable``) and release its lease: it was removed.
        """
        slot.messages += sent
        slot.last_used = now
        slot.busy = False
        surplus = len(self._slots) > self.concurrency.limit
        if not usable or self.closed or surplus or self._retire(slot, now):
            self.discard(slot)
            return False
        return True

    def expire(self, now: float) -> list[Slot[S]]:
        """Remove and return the idle slots past their idle timeout, age or message count, and
        the idle ones above the concurrency limit (least recently used first)."""
        gone = [s for s in self._slots if not s.busy and self._expired(s, now)]
        for slot in gone:
            self._slots.remove(slot)
        surplus = len(self._slots) - self.concurrency.limit
        if surplus > 0:
            idle = sorted((s for s in self._slots if not s.busy), key=lambda s: s.last_used)
            for slot in idle[:surplus]:
                self._slots.remove(slot)
                gone.append(slot)
        return gone

    def throttled(self, epoch: int, now: float) -> list[Slot[S]]:
        """A throttling reply to a send made in ``epoch``: cut the concurrency limit (see
        :class:`~mailsdk.pool._concurrency.Concurrency`); returns the idle slots now above it
        (removed: the caller closes them). Busy ones above it close at check-in."""
        if not self.concurrency.throttled(epoch):
            return []
        return self.expire(now)

    def succeeded(self, epoch: int, count: int = 1) -> bool:
        """``count`` good replies to sends made in ``epoch``; ``True`` when the limit grew (the
        caller wakes the callers waiting for a connection).

        Only while the limit is used up: good replies over fewer connections than allowed
        (the end of a batch, a quiet service) say nothing about one more connection.
        """
        if self.busy < self.concurrency.limit:
            return False
        return self.concurrency.succeeded(epoch, count)

    def close(self) -> list[Slot[S]]:
        """Close the pool: returns the idle slots (removed); busy ones retire at check-in."""
        self.closed = True
        idle = [s for s in self._slots if not s.busy]
        for slot in idle:
            self._slots.remove(slot)
        return idle
