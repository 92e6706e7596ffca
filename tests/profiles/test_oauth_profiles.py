"""OAuth profiles through :func:`mailsdk.profiles.builder_for_profile`: real msal and google-auth
against the local HTTPS authority, real SMTP (the test kit's aiosmtpd with XOAUTH2 over
STARTTLS), in both modes; and no secret in a log, repr, error or span."""

from __future__ import annotations

import json
import logging
import pathlib

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests._support.modes import Mode
from tests._support.oauth_authority import OAuthAuthority

from mailsdk.errors import ConfigurationError, TokenError
from mailsdk.profiles import Profile, builder_for_profile, load_config, token_provider_for_profile
from mailsdk.testing import MailServer

MAILBOX = "sender@contoso.example"
CLIENT_ID = "11111111-0000-0000-0000-000000000001"
CLIENT_SECRET = "client-SECRET-value-42"
REFRESH_TOKEN = "1//refresh-SECRET-token"
MESSAGE = b"Subject: oauth\r\n\r\nbody\r\n"


@pytest.fixture
def server(tmp_path: pathlib.Path, oauth_authority: OAuthAuthority) -> MailServer:
    """STARTTLS, XOAUTH2/OAUTHBEARER accepting the first token the authority issues."""
    tokens = {MAILBOX: oauth_authority.token_prefix + "1"}
    mail = MailServer(tls="starttls", tokens=tokens).start()
    assert mail.ca is not None
    mail.ca.cert_pem.write_to_path(str(tmp_path / "smtp-ca.pem"))
    yield mail  # type: ignore[misc]
    mail.stop()


def _profile(tmp_path: pathlib.Path, server: MailServer, oauth: str) -> Profile:
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[profiles.o365]
server = "127.0.0.1:{server.port}"
tls = "starttls"
ca_file = "{tmp_path / "smtp-ca.pem"}"
timeout = 20
user = "{MAILBOX}"
[profiles.o365.oauth]
{oauth}
""",
        encoding="utf-8",
    )
    return load_config(path).profile("o365")


def _msal_app_only(authority: OAuthAuthority) -> str:
    return f"""provider = "msal-app-only"
client_id = "{CLIENT_ID}"
client_secret_env = "TEST_O365_SECRET"
authority = "{authority.authority_url}"
instance_discovery = false
ca_file = "{authority.ca_path}"
"""


def _tracing() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _no_secret(texts: list[str], *secrets: str) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"a secret leaked: {text[:200]!r}"


async def test_an_msal_profile_sends_with_xoauth2(
    mode: Mode,
    tmp_path: pathlib.Path,
    server: MailServer,
    oauth_authority: OAuthAuthority,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("TEST_O365_SECRET", CLIENT_SECRET)
    caplog.set_level(logging.DEBUG)
    tracer_provider, exporter = _tracing()
    profile = _profile(tmp_path, server, _msal_app_only(oauth_authority))
    builder = builder_for_profile(profile).with_opentelemetry(tracer_provider=tracer_provider)
    async with mode.session(builder) as session:
        await session.send_message(MESSAGE, sender=MAILBOX, recipients=["b@example.test"])
    [message] = server.messages
    assert message.rcpt_tos == ("b@example.test",)
    assert [(x.mechanism, x.username, x.success) for x in server.logins] == [
        ("XOAUTH2", MAILBOX, True)
    ]
    [request] = oauth_authority.token_requests("client_credentials")
    assert request.client_id == CLIENT_ID
    assert request.scope is not None and "outlook.office365.com/.default" in request.scope
    token = oauth_authority.token_prefix + "1"
    spans = [json.dumps(dict(s.attributes or {})) + s.name for s in exporter.get_finished_spans()]
    assert spans, "the client made no span"
    _no_secret(
        [
            repr(builder),
            repr(mode.build(builder)),
            repr(token_provider_for_profile(profile)[0]),
            *spans,
            *(r.getMessage() for r in caplog.records),
        ],
        CLIENT_SECRET,
        token,
    )
    tracer_provider.shutdown()


async def test_a_google_user_profile_refreshes_and_sends(
    mode: Mode,
    tmp_path: pathlib.Path,
    oauth_authority: OAuthAuthority,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    user_file = tmp_path / "authorized-user.json"
    user_file.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "google-client",
                "client_secret": CLIENT_SECRET,
                "refresh_token": REFRESH_TOKEN,
            }
        ),
        encoding="utf-8",
    )
    user_file.chmod(0o600)
    token = f"ya29.{oauth_authority.token_prefix}1"
    with MailServer(tls="starttls", tokens={MAILBOX: token}) as mail:
        assert mail.ca is not None
        mail.ca.cert_pem.write_to_path(str(tmp_path / "smtp-ca.pem"))
        profile = _profile(
            tmp_path,
            mail,
            f"""provider = "google-user"
authorized_user_file = "{user_file}"
token_uri = "{oauth_authority.google_token_uri}"
ca_file = "{oauth_authority.ca_path}"
""",
        )
        builder = builder_for_profile(profile)
        async with mode.session(builder) as session:
            await session.send_message(MESSAGE, sender=MAILBOX, recipients=["c@example.test"])
        assert [m.rcpt_tos for m in mail.messages] == [("c@example.test",)]
        assert [x.success for x in mail.logins] == [True]
    [request] = oauth_authority.token_requests("refresh_token")
    assert request.form["refresh_token"] == REFRESH_TOKEN
    provider, _scopes = token_provider_for_profile(profile)
    _no_secret(
        [repr(builder), repr(provider), *(r.getMessage() for r in caplog.records)],
        CLIENT_SECRET,
        REFRESH_TOKEN,
        token,
    )


async def test_a_static_token_profile_sends(
    mode: Mode, tmp_path: pathlib.Path, server: MailServer, oauth_authority: OAuthAuthority
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(oauth_authority.token_prefix + "1\n", encoding="utf-8")
    token_file.chmod(0o600)
    profile = _profile(
        tmp_path, server, f'provider = "static"\naccess_token_file = "{token_file}"\n'
    )
    builder = builder_for_profile(profile)
    async with mode.session(builder) as session:
        await session.send_message(MESSAGE, sender=MAILBOX, recipients=["d@example.test"])
    assert [x.success for x in server.logins] == [True]
    assert oauth_authority.token_requests() == []  # a static token never asks anyone
    assert oauth_authority.token_prefix not in repr(builder)


async def test_a_refused_client_secret_is_a_token_error_without_the_secret(
    mode: Mode,
    tmp_path: pathlib.Path,
    server: MailServer,
    oauth_authority: OAuthAuthority,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_O365_SECRET", CLIENT_SECRET)
    oauth_authority.error = {
        "error": "invalid_client",
        "error_description": f"AADSTS7000215: Invalid client secret provided: {CLIENT_SECRET}",
    }
    profile = _profile(tmp_path, server, _msal_app_only(oauth_authority))
    with pytest.raises(TokenError) as refused:
        await mode.connect(builder_for_profile(profile))
    assert "invalid_client" in str(refused.value)
    _no_secret([str(refused.value), repr(refused.value)], CLIENT_SECRET)
    assert server.messages == [] and server.logins == []


def test_oauth_settings_errors_name_the_key_never_the_value(
    tmp_path: pathlib.Path,
    server: MailServer,
    oauth_authority: OAuthAuthority,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    missing = _profile(tmp_path, server, _msal_app_only(oauth_authority))
    with pytest.raises(ConfigurationError, match="TEST_O365_SECRET is not set"):
        builder_for_profile(missing)
    static = _profile(tmp_path, server, 'provider = "static"\n')
    with pytest.raises(ConfigurationError, match="access_token_env or access_token_file"):
        builder_for_profile(static)
    broken = tmp_path / "user.json"
    broken.write_text('{"refresh_token": "' + REFRESH_TOKEN + '", oops', encoding="utf-8")
    google = _profile(
        tmp_path, server, f'provider = "google-user"\nauthorized_user_file = "{broken}"\n'
    )
    with pytest.raises(ConfigurationError, match="cannot read") as unreadable:
        builder_for_profile(google)
    assert REFRESH_TOKEN not in str(unreadable.value)
    monkeypatch.setenv("TEST_O365_SECRET", CLIENT_SECRET)
    nobody = _profile(tmp_path, server, _msal_app_only(oauth_authority))
    nobody = Profile(nobody.name, {k: v for k, v in nobody.values.items() if k != "user"})
    with pytest.raises(ConfigurationError, match="OAuth needs user"):
        builder_for_profile(nobody)


def test_a_device_code_profile_never_prompts_a_program(
    tmp_path: pathlib.Path, server: MailServer, oauth_authority: OAuthAuthority
) -> None:
    profile = _profile(
        tmp_path,
        server,
        f"""provider = "msal-device-code"
client_id = "{CLIENT_ID}"
authority = "{oauth_authority.authority_url}"
instance_discovery = false
ca_file = "{oauth_authority.ca_path}"
""",
    )
    provider, scopes = token_provider_for_profile(profile)
    assert scopes == ["https://outlook.office.com/SMTP.Send"]
    with pytest.raises(TokenError):
        provider.get_token()  # nothing cached, no prompt: refuse rather than wait for a person
    assert oauth_authority.token_requests() == []


def test_celery_and_django_send_with_an_oauth_profile(
    tmp_path: pathlib.Path,
    server: MailServer,
    oauth_authority: OAuthAuthority,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("celery", reason="the celery extra is not installed")
    pytest.importorskip("django", reason="the django extra is not installed")
    from django.core import mail
    from django.test import override_settings
    from tests._support.django_setup import ensure_django

    from mailsdk.integrations.celery import settings_from

    monkeypatch.setenv("TEST_O365_SECRET", CLIENT_SECRET)
    cache = f'cache_file = "{tmp_path / "msal-cache.json"}"\n'  # shared by both clients
    profile = _profile(tmp_path, server, _msal_app_only(oauth_authority) + cache)
    path = tmp_path / "config.toml"
    conf = {"mailsdk_profile": profile.name, "mailsdk_config": str(path), "mailsdk_ledger": None}
    client = settings_from(conf).client_factory()()  # what a Celery worker builds
    with client.connect() as session:
        session.send_message(MESSAGE, sender=MAILBOX, recipients=["celery@example.test"])
    ensure_django()
    with override_settings(
        EMAIL_BACKEND="mailsdk.integrations.django.EmailBackend",
        MAILSDK_PROFILE=profile.name,
        MAILSDK_CONFIG_FILE=str(path),
    ):
        assert mail.send_mail("s", "b", MAILBOX, ["django@example.test"]) == 1
    assert [m.rcpt_tos for m in server.messages] == [
        ("celery@example.test",),
        ("django@example.test",),
    ]
    assert [(x.mechanism, x.success) for x in server.logins] == [("XOAUTH2", True)] * 2
    assert len(oauth_authority.token_requests("client_credentials")) == 1  # the cache served
