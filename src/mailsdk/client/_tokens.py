"""Getting an access token for an ``ObtainToken`` action, blocking or on the event loop.

Layer: L5 client (private, drivers' side: this calls the provider, which may do I/O). May
import L0-L4.
"""

from __future__ import annotations

import asyncio
import inspect
import typing

from mailsdk.auth.tokens import AccessToken, AsyncTokenProvider, TokenProvider
from mailsdk.errors import ConfigurationError, TokenError

__all__ = ["aobtain_token", "obtain_token"]


def obtain_token(provider: object | None, *, force_refresh: bool) -> AccessToken:
    """Ask a synchronous provider for a token.

    Raises:
        ConfigurationError: no provider, or an asynchronous one.
    """
    get = getattr(provider, "get_token", None)
    if get is None or inspect.iscoroutinefunction(get):
        raise ConfigurationError("OAuth needs a synchronous token provider for the blocking client")
    return typing.cast("TokenProvider", provider).get_token(force_refresh=force_refresh)


async def aobtain_token(
    provider: object | None, *, force_refresh: bool, deadline: float | None
) -> AccessToken:
    """Ask a provider (asynchronous, or blocking in a worker thread) for a token.

    The command deadline bounds the wait, so a hanging identity provider cannot hang the
    session (a blocking provider's thread is abandoned, not killed).

    Raises:
        ConfigurationError: no provider.
        TokenError: no token within ``deadline`` seconds.
    """
    get = getattr(provider, "get_token", None)
    if get is None:
        raise ConfigurationError("OAuth needs a token provider")
    try:
        async with asyncio.timeout(deadline):
            if inspect.iscoroutinefunction(get):
                aprovider = typing.cast("AsyncTokenProvider", provider)
                return await aprovider.get_token(force_refresh=force_refresh)
            # msal and google-auth are blocking: keep them off the event loop.
            sync = typing.cast("TokenProvider", provider)
            return await asyncio.to_thread(sync.get_token, force_refresh=force_refresh)
    except TimeoutError:
        raise TokenError(f"no access token within the {deadline} s command deadline") from None
