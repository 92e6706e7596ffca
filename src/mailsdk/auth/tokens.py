"""OAuth access tokens for XOAUTH2/OAUTHBEARER: the provider protocols and a refresh-ahead cache.

Layer: L2 ``mailsdk.auth``, an *I/O edge* module (docs/architecture.md): unlike the pure SASL
modules it may import ``time``, ``threading``, ``asyncio`` and ``inspect``. It may import L0 only
(``mailsdk.errors``, ``mailsdk._secret``) and must never import ``mailsdk.protocol``, ``esmtp``,
``flows``, ``transport``, ``client``, ``msal`` or ``google``.

The client asks a provider for a token before AUTH and, after a 535 obtained with a *cached* token,
exactly once more with ``force_refresh=True`` (RFC 7628 §3.2.2: the server's error challenge says
the token was refused; a fresh one may succeed). Every provider here honours that contract.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import threading
import time
import typing
import weakref
from collections.abc import Callable

import attrs

from mailsdk._secret import Secret, SecretLike, as_secret
from mailsdk.errors import MailError, TokenError

__all__ = [
    "AccessToken",
    "AsyncCachingTokenProvider",
    "AsyncTokenProvider",
    "CachingTokenProvider",
    "Clock",
    "StaticTokenProvider",
    "TokenProvider",
    "is_async_provider",
]

Clock = Callable[[], float]
"""A function returning the current time as POSIX seconds (``time.time`` by default)."""


@attrs.frozen
class AccessToken:
    """An OAuth 2.0 bearer token and the time it stops being valid.

    ``repr`` never shows the token: it is held in a :class:`~mailsdk.Secret`.

    Args:
        token: the access token (a ``str`` is wrapped in a ``Secret``).
        expires_at: POSIX time at which the token expires, or ``None`` when unknown.
    """

    token: Secret = attrs.field(converter=as_secret)
    expires_at: float | None = None

    def expires_in(self, now: float) -> float | None:
        """Seconds left at ``now`` (negative once expired); ``None`` when the expiry is unknown."""
        return None if self.expires_at is None else self.expires_at - now

    def is_expired(self, now: float, leeway: float = 0.0) -> bool:
        """True when the token expires within ``leeway`` seconds of ``now``.

        A token without a known expiry never counts as expired.
        """
        return self.expires_at is not None and now + leeway >= self.expires_at


@typing.runtime_checkable
class TokenProvider(typing.Protocol):
    """Anything that hands out an access token synchronously (msal, google-auth, ...)."""

    def get_token(self, *, force_refresh: bool = False) -> AccessToken:
        """Return a valid access token.

        Args:
            force_refresh: skip any cache and obtain a new token (used once after a 535).

        Raises:
            TokenError: the token could not be obtained.
        """
        ...


@typing.runtime_checkable
class AsyncTokenProvider(typing.Protocol):
    """The asynchronous twin of :class:`TokenProvider`."""

    async def get_token(self, *, force_refresh: bool = False) -> AccessToken:
        """Return a valid access token (see :meth:`TokenProvider.get_token`)."""
        ...


def is_async_provider(provider: TokenProvider | AsyncTokenProvider) -> bool:
    """True when ``provider.get_token`` is a coroutine function (an :class:`AsyncTokenProvider`)."""
    return inspect.iscoroutinefunction(provider.get_token)


def _wrap_failure(exc: Exception) -> TokenError:
    """Turn a foreign exception from a provider into a :class:`TokenError`.

    Only the exception *type* is quoted: a third-party message may carry a secret.
    """
    return TokenError(f"token provider failed: {type(exc).__name__}")


class StaticTokenProvider:
    """Always returns the same token; ``force_refresh`` cannot help and returns it again.

    Args:
        token: the access token (``str``, ``Secret`` or a ready :class:`AccessToken`).
        expires_at: the expiry when ``token`` is not an ``AccessToken``.
        username: the account the token belongs to (the XOAUTH2 ``user=``), if known.
    """

    def __init__(
        self,
        token: SecretLike | AccessToken,
        expires_at: float | None = None,
        *,
        username: str | None = None,
    ) -> None:
        self._token = token if isinstance(token, AccessToken) else AccessToken(token, expires_at)
        self.username = username

    def get_token(self, *, force_refresh: bool = False) -> AccessToken:
        """Return the configured token.

        Args:
            force_refresh: ignored; a static token cannot be renewed.

        Returns:
            The token given to the constructor.
        """
        return self._token

    def __repr__(self) -> str:
        return f"StaticTokenProvider(username={self.username!r})"


class _CacheState:
    """The cached token and the bookkeeping shared by the sync and async caches (no I/O)."""

    def __init__(self, refresh_ahead: float, clock: Clock) -> None:
        if refresh_ahead < 0:
            raise ValueError("refresh_ahead must be >= 0")
        self.refresh_ahead = refresh_ahead
        self.clock = clock
        self.token: AccessToken | None = None
        self.fetched_at = 0.0
        self.generation = 0

    def fresh(self) -> AccessToken | None:
        """The cached token if it can be used without refreshing, else ``None``.

        The refresh-ahead window is capped at half the token's lifetime, so a token issued for
        less than ``2 * refresh_ahead`` seconds is still reused instead of refetched on each call.
        """
        token = self.token
        if token is None:
            return None
        if token.expires_at is None:
            return token
        ahead = min(self.refresh_ahead, max(0.0, token.expires_at - self.fetched_at) / 2)
        return None if token.is_expired(self.clock(), ahead) else token

    def usable(self) -> AccessToken | None:
        """The cached token if it has not expired yet (the refresh-ahead window ignored)."""
        token = self.token
        if token is None or token.is_expired(self.clock()):
            return None
        return token

    def replaced(self, generation: int, token: AccessToken | None) -> bool:
        """Whether the cached token was renewed since ``generation`` with a *different* value.

        A forced refresh (the retry after a 535) may reuse a token fetched while it waited only
        if that token is not the one the server refused: an unforced refetch that ran meanwhile
        (a refresh ahead of expiry) may have been served the very same token from the inner
        provider's own cache, as msal does.
        """
        current = self.token
        if self.generation == generation or current is None:
            return False
        return token is None or current.token != token.token

    def store(self, token: AccessToken) -> AccessToken:
        self.token = token
        self.fetched_at = self.clock()
        self.generation += 1
        return token


#: Every live CachingTokenProvider, for the fork hook below.
_CACHES: weakref.WeakSet[CachingTokenProvider] = weakref.WeakSet()


def _unlock_after_fork() -> None:
    # A forked child has only the thread that forked: a refresh that another thread of the
    # parent was running holds a lock nobody in the child will ever release (its first
    # connection would wait forever; send_batch(processes=...), Celery's prefork workers).
    for cache in list(_CACHES):
        cache._lock = threading.Lock()  # pyright: ignore[reportPrivateUsage]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_unlock_after_fork)


class CachingTokenProvider:
    """Caches a provider's token and refreshes it ahead of expiry, single-flight across threads.

    At most one thread calls ``inner.get_token`` at a time; threads that arrive meanwhile wait and
    reuse the token it obtained, including concurrent ``force_refresh=True`` callers (they all
    asked for "a token newer than the one I had", and the one just fetched is). When a refresh
    *ahead* of expiry fails but the cached token is still valid, the cached token is returned; a
    forced refresh always reports the failure.

    Args:
        inner: the provider to cache.
        refresh_ahead: seconds before expiry at which the token is renewed (capped at half its
            lifetime).
        clock: the time source; inject one in tests instead of sleeping.

    Attributes:
        username: the inner provider's ``username``, when it has one.
    """

    def __init__(
        self, inner: TokenProvider, *, refresh_ahead: float = 300.0, clock: Clock = time.time
    ) -> None:
        self._inner = inner
        self._state = _CacheState(refresh_ahead, clock)
        self._lock = threading.Lock()
        _CACHES.add(self)

    @property
    def username(self) -> str | None:
        """The account name reported by the inner provider, if any."""
        return typing.cast("str | None", getattr(self._inner, "username", None))

    def get_token(self, *, force_refresh: bool = False) -> AccessToken:
        """Return the cached token, or obtain one from the inner provider.

        Args:
            force_refresh: bypass the cached token once (the retry after a 535).

        Returns:
            A token that is not inside its refresh-ahead window (unless the refresh failed).

        Raises:
            TokenError: the inner provider failed (foreign exceptions are wrapped).
        """
        state = self._state
        seen, before = state.generation, state.token
        if not force_refresh and (token := state.fresh()) is not None:
            return token
        with self._lock:
            # Single flight: whoever held the lock may have refreshed while we waited. A forced
            # caller reuses that token only if it is newer than the one the caller started with.
            token = state.fresh()
            if token is not None and (not force_refresh or state.replaced(seen, before)):
                return token
            try:
                token = self._inner.get_token(force_refresh=force_refresh)
            except Exception as exc:
                if not force_refresh and (still := state.usable()) is not None:
                    return still
                if isinstance(exc, MailError):
                    raise
                raise _wrap_failure(exc) from exc
            return state.store(token)

    def invalidate(self) -> None:
        """Forget the cached token; the next call obtains a new one."""
        with self._lock:
            self._state.token = None

    def __repr__(self) -> str:
        return f"CachingTokenProvider({self._inner!r})"


class AsyncCachingTokenProvider:
    """The asyncio twin of :class:`CachingTokenProvider`.

    Wraps an :class:`AsyncTokenProvider` (awaited) or a sync :class:`TokenProvider` (run in a worker
    thread with :func:`asyncio.to_thread`, so msal's blocking HTTP never stalls the event loop).
    Concurrent tasks share one refresh through an :class:`asyncio.Lock` (one lock per event loop,
    so the provider survives being used from several ``asyncio.run`` calls).

    Args:
        inner: the provider to cache, sync or async.
        refresh_ahead: seconds before expiry at which the token is renewed.
        clock: the time source.
    """

    def __init__(
        self,
        inner: AsyncTokenProvider | TokenProvider,
        *,
        refresh_ahead: float = 300.0,
        clock: Clock = time.time,
    ) -> None:
        self._inner = inner
        self._is_async = is_async_provider(inner)
        self._state = _CacheState(refresh_ahead, clock)
        self._locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        # Guards the table itself: threads running their own event loops share this provider.
        self._locks_guard = threading.Lock()

    @property
    def username(self) -> str | None:
        """The account name reported by the inner provider, if any."""
        return typing.cast("str | None", getattr(self._inner, "username", None))

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        with self._locks_guard:
            lock = self._locks.get(loop)
            if lock is None:
                for old in [lp for lp in self._locks if lp.is_closed()]:
                    del self._locks[old]
                lock = self._locks[loop] = asyncio.Lock()
            return lock

    async def _fetch(self, force_refresh: bool) -> AccessToken:
        if self._is_async:
            inner = typing.cast("AsyncTokenProvider", self._inner)
            return await inner.get_token(force_refresh=force_refresh)
        sync = typing.cast("TokenProvider", self._inner)
        fetch = functools.partial(sync.get_token, force_refresh=force_refresh)
        return await asyncio.to_thread(fetch)

    async def get_token(self, *, force_refresh: bool = False) -> AccessToken:
        """Return the cached token, or obtain one from the inner provider.

        Args:
            force_refresh: bypass the cached token once (the retry after a 535).

        Returns:
            A token that is not inside its refresh-ahead window (unless the refresh failed).

        Raises:
            TokenError: the inner provider failed (foreign exceptions are wrapped).
        """
        state = self._state
        seen, before = state.generation, state.token
        if not force_refresh and (token := state.fresh()) is not None:
            return token
        async with self._lock():
            token = state.fresh()
            if token is not None and (not force_refresh or state.replaced(seen, before)):
                return token
            try:
                token = await self._fetch(force_refresh)
            except Exception as exc:
                if not force_refresh and (still := state.usable()) is not None:
                    return still
                if isinstance(exc, MailError):
                    raise
                raise _wrap_failure(exc) from exc
            return state.store(token)

    def invalidate(self) -> None:
        """Forget the cached token; the next call obtains a new one."""
        self._state.token = None

    def __repr__(self) -> str:
        return f"AsyncCachingTokenProvider({self._inner!r})"
