"""Shared limits: the rate and connection limiter protocols and their in-process defaults.

Layer: L5b (batch, pure planning). May import ``mailsdk.client`` and below; never ``pool``.

The protocols are structural: a Redis-backed limiter shared by many processes (see the
integrations) satisfies them without importing this module. Every method is non-blocking; the
caller sleeps (or awaits) for the returned delay itself, so one limiter serves threads and tasks.
"""

from __future__ import annotations

import itertools
import threading
import typing

from mailsdk.errors import ConfigurationError

__all__ = [
    "AsyncConnectionLimiter",
    "AsyncRateLimiter",
    "ConnectionLimiter",
    "LocalConnectionLimiter",
    "RateLimiter",
]


class RateLimiter(typing.Protocol):
    """A rate limit shared by every connection (and, for a shared store, every process)."""

    def reserve(self, *, messages: int = 1, recipients: int = 0) -> float:
        """Take the tokens for one send now and return how many seconds the caller must wait before sending (0.0 = send now). Never blocks. Thread-safe."""  # noqa: E501
        ...

    def penalize(self, seconds: float) -> None:
        """Server-signalled throttling: no send for `seconds` from now (shared by every user of this limiter)."""  # noqa: E501
        ...


class AsyncRateLimiter(typing.Protocol):
    """The asyncio form of :class:`RateLimiter` (same meaning, awaitable methods)."""

    async def reserve(self, *, messages: int = 1, recipients: int = 0) -> float:
        """Take the tokens for one send now and return the seconds to wait (0.0 = now)."""
        ...

    async def penalize(self, seconds: float) -> None:
        """Server-signalled throttling: no send for ``seconds`` from now, for every user."""
        ...


class ConnectionLimiter(typing.Protocol):
    """A cap on the connections open to one server, shared by everyone who uses it."""

    def try_acquire(self) -> str | None:
        """Take a connection slot: a lease id, or ``None`` when the cap is reached (caller waits and retries)."""  # noqa: E501
        ...

    def renew(self, lease: str) -> bool:
        """Keep a lease alive; ``False`` if it had expired."""
        ...

    def release(self, lease: str) -> None:
        """Give the slot back (idempotent)."""
        ...


class AsyncConnectionLimiter(typing.Protocol):
    """The asyncio form of :class:`ConnectionLimiter`."""

    async def try_acquire(self) -> str | None:
        """A lease id, or ``None`` when the cap is reached."""
        ...

    async def renew(self, lease: str) -> bool:
        """Keep a lease alive; ``False`` if it had expired."""
        ...

    async def release(self, lease: str) -> None:
        """Give the slot back (idempotent)."""
        ...


class LocalConnectionLimiter:
    """An in-process :class:`ConnectionLimiter`: at most ``limit`` leases at a time.

    Share one instance between pools to cap their connections to a server together. Leases
    never expire in-process (``renew`` is ``True`` while the lease is held).

    Args:
        limit: the number of connections allowed at once (at least 1).

    Raises:
        ConfigurationError: ``limit`` is not an integer of at least 1 (a ``ValueError`` too).
    """

    def __init__(self, limit: int) -> None:
        given: object = limit  # caller input: checked whatever its annotation says
        if isinstance(given, bool) or not isinstance(given, int) or given < 1:  # pyright: ignore[reportUnnecessaryIsInstance]
            # A float NaN would compare false with every count: no limit at all.
            raise ConfigurationError(f"the connection limit must be an integer >= 1, not {limit!r}")
        self.limit = limit
        self._lock = threading.Lock()
        self._leases: set[str] = set()
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"<LocalConnectionLimiter {len(self._leases)}/{self.limit}>"

    @property
    def in_use(self) -> int:
        """How many leases are held now."""
        return len(self._leases)

    def try_acquire(self) -> str | None:
        """A new lease id, or ``None`` when ``limit`` leases are held."""
        with self._lock:
            if len(self._leases) >= self.limit:
                return None
            lease = f"local-{next(self._ids)}"
            self._leases.add(lease)
            return lease

    def renew(self, lease: str) -> bool:
        """``True`` while ``lease`` is held."""
        with self._lock:
            return lease in self._leases

    def release(self, lease: str) -> None:
        """Give ``lease`` back (unknown leases are ignored)."""
        with self._lock:
            self._leases.discard(lease)
