"""Real msal, real server: Office365-style app-only OAuth against Postfix + Dovecot.

msal talks to a local HTTPS authority (tests/_support/oauth_authority.py); the access tokens it
issues (``at-1``, ``at-2``...) are made valid at Dovecot's token-introspection endpoint; the
client authenticates with XOAUTH2 over STARTTLS. Checks the caching story end to end: the first
session fetches a token, the next is served from the cache, and a token the server stops
accepting is replaced by exactly one forced refresh.
"""

from __future__ import annotations

import contextlib
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from tests._support.modes import Mode, SessionProxy
from tests._support.mta import MtaEnvironment
from tests._support.oauth_authority import OAuthAuthority
from tests.mta.mailsdk_support import smtp_builder

from mailsdk.auth.msal import MsalAppOnlyProvider

pytestmark = pytest.mark.mta

CLIENT_ID = "00000000-0000-0000-0000-0000000c1e47"
CLIENT_SECRET = "app-secret-never-logged"


@pytest.fixture
def authority(tmp_path: Path) -> Iterator[OAuthAuthority]:
    with OAuthAuthority(trustme.CA(), tmp_path) as auth:
        yield auth


@contextlib.asynccontextmanager
async def session_of(mode: Mode, client: object) -> typing.AsyncIterator[SessionProxy]:
    """A session of an existing client (so sessions share the client's token cache)."""
    proxy = SessionProxy(await mode.call(client.connect))  # type: ignore[attr-defined]
    async with proxy:
        yield proxy


def _provider(authority: OAuthAuthority, username: str) -> MsalAppOnlyProvider:
    return MsalAppOnlyProvider(
        None,
        CLIENT_ID,
        CLIENT_SECRET,
        username=username,
        authority=authority.authority_url,
        http_client=authority.session(),
        instance_discovery=False,
    )


async def test_msal_tokens_cache_and_one_forced_refresh(
    mode: Mode, mta_env: MtaEnvironment, authority: OAuthAuthority
) -> None:
    user = mta_env.users["alice"].username
    for token in ("at-1", "at-2"):
        mta_env.introspection.add_token(token, user)
    builder = smtp_builder(mta_env).with_token_provider(
        user, _provider(authority, user), mechanisms=["XOAUTH2"]
    )
    client = mode.build(builder)

    async with session_of(mode, client) as s:
        assert s.mechanism == "XOAUTH2"
    assert len(authority.token_requests("client_credentials")) == 1

    async with session_of(mode, client) as s:  # served from the cache: no new token request
        assert s.mechanism == "XOAUTH2"
    assert len(authority.token_requests("client_credentials")) == 1

    # The server stops accepting the cached token (revoked, say): the client retries exactly
    # once with a token msal fetches afresh, and the session opens.
    mta_env.introspection.revoke_token("at-1")
    before = mta_env.introspection.requests
    async with session_of(mode, client) as s:
        assert s.mechanism == "XOAUTH2"
    assert len(authority.token_requests("client_credentials")) == 2
    assert mta_env.introspection.requests == before + 2  # the refused token, then the fresh one
