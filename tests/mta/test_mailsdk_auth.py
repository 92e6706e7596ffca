"""mailsdk against real Postfix + Dovecot SASL: every mechanism, failures, the OAuth retry.

Layer: tests (marker ``mta``). Each test runs with the blocking and the asyncio client (the
``mode`` fixture). Password mechanisms go to Dovecot's passwd-file, XOAUTH2/OAUTHBEARER to its
oauth2 passdb, which asks the suite's token-introspection endpoint (RFC 7662). A failed AUTH
costs Dovecot's fixed 0.5 s delay, so the failure cases are kept few.
"""

from __future__ import annotations

import asyncio
import base64
import pickle
from concurrent.futures import ThreadPoolExecutor

import pytest
from tests._support.modes import Mode, SessionProxy
from tests._support.mta import Credentials, MtaEnvironment, build_message
from tests.mta.mailsdk_support import (
    RELAY_RECIPIENT,
    SENDER,
    CountingTokenProvider,
    enable_wire_log,
    smtp_builder,
    wire_lines,
)

from mailsdk import AsyncClient, AuthenticationFailed, EnhancedStatus
from mailsdk.auth.tokens import StaticTokenProvider

pytestmark = pytest.mark.mta

PASSWORD_MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256")
OAUTH_MECHANISMS = ("XOAUTH2", "OAUTHBEARER")
WRONG_PASSWORD = "Wr0ng-Passw0rd-9f3k"
WRONG_TOKEN = "wrong-token-7d2c"


def secret_forms(secret: str, username: str) -> list[str]:
    """The secret as it could leak: itself and inside base64 SASL payloads."""
    plain = base64.b64encode(f"\0{username}\0{secret}".encode()).decode()
    return [secret, base64.b64encode(secret.encode()).decode(), plain]


def assert_not_leaked(secret: str, username: str, *texts: str) -> None:
    for form in secret_forms(secret, username):
        for text in texts:
            assert form not in text, f"secret leaked into {text!r}"


async def assert_authenticated(s: SessionProxy) -> None:
    """Postfix relays to another domain only for authenticated clients (554 5.7.1 otherwise)."""
    message, _ = build_message(RELAY_RECIPIENT)
    result = await s.sendmail(SENDER, [RELAY_RECIPIENT], message)
    assert result.accepted == (RELAY_RECIPIENT,)


@pytest.mark.parametrize("mechanism", PASSWORD_MECHANISMS)
async def test_password_mechanism(
    mode: Mode, mta_env: MtaEnvironment, alice: Credentials, mechanism: str
) -> None:
    builder = smtp_builder(mta_env).with_credentials(
        alice.username, alice.password, mechanisms=[mechanism]
    )
    async with mode.session(builder) as s:
        assert s.mechanism == mechanism
        await assert_authenticated(s)


async def test_default_preference_is_the_strongest_offered(
    mode: Mode, mta_env: MtaEnvironment, bob: Credentials
) -> None:
    builder = smtp_builder(mta_env).with_credentials(bob.username, bob.password)
    async with mode.session(builder) as s:
        assert s.mechanism == "SCRAM-SHA-256"  # no -PLUS offered; CRAM-MD5 only by name
        await assert_authenticated(s)


@pytest.mark.parametrize("mechanism", OAUTH_MECHANISMS)
async def test_oauth_mechanism_with_a_static_token(
    mode: Mode, mta_env: MtaEnvironment, alice: Credentials, mechanism: str
) -> None:
    assert alice.token is not None
    before = mta_env.introspection.requests
    builder = smtp_builder(mta_env).with_token_provider(
        alice.username, StaticTokenProvider(alice.token), mechanisms=[mechanism]
    )
    async with mode.session(builder) as s:
        assert s.mechanism == mechanism
        await assert_authenticated(s)
    assert mta_env.introspection.requests == before + 1  # Dovecot really checked the token


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
async def test_wrong_password(
    mode: Mode,
    mta_env: MtaEnvironment,
    alice: Credentials,
    mechanism: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    enable_wire_log(caplog)
    builder = smtp_builder(mta_env).with_credentials(
        alice.username, WRONG_PASSWORD, mechanisms=[mechanism]
    )
    with pytest.raises(AuthenticationFailed) as excinfo:
        await mode.connect(builder)
    exc = excinfo.value
    assert exc.smtp_code == 535
    assert exc.enhanced_status == EnhancedStatus(5, 7, 8)
    assert exc.mechanism == mechanism
    assert exc.is_permanent
    # Neither the password nor a base64 payload carrying it is in the error or the wire log.
    log = "\n".join(wire_lines(caplog))
    assert "C: AUTH " + mechanism in log
    assert_not_leaked(
        WRONG_PASSWORD,
        alice.username,
        str(exc),
        repr(exc),
        repr(exc.args),
        repr(pickle.loads(pickle.dumps(exc)).__dict__),
        log,
        caplog.text,
    )


@pytest.mark.parametrize("mechanism", OAUTH_MECHANISMS)
async def test_wrong_token_is_refused_after_one_forced_refresh(
    mode: Mode,
    mta_env: MtaEnvironment,
    alice: Credentials,
    mechanism: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    enable_wire_log(caplog)
    provider = CountingTokenProvider(WRONG_TOKEN, WRONG_TOKEN)
    before = mta_env.introspection.requests
    builder = smtp_builder(mta_env).with_token_provider(
        alice.username, provider, mechanisms=[mechanism]
    )
    with pytest.raises(AuthenticationFailed) as excinfo:
        await mode.connect(builder)
    exc = excinfo.value
    assert exc.smtp_code == 535
    assert exc.enhanced_status == EnhancedStatus(5, 7, 8)
    assert exc.mechanism == mechanism
    # The OAuth error JSON from the 334 challenge (RFC 7628 §3.2.2) was kept.
    assert exc.server_error is not None
    assert "status" in exc.server_error
    # Exactly one retry, with a forced refresh, and both attempts reached the server.
    assert provider.calls == [False, True]
    assert mta_env.introspection.requests == before + 2
    assert [line for line in wire_lines(caplog) if line.startswith("C: AUTH")] == [
        f"C: AUTH {mechanism} ***"
    ] * 2
    assert_not_leaked(
        WRONG_TOKEN,
        alice.username,
        str(exc),
        repr(exc),
        repr(exc.server_error),
        caplog.text,
    )


@pytest.mark.parametrize("mechanism", OAUTH_MECHANISMS)
async def test_a_refused_token_is_refreshed_once_and_then_accepted(
    mode: Mode, mta_env: MtaEnvironment, alice: Credentials, mechanism: str
) -> None:
    assert alice.token is not None
    provider = CountingTokenProvider(WRONG_TOKEN, alice.token)
    builder = smtp_builder(mta_env).with_token_provider(
        alice.username, provider, mechanisms=[mechanism]
    )
    async with mode.session(builder) as s:
        assert s.mechanism == mechanism
        await assert_authenticated(s)
    assert provider.calls == [False, True]


async def test_concurrent_sessions_of_one_client_share_one_token(
    mode: Mode, mta_env: MtaEnvironment, alice: Credentials
) -> None:
    """The builder wraps the provider in a per-client single-flight cache (docs/auth.md)."""
    assert alice.token is not None
    provider = CountingTokenProvider(alice.token, alice.token)
    client = mode.build(smtp_builder(mta_env).with_token_provider(alice.username, provider))
    before = mta_env.introspection.requests
    sessions = 4
    if isinstance(client, AsyncClient):

        async def one() -> str | None:
            async with await client.connect() as s:
                return s.mechanism

        mechanisms = list(await asyncio.gather(*(one() for _ in range(sessions))))
    else:
        sync_client = client

        def one_sync(_: int) -> str | None:
            with sync_client.connect() as s:
                return s.mechanism

        with ThreadPoolExecutor(sessions) as pool:
            mechanisms = list(pool.map(one_sync, range(sessions)))
    assert mechanisms == ["XOAUTH2"] * sessions
    assert provider.calls == [False]
    assert mta_env.introspection.requests == before + sessions
