"""Token caches under concurrency: a forced refresh never settles for the refused token; locks per event loop."""

from __future__ import annotations

import typing
from collections.abc import Callable


class _MsalLikeProvider:
    """Like msal: a plain call returns its own cached token; only a forced one issues a new one."""

    def __init__(self, clock: Callable[[], float], gate: typing.Any) -> None:
        self.clock = clock
        self.gate = gate
        self.calls: list[bool] = []
        self.serial = 1
        self.expires_at = clock() + 200.0  # inside the default 300 s refresh-ahead window

    async def get_token(self, *, force_refresh: bool = False) -> typing.Any:
        from mailsdk.auth import AccessToken

        self.calls.append(force_refresh)
        if not force_refresh:
            await self.gate.wait()
        else:
            self.serial += 1
            self.expires_at = self.clock() + 3600.0
        return AccessToken(f"token-{self.serial}", self.expires_at)


async def test_forced_refresh_does_not_reuse_a_concurrent_unforced_refetch_of_the_same_token() -> (
    None
):
    import asyncio

    from mailsdk.auth import AsyncCachingTokenProvider

    now = [1_800_000_000.0]
    gate = asyncio.Event()
    gate.set()
    inner = _MsalLikeProvider(lambda: now[0], gate)
    cache = AsyncCachingTokenProvider(inner, clock=lambda: now[0])
    refused = await cache.get_token()  # token-1, then refused by the server with 535
    now[0] += 120.0  # fresh() now wants a refresh ahead of expiry
    gate.clear()
    ahead = asyncio.ensure_future(cache.get_token())  # a plain refresh, held inside msal
    await asyncio.sleep(0)
    forced = asyncio.ensure_future(cache.get_token(force_refresh=True))  # the 535 retry
    await asyncio.sleep(0)
    gate.set()
    assert (await ahead).token == refused.token  # msal served its cached token-1 again
    retry = await forced
    assert retry.token != refused.token, "the retry after 535 got the refused token back"
    assert inner.calls == [False, False, True]


def test_sync_forced_refresh_does_not_reuse_a_concurrent_unforced_refetch_of_the_same_token() -> (
    None
):
    import threading

    from mailsdk.auth import AccessToken, CachingTokenProvider

    now = [1_800_000_000.0]
    entered, release = threading.Event(), threading.Event()
    calls: list[bool] = []
    state = {"serial": 1, "expires": now[0] + 200.0}

    class Provider:
        def get_token(self, *, force_refresh: bool = False) -> AccessToken:
            calls.append(force_refresh)
            if force_refresh:
                state["serial"] += 1
                state["expires"] = now[0] + 3600.0
            else:
                entered.set()
                assert release.wait(10)
            return AccessToken(f"token-{state['serial']}", state["expires"])

    release.set()
    cache = CachingTokenProvider(Provider(), clock=lambda: now[0])
    refused = cache.get_token()
    now[0] += 120.0
    release.clear()
    entered.clear()
    results: dict[str, AccessToken] = {}
    ahead = threading.Thread(target=lambda: results.update(ahead=cache.get_token()))
    ahead.start()
    assert entered.wait(10)
    arrived = threading.Event()
    real_lock = cache._lock

    class Observed:
        def __enter__(self) -> None:
            arrived.set()
            real_lock.acquire()

        def __exit__(self, *exc: object) -> None:
            real_lock.release()

    cache._lock = Observed()  # type: ignore[assignment]
    forced = threading.Thread(
        target=lambda: results.update(forced=cache.get_token(force_refresh=True))
    )
    forced.start()
    assert arrived.wait(10)
    release.set()
    ahead.join(10)
    forced.join(10)
    assert results["ahead"].token == refused.token
    assert results["forced"].token != refused.token
    assert calls == [False, False, True]


def test_async_cache_lock_table_is_safe_across_threads_with_their_own_loops() -> None:
    """Two threads, each running its own event loop, must not corrupt the per-loop lock table."""
    import asyncio
    import threading

    from mailsdk.auth import AccessToken, AsyncCachingTokenProvider

    class Provider:
        async def get_token(self, *, force_refresh: bool = False) -> AccessToken:
            return AccessToken("t", None)

    entered, release = threading.Event(), threading.Event()

    class GatedDict(dict):  # type: ignore[type-arg]
        """Pauses the first iteration after one item, as a thread switch would."""

        gate = True

        def __iter__(self) -> typing.Iterator[typing.Any]:
            it = super().__iter__()
            yield next(it)
            if GatedDict.gate:
                GatedDict.gate = False
                entered.set()
                release.wait(10)
            yield from it

    cache = AsyncCachingTokenProvider(Provider())
    closed = asyncio.new_event_loop()
    closed.close()
    table = GatedDict({closed: asyncio.Lock()})
    cache._locks = table  # type: ignore[assignment]
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(cache.get_token(force_refresh=True))
        except BaseException as exc:
            errors.append(exc)

    first = threading.Thread(target=run)
    first.start()
    assert entered.wait(10)
    second = threading.Thread(target=run)
    second.start()
    second.join(0.5)  # unguarded, the second thread inserts its loop while the first iterates
    release.set()
    first.join(10)
    second.join(10)
    assert errors == []
