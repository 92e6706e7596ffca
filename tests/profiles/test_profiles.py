"""``mailsdk.profiles``: the config file the command line reads, turned into a builder for
programs (no prompt), and the same profile used by the Celery and Django integrations."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable

import pytest
from tests._support.smtpd import SmtpdServer

from mailsdk.errors import ConfigurationError
from mailsdk.profiles import builder_for_profile, load_config


def _config(tmp_path: pathlib.Path, body: str) -> pathlib.Path:
    path = tmp_path / "config.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_a_profile_builds_a_client_that_sends(
    smtpd_factory: Callable[..., SmtpdServer], tmp_path: pathlib.Path
) -> None:
    server = smtpd_factory()
    path = _config(
        tmp_path,
        f'[profiles.local]\nserver = "127.0.0.1:{server.port}"\ntls = "none"\ntimeout = 7\n'
        'local_hostname = "worker.test"\n',
    )
    builder = builder_for_profile(load_config(path).profile("local"))
    with builder.build().connect() as session:
        session.send_message(
            b"Subject: hi\r\n\r\nbody\r\n", sender="a@client.test", recipients=["b@example.test"]
        )
    [message] = server.recorder.messages
    assert message.rcpt_tos == ["b@example.test"]
    assert "EHLO" in server.recorder.verbs


def test_credentials_come_from_the_environment_or_a_private_file_never_the_file_itself(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret-from-file\n", encoding="utf-8")
    os.chmod(secret, 0o644)
    path = _config(
        tmp_path,
        '[profiles.env]\nserver = "smtp.example.test:587"\nuser = "me"\n'
        'password_env = "TEST_PROFILE_PW"\n'
        f'[profiles.file]\nserver = "smtp.example.test:587"\nuser = "me"\npassword_file = "{secret}"\n'
        '[profiles.nopw]\nserver = "smtp.example.test:587"\nuser = "me"\n'
        '[profiles.url]\nserver = "smtp://me:inline-pw@smtp.example.test:587"\n'
        '[profiles.oauth]\nserver = "smtp.office365.com:587"\nuser = "me@contoso.test"\n'
        '[profiles.oauth.oauth]\nprovider = "msal-app-only"\nclient_id = "x"\n',
    )
    config = load_config(path)
    monkeypatch.setenv("TEST_PROFILE_PW", "s3cret-from-env")
    built = builder_for_profile(config.profile("env")).build()
    assert "s3cret-from-env" not in repr(built) and "s3cret-from-env" not in repr(built.config)
    with pytest.raises(ConfigurationError, match="chmod 600") as unsafe:
        builder_for_profile(config.profile("file"))
    assert "s3cret" not in str(unsafe.value)
    os.chmod(secret, 0o600)
    assert "s3cret" not in repr(builder_for_profile(config.profile("file")).build())
    with pytest.raises(ConfigurationError, match="password_env or password_file"):
        builder_for_profile(config.profile("nopw"))
    with pytest.raises(ConfigurationError, match="contains a password") as inline:
        builder_for_profile(config.profile("url"))
    assert "inline-pw" not in str(inline.value)
    with pytest.raises(ConfigurationError, match="client_secret_env") as no_secret:
        builder_for_profile(config.profile("oauth"))  # OAuth is built: its secret is missing
    assert "profile 'oauth'" in str(no_secret.value)
    with pytest.raises(ConfigurationError, match="no profile 'missing'"):
        config.profile("missing")


def test_celery_and_django_read_the_same_profile(
    smtpd_factory: Callable[..., SmtpdServer], tmp_path: pathlib.Path
) -> None:
    pytest.importorskip("celery", reason="the celery extra is not installed")
    pytest.importorskip("redis", reason="the redis extra is not installed")
    pytest.importorskip("django", reason="the django extra is not installed")
    from django.core import mail
    from django.test import override_settings
    from tests._support.django_setup import ensure_django

    from mailsdk.integrations.celery import settings_from

    server = smtpd_factory()
    path = _config(
        tmp_path, f'[profiles.local]\nserver = "127.0.0.1:{server.port}"\ntls = "none"\n'
    )
    conf = {"mailsdk_profile": "local", "mailsdk_config": str(path), "mailsdk_ledger": None}
    settings = settings_from(conf)
    client = settings.client_factory()()
    assert client.config.endpoint.port == server.port
    with pytest.raises(ConfigurationError, match="no profile"):
        settings_from({**conf, "mailsdk_profile": "other"})
    with pytest.raises(ConfigurationError, match="one of"):
        settings_from({**conf, "mailsdk_client": "x:y"})
    ensure_django()
    with override_settings(
        EMAIL_BACKEND="mailsdk.integrations.django.EmailBackend",
        EMAIL_HOST="192.0.2.1",  # the profile replaces the EMAIL_* connection settings
        MAILSDK_PROFILE="local",
        MAILSDK_CONFIG_FILE=str(path),
    ):
        assert mail.send_mail("s", "b", "a@client.test", ["b@example.test"]) == 1
    assert [m.rcpt_tos for m in server.recorder.messages] == [["b@example.test"]]
