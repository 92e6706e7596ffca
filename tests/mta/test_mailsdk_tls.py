"""mailsdk against real Postfix: every TLS mode, certificate verification, plaintext behaviour.

Layer: tests (marker ``mta``). Each test runs with the blocking and the asyncio client (the
``mode`` fixture). Postfix offers STARTTLS on ``smtp_port`` and AUTH only after TLS
(``smtpd_tls_auth_only``); ``smtps_port`` is implicit TLS (RFC 8314 §3.3).
"""

from __future__ import annotations

import pytest
from tests._support.modes import Mode
from tests._support.mta import Credentials, MtaEnvironment, as_sent, build_message
from tests.mta.mailsdk_support import (
    ALL_MECHANISMS,
    SENDER,
    ca_settings,
    smtp_builder,
)

from mailsdk import AuthError, CapabilityError, ConfigurationError, TLSError, TlsSettings

pytestmark = pytest.mark.mta

TLS_VERSIONS = ("TLSv1.2", "TLSv1.3")


async def test_starttls_required_verifies_against_the_test_ca(
    mode: Mode, mta_env: MtaEnvironment
) -> None:
    message, message_id = build_message("alice@example.test")
    async with mode.session(smtp_builder(mta_env, "starttls")) as s:
        assert s.tls is not None
        assert s.tls.version in TLS_VERSIONS
        # RFC 3207 §4.2: the capabilities were asked again after the handshake.
        assert not s.capabilities.starttls
        assert s.capabilities.auth_mechanisms == ALL_MECHANISMS
        assert s.capabilities.max_size == mta_env.message_size_limit
        result = await s.sendmail(SENDER, ["alice@example.test"], message)
    assert result.accepted == ("alice@example.test",)
    assert as_sent(mta_env.wait_for_message("alice", message_id)) == message


async def test_implicit_tls_then_auth(
    mode: Mode, mta_env: MtaEnvironment, alice: Credentials
) -> None:
    message, message_id = build_message("bob@example.test")
    builder = smtp_builder(mta_env, "implicit").with_credentials(alice.username, alice.password)
    async with mode.session(builder) as s:
        assert s.tls is not None
        assert s.tls.version in TLS_VERSIONS
        assert not s.capabilities.starttls  # the wrapper-mode listener never offers it
        assert s.mechanism == "SCRAM-SHA-256"
        result = await s.sendmail(SENDER, ["bob@example.test"], message)
    assert result.ok
    assert as_sent(mta_env.wait_for_message("bob", message_id)) == message


async def test_opportunistic_upgrades_when_starttls_is_offered(
    mode: Mode, mta_env: MtaEnvironment, alice: Credentials
) -> None:
    builder = smtp_builder(mta_env, "opportunistic").with_credentials(
        alice.username, alice.password, mechanisms=["PLAIN"], allow_plaintext=True
    )
    message, message_id = build_message("carol@example.test")
    async with mode.session(builder) as s:
        assert s.tls is not None
        # AUTH is only offered after TLS: that it worked proves the upgrade happened first.
        assert s.mechanism == "PLAIN"
        await s.sendmail(SENDER, ["carol@example.test"], message)
    assert as_sent(mta_env.wait_for_message("carol", message_id)) == message


async def test_none_stays_plaintext_and_delivers_locally_without_auth(
    mode: Mode, mta_env: MtaEnvironment
) -> None:
    message, message_id = build_message("alice@example.test")
    async with mode.session(smtp_builder(mta_env, "none")) as s:
        assert s.tls is None
        assert s.capabilities.starttls  # offered, deliberately not used
        assert s.capabilities.auth_mechanisms == ()  # smtpd_tls_auth_only
        result = await s.sendmail(SENDER, ["alice@example.test"], message)
    assert result.accepted == ("alice@example.test",)
    assert result.queue_id is not None
    assert as_sent(mta_env.wait_for_message("alice", message_id)) == message


async def test_none_with_credentials(
    mode: Mode, mta_env: MtaEnvironment, alice: Credentials
) -> None:
    """Credentials over plaintext need ``allow_plaintext``; then AUTH is simply not offered."""
    builder = smtp_builder(mta_env, "none")
    with pytest.raises(ConfigurationError, match="allow_plaintext"):
        mode.build(builder.with_credentials(alice.username, alice.password))
    allowed = builder.with_credentials(alice.username, alice.password, allow_plaintext=True)
    with pytest.raises(AuthError, match="does not offer AUTH") as excinfo:
        await mode.connect(allowed)
    assert alice.password not in repr(excinfo.value)
    # The same through Session.login on an open plaintext session.
    async with mode.session(builder) as s:
        with pytest.raises(AuthError, match="does not offer AUTH"):
            await s.login(alice.username, alice.password, allow_plaintext=True)
        assert s.mechanism is None
        assert (await s.noop()).code == 250  # the session is still usable


async def test_session_starttls_upgrades_a_plaintext_session(
    mode: Mode, mta_env: MtaEnvironment, alice: Credentials
) -> None:
    async with mode.session(smtp_builder(mta_env, "none")) as s:
        assert s.tls is None
        info = await s.starttls()
        assert info.version in TLS_VERSIONS
        assert s.tls == info
        assert s.capabilities.auth_mechanisms == ALL_MECHANISMS
        assert await s.login(alice.username, alice.password) == "SCRAM-SHA-256"


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_the_system_ca_store_does_not_trust_the_test_server(
    mode: Mode, mta_env: MtaEnvironment, alice: Credentials, tls: str
) -> None:
    builder = smtp_builder(mta_env, tls, settings=TlsSettings()).with_credentials(
        alice.username, alice.password
    )
    with pytest.raises(TLSError, match="verif") as excinfo:
        await mode.connect(builder)
    assert alice.password not in str(excinfo.value)


@pytest.mark.parametrize(
    ("server_hostname", "trusted"),
    [("mx.example.test", True), ("localhost", True), ("other.example.test", False)],
)
async def test_the_certificate_is_checked_against_server_hostname(
    mode: Mode, mta_env: MtaEnvironment, server_hostname: str, trusted: bool
) -> None:
    builder = smtp_builder(mta_env, "starttls").with_tls(
        "starttls", settings=ca_settings(mta_env), server_hostname=server_hostname
    )
    if not trusted:
        with pytest.raises(TLSError):
            await mode.connect(builder)
        return
    async with mode.session(builder) as s:
        assert s.tls is not None
        assert (await s.noop()).code == 250


async def test_without_starttls_on_offer(mode: Mode, mta_env: MtaEnvironment) -> None:
    """Dovecot LMTP offers no STARTTLS: opportunistic goes on in plaintext, required stops."""
    base = smtp_builder(mta_env, port=mta_env.lmtp_port).with_lmtp()
    async with mode.session(base.with_tls("opportunistic", settings=ca_settings(mta_env))) as s:
        assert s.tls is None
        assert not s.capabilities.starttls
        assert (await s.noop()).code == 250
    with pytest.raises(CapabilityError, match="STARTTLS") as excinfo:
        await mode.connect(base.with_tls("starttls", settings=ca_settings(mta_env)))
    assert excinfo.value.extension == "STARTTLS"
