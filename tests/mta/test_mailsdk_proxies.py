"""mailsdk through real proxies into the real Postfix: SOCKS5 (danted) and HTTP CONNECT (tinyproxy).

Layer: tests (marker ``mta``), both modes. STARTTLS and implicit TLS run inside the tunnel and
verify Postfix's certificate (``mta_env.server_name``) with the suite's CA; AUTH follows TLS, so
a delivered message proves the whole stack went through the proxy.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests._support.modes import Mode
from tests._support.mta import Credentials, MtaEnvironment, as_sent, build_message
from tests._support.proxy_servers import (
    SOCKS_PASSWORD,
    SOCKS_USER,
    ProxyServer,
    danted,
    tinyproxy,
)
from tests.mta.mailsdk_support import SENDER, smtp_builder

pytestmark = pytest.mark.mta


@pytest.fixture(scope="module")
def socks_auth() -> Iterator[ProxyServer]:
    with danted(auth=True) as server:
        yield server


@pytest.fixture
def http_proxy(mta_env: MtaEnvironment) -> Iterator[ProxyServer]:
    with tinyproxy([mta_env.smtp_port, mta_env.smtps_port]) as server:
        yield server


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_socks5_with_auth_into_postfix(
    mode: Mode, mta_env: MtaEnvironment, alice: Credentials, socks_auth: ProxyServer, tls: str
) -> None:
    message, message_id = build_message("bob@example.test")
    builder = (
        smtp_builder(mta_env, tls)
        .with_credentials(alice.username, alice.password)
        .with_proxy(socks_auth.url("socks5", SOCKS_USER, SOCKS_PASSWORD))
    )
    async with mode.session(builder) as s:
        assert s.tls is not None
        result = await s.sendmail(SENDER, ["bob@example.test"], message)
    assert result.ok
    assert as_sent(mta_env.wait_for_message("bob", message_id)) == message
    port = mta_env.smtps_port if tls == "implicit" else mta_env.smtp_port
    assert f".{port}" in socks_auth.log()


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_http_connect_into_postfix(
    mode: Mode, mta_env: MtaEnvironment, alice: Credentials, http_proxy: ProxyServer, tls: str
) -> None:
    message, message_id = build_message("carol@example.test")
    builder = (
        smtp_builder(mta_env, tls)
        .with_credentials(alice.username, alice.password)
        .with_proxy(http_proxy.url("http"))
    )
    async with mode.session(builder) as s:
        assert s.tls is not None
        result = await s.sendmail(SENDER, ["carol@example.test"], message)
    assert result.ok
    assert as_sent(mta_env.wait_for_message("carol", message_id)) == message
