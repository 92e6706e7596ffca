"""AccessToken, StaticTokenProvider and the sync/async refresh-ahead, single-flight caches."""

from __future__ import annotations

import asyncio
import pickle
import threading

import attrs
import pytest
from tests._support.oauth_authority import FakeClock

from mailsdk._secret import Secret
from mailsdk.auth.tokens import (
    AccessToken,
    AsyncCachingTokenProvider,
    AsyncTokenProvider,
    CachingTokenProvider,
    StaticTokenProvider,
    TokenProvider,
    is_async_provider,
)
from mailsdk.errors import AuthError, TokenError

WAIT = 10.0  # generous bound for thread hand-offs; never reached when the code is right


class CountingProvider:
    """A real sync provider issuing numbered tokens valid for ``lifetime`` seconds."""

    def __init__(self, clock: FakeClock, lifetime: float | None = 3600.0) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.calls: list[bool] = []
        self.fail: Exception | None = None
        self.username = "user@example.com"
        self._lock = threading.Lock()

    def get_token(self, *, force_refresh: bool = False) -> AccessToken:
        with self._lock:
            self.calls.append(force_refresh)
            n = len(self.calls)
        if self.fail is not None:
            raise self.fail
        expires = None if self.lifetime is None else self.clock() + self.lifetime
        return AccessToken(f"token-{n}", expires)


class BlockingProvider(CountingProvider):
    """Blocks inside get_token until released, so other callers pile up behind the lock."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.entered = threading.Event()
        self.release = threading.Event()

    def get_token(self, *, force_refresh: bool = False) -> AccessToken:
        self.entered.set()
        assert self.release.wait(WAIT)
        return super().get_token(force_refresh=force_refresh)


class CountingLock:
    """A real lock that also counts how many callers have arrived at it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self.arrived = 0

    def __enter__(self) -> None:
        with self._cond:
            self.arrived += 1
            self._cond.notify_all()
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def wait_for_arrivals(self, n: int) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.arrived >= n, WAIT)


class AsyncCountingProvider:
    """A real async provider; ``gate`` lets a test hold the refresh open."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[bool] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def get_token(self, *, force_refresh: bool = False) -> AccessToken:
        self.calls.append(force_refresh)
        n = len(self.calls)
        await self.gate.wait()
        return AccessToken(f"async-{n}", self.clock() + 3600)


# --- AccessToken / StaticTokenProvider -----------------------------------------------------


def test_access_token_hides_the_token_and_wraps_str() -> None:
    token = AccessToken("super-secret-token", 1234.0)
    assert isinstance(token.token, Secret)
    assert token.token.reveal() == "super-secret-token"
    assert "super-secret-token" not in repr(token)
    assert "super-secret-token" not in str(token)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        token.expires_at = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        pickle.dumps(token)


def test_access_token_expiry_arithmetic() -> None:
    token = AccessToken("t", 1000.0)
    assert token.expires_in(400.0) == 600.0
    assert not token.is_expired(999.0)
    assert token.is_expired(1000.0)
    assert token.is_expired(800.0, leeway=200.0)
    forever = AccessToken("t")
    assert forever.expires_in(1e12) is None
    assert not forever.is_expired(1e12, leeway=1e12)


def test_static_provider_returns_the_same_token_even_when_forced() -> None:
    provider = StaticTokenProvider("static-secret", 50.0, username="bob@example.com")
    first = provider.get_token()
    assert first.token.reveal() == "static-secret"
    assert first.expires_at == 50.0
    assert provider.get_token(force_refresh=True) is first
    assert provider.username == "bob@example.com"
    assert "static-secret" not in repr(provider)
    ready = AccessToken("x", 9.0)
    assert StaticTokenProvider(ready).get_token() is ready


def test_protocols_are_runtime_checkable_and_async_is_detected(clock: FakeClock) -> None:
    sync = CountingProvider(clock)
    asynchronous = AsyncCountingProvider(clock)
    assert isinstance(sync, TokenProvider)
    assert isinstance(asynchronous, AsyncTokenProvider)
    assert not is_async_provider(sync)
    assert is_async_provider(asynchronous)
    assert is_async_provider(AsyncCachingTokenProvider(sync))
    assert not is_async_provider(CachingTokenProvider(sync))


# --- CachingTokenProvider ------------------------------------------------------------------


def test_cache_serves_until_the_refresh_ahead_window(clock: FakeClock) -> None:
    inner = CountingProvider(clock, lifetime=3600)
    cache = CachingTokenProvider(inner, refresh_ahead=300, clock=clock)
    first = cache.get_token()
    assert cache.get_token() is first
    clock.advance(3600 - 300 - 1)  # one second before the window opens
    assert cache.get_token() is first
    assert inner.calls == [False]
    clock.advance(1)  # 300 s before expiry: renew now
    second = cache.get_token()
    assert second.token.reveal() == "token-2"
    assert inner.calls == [False, False]
    assert cache.get_token() is second


def test_expired_token_is_refreshed(clock: FakeClock) -> None:
    inner = CountingProvider(clock, lifetime=600)
    cache = CachingTokenProvider(inner, refresh_ahead=0, clock=clock)
    assert cache.get_token().token.reveal() == "token-1"
    clock.advance(600)
    assert cache.get_token().token.reveal() == "token-2"


def test_short_lived_tokens_are_not_refetched_on_every_call(clock: FakeClock) -> None:
    inner = CountingProvider(clock, lifetime=100)  # shorter than the 300 s refresh-ahead
    cache = CachingTokenProvider(inner, refresh_ahead=300, clock=clock)
    first = cache.get_token()
    clock.advance(49)  # window capped at half the lifetime (50 s)
    assert cache.get_token() is first
    clock.advance(1)
    assert cache.get_token() is not first
    assert len(inner.calls) == 2


def test_token_without_expiry_is_cached_forever(clock: FakeClock) -> None:
    inner = CountingProvider(clock, lifetime=None)
    cache = CachingTokenProvider(inner, clock=clock)
    first = cache.get_token()
    clock.advance(10**9)
    assert cache.get_token() is first
    assert len(inner.calls) == 1


def test_force_refresh_bypasses_the_cache_once(clock: FakeClock) -> None:
    inner = CountingProvider(clock)
    cache = CachingTokenProvider(inner, clock=clock)
    first = cache.get_token()
    forced = cache.get_token(force_refresh=True)
    assert forced is not first
    assert forced.token.reveal() == "token-2"
    assert inner.calls == [False, True]  # the inner provider was told to skip its own cache
    assert cache.get_token() is forced  # and the fresh token is cached again


def test_invalidate_forgets_the_token(clock: FakeClock) -> None:
    inner = CountingProvider(clock)
    cache = CachingTokenProvider(inner, clock=clock)
    cache.get_token()
    cache.invalidate()
    assert cache.get_token().token.reveal() == "token-2"


def test_failed_refresh_ahead_keeps_serving_a_still_valid_token(clock: FakeClock) -> None:
    inner = CountingProvider(clock, lifetime=3600)
    cache = CachingTokenProvider(inner, refresh_ahead=300, clock=clock)
    first = cache.get_token()
    clock.advance(3500)  # inside the window, not yet expired
    inner.fail = TokenError("idp down", error="temporarily_unavailable")
    assert cache.get_token() is first
    with pytest.raises(TokenError, match="idp down"):  # a forced refresh reports the failure
        cache.get_token(force_refresh=True)
    clock.advance(100)  # now expired: nothing to fall back on
    with pytest.raises(TokenError) as info:
        cache.get_token()
    assert info.value.error == "temporarily_unavailable"


def test_foreign_exceptions_become_token_errors_without_their_text(clock: FakeClock) -> None:
    inner = CountingProvider(clock)
    inner.fail = RuntimeError("password=hunter2 leaked by a sloppy provider")
    cache = CachingTokenProvider(inner, clock=clock)
    with pytest.raises(TokenError) as info:
        cache.get_token()
    assert isinstance(info.value, AuthError)
    assert "hunter2" not in str(info.value)
    assert "RuntimeError" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_cache_forwards_the_username(clock: FakeClock) -> None:
    assert CachingTokenProvider(CountingProvider(clock)).username == "user@example.com"
    assert CachingTokenProvider(StaticTokenProvider("t")).username is None


def test_many_threads_share_one_refresh(clock: FakeClock) -> None:
    inner = BlockingProvider(clock)
    cache = CachingTokenProvider(inner, clock=clock)
    n = 16
    results: list[AccessToken] = []
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def worker() -> None:
        try:
            start.wait(WAIT)
            results.append(cache.get_token())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    assert inner.entered.wait(WAIT)
    inner.release.set()
    for t in threads:
        t.join(WAIT)
    assert not errors
    assert len(results) == n
    assert len(inner.calls) == 1
    assert {r.token.reveal() for r in results} == {"token-1"}


def test_concurrent_forced_refreshes_are_single_flight(clock: FakeClock) -> None:
    inner = BlockingProvider(clock)
    inner.release.set()
    cache = CachingTokenProvider(inner, clock=clock)
    stale = cache.get_token()  # the token the server just refused with 535
    inner.release.clear()
    inner.entered.clear()
    lock = CountingLock()
    cache._lock = lock  # type: ignore[assignment]  # observe arrivals, keep real locking
    n = 8
    results: list[AccessToken] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get_token(force_refresh=True)))
        for _ in range(n)
    ]
    for t in threads:
        t.start()
    assert inner.entered.wait(WAIT)  # one thread is fetching...
    assert lock.wait_for_arrivals(n)  # ...and every other one is queued behind it
    inner.release.set()
    for t in threads:
        t.join(WAIT)
    assert len(results) == n
    assert inner.calls == [False, True]
    assert {r.token.reveal() for r in results} == {"token-2"}
    assert stale.token.reveal() == "token-1"


# --- AsyncCachingTokenProvider -------------------------------------------------------------


async def test_async_cache_single_flight_over_an_async_provider(clock: FakeClock) -> None:
    inner = AsyncCountingProvider(clock)
    inner.gate.clear()
    cache = AsyncCachingTokenProvider(inner, clock=clock)
    tasks = [asyncio.ensure_future(cache.get_token()) for _ in range(20)]
    await asyncio.sleep(0)  # let every task reach the lock
    inner.gate.set()
    results = await asyncio.gather(*tasks)
    assert inner.calls == [False]
    assert {r.token.reveal() for r in results} == {"async-1"}
    assert await cache.get_token() is results[0]


async def test_async_forced_refresh_is_single_flight(clock: FakeClock) -> None:
    inner = AsyncCountingProvider(clock)
    cache = AsyncCachingTokenProvider(inner, clock=clock)
    first = await cache.get_token()
    inner.gate.clear()
    tasks = [asyncio.ensure_future(cache.get_token(force_refresh=True)) for _ in range(10)]
    await asyncio.sleep(0)
    inner.gate.set()
    results = await asyncio.gather(*tasks)
    assert inner.calls == [False, True]
    assert {r.token.reveal() for r in results} == {"async-2"}
    assert first.token.reveal() == "async-1"


async def test_async_cache_runs_a_sync_provider_in_a_worker_thread(clock: FakeClock) -> None:
    loop_thread = threading.get_ident()
    seen_threads: list[int] = []

    class SyncProvider(CountingProvider):
        def get_token(self, *, force_refresh: bool = False) -> AccessToken:
            seen_threads.append(threading.get_ident())
            return super().get_token(force_refresh=force_refresh)

    inner = SyncProvider(clock)
    cache = AsyncCachingTokenProvider(inner, refresh_ahead=300, clock=clock)
    results = await asyncio.gather(*(cache.get_token() for _ in range(10)))
    assert len(inner.calls) == 1
    assert seen_threads
    assert loop_thread not in seen_threads
    assert {r.token.reveal() for r in results} == {"token-1"}
    clock.advance(3400)  # inside the refresh-ahead window
    assert (await cache.get_token()).token.reveal() == "token-2"
    assert cache.username == "user@example.com"


async def test_async_cache_wraps_foreign_errors(clock: FakeClock) -> None:
    inner = CountingProvider(clock)
    inner.fail = KeyError("secret-value")
    cache = AsyncCachingTokenProvider(inner, clock=clock)
    with pytest.raises(TokenError) as info:
        await cache.get_token()
    assert "secret-value" not in str(info.value)


def test_async_cache_survives_several_event_loops(clock: FakeClock) -> None:
    inner = AsyncCountingProvider(clock)
    cache = AsyncCachingTokenProvider(inner, clock=clock)

    async def burst() -> set[str]:
        inner.gate = asyncio.Event()  # bound to this loop
        tasks = [asyncio.ensure_future(cache.get_token(force_refresh=True)) for _ in range(3)]
        await asyncio.sleep(0)  # contention: the lock has to park waiters on this loop
        inner.gate.set()
        return {t.token.reveal() for t in await asyncio.gather(*tasks)}

    assert asyncio.run(burst()) == {"async-1"}
    assert asyncio.run(burst()) == {"async-2"}  # a lock bound to the first loop would fail here
