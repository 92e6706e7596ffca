"""Where each setting comes from: an override (a command-line option) wins over the
``MAILSDK_<KEY>`` variable, which wins over the profile; secrets likewise, and never from a
place that could show them (a server string, the command line)."""

from __future__ import annotations

import pathlib

import pytest

from mailsdk.errors import ConfigurationError
from mailsdk.flows import TlsMode
from mailsdk.profiles import Overrides, Profile, builder_for_profile, load_config
from mailsdk.protocol.dialect import Dialect


def _profile(tmp_path: pathlib.Path, body: str, name: str = "p") -> Profile:
    path = tmp_path / "config.toml"
    path.write_text(f"[profiles.{name}]\n{body}", encoding="utf-8")
    return load_config(path).profile(name)


FULL = """server = "profile.example:2525"
tls = "implicit"
ca_file = "/profile/ca.pem"
timeout = 7
local_hostname = "profile.host"
user = "profile-user"
password_env = "TEST_PROFILE_PW"
auth = "plain"
"""


def test_the_profile_alone(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_PROFILE_PW", "pw-profile")
    config = builder_for_profile(_profile(tmp_path, FULL)).config()
    assert (config.endpoint.host, config.endpoint.port) == ("profile.example", 2525)
    assert config.tls_mode is TlsMode.IMPLICIT
    assert config.tls.ca_file == "/profile/ca.pem"
    assert config.timeouts.command == 7 and config.timeouts.connect == 7
    assert config.local_hostname == "profile.host"
    assert config.auth is not None and config.auth.username == "profile-user"
    assert config.auth.password is not None and config.auth.password.reveal() == "pw-profile"
    assert config.auth.mechanisms == ("PLAIN",)


def test_variables_win_over_the_profile(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_PROFILE_PW", "pw-profile")
    for key, value in {
        "SERVER": "env.example:2626",
        "TLS": "starttls",
        "CA_FILE": "/env/ca.pem",
        "TIMEOUT": "9.5",
        "LOCAL_HOSTNAME": "env.host",
        "USER": "env-user",
        "PASSWORD": "pw-env",
    }.items():
        monkeypatch.setenv(f"MAILSDK_{key}", value)
    config = builder_for_profile(_profile(tmp_path, FULL)).config()
    assert (config.endpoint.host, config.endpoint.port) == ("env.example", 2626)
    assert config.tls_mode is TlsMode.STARTTLS
    assert config.tls.ca_file == "/env/ca.pem"
    assert config.timeouts.command == 9.5
    assert config.local_hostname == "env.host"
    assert config.auth is not None and config.auth.username == "env-user"
    assert config.auth.password is not None and config.auth.password.reveal() == "pw-env"


def test_overrides_win_over_variables_and_the_profile(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILSDK_SERVER", "env.example:2626")
    monkeypatch.setenv("MAILSDK_TIMEOUT", "9.5")
    monkeypatch.setenv("MAILSDK_LOCAL_HOSTNAME", "env.host")
    monkeypatch.setenv("MAILSDK_PASSWORD", "pw-env")
    monkeypatch.setenv("TEST_FLAG_PW", "pw-flag")
    overrides = Overrides(
        server="flag.example:2727",
        tls="starttls",
        ca_file="/flag/ca.pem",
        timeout=3.0,
        local_hostname="flag.host",
        user="flag-user",
        password_env="TEST_FLAG_PW",
        auth=("scram-sha-256,login",),
        lmtp=True,
    )
    config = builder_for_profile(_profile(tmp_path, FULL), overrides).config()
    assert (config.endpoint.host, config.endpoint.port) == ("flag.example", 2727)
    assert config.tls_mode is TlsMode.STARTTLS
    assert config.tls.ca_file == "/flag/ca.pem"
    assert config.timeouts.command == 3.0
    assert config.local_hostname == "flag.host"
    assert config.dialect is Dialect.LMTP
    assert config.auth is not None and config.auth.username == "flag-user"
    assert config.auth.password is not None and config.auth.password.reveal() == "pw-flag"
    assert config.auth.mechanisms == ("SCRAM-SHA-256", "LOGIN")


def test_a_named_password_variable_has_no_fallback(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # another account's password (MAILSDK_PASSWORD, the profile's) must not reach this server
    monkeypatch.setenv("MAILSDK_PASSWORD", "pw-env")
    monkeypatch.setenv("TEST_PROFILE_PW", "pw-profile")
    with pytest.raises(ConfigurationError, match="TEST_UNSET_PW is not set"):
        builder_for_profile(_profile(tmp_path, FULL), Overrides(password_env="TEST_UNSET_PW"))


def test_a_prompt_is_asked_only_when_no_password_is_found(tmp_path: pathlib.Path) -> None:
    from mailsdk import Secret

    asked: list[str] = []

    def ask(user: str) -> Secret:
        asked.append(user)
        return Secret("typed")

    profile = _profile(tmp_path, 'server = "mx.example:587"\nuser = "me"\n')
    with pytest.raises(ConfigurationError, match="no password for user 'me'"):
        builder_for_profile(profile)  # no prompt: a program gets an error, never a hang
    config = builder_for_profile(profile, ask_password=ask).config()
    assert asked == ["me"]
    assert config.auth is not None and config.auth.password is not None
    assert config.auth.password.reveal() == "typed"
    bare = builder_for_profile(profile, authenticate=False).config()
    assert bare.auth is None and asked == ["me"]  # no authentication: no secret read


def test_port_465_means_implicit_tls_unless_tls_is_given(tmp_path: pathlib.Path) -> None:
    profile = _profile(tmp_path, 'server = "mx.example:465"\n')
    assert builder_for_profile(profile).config().tls_mode is TlsMode.IMPLICIT
    forced = builder_for_profile(profile, Overrides(tls="starttls")).config()
    assert forced.tls_mode is TlsMode.STARTTLS


def test_a_user_in_the_server_url_brings_its_own_authentication(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILSDK_PASSWORD", "pw-env")
    profile = _profile(tmp_path, 'server = "smtp://urluser@mx.example:587"\nuser = "other"\n')
    config = builder_for_profile(profile).config()
    assert config.auth is not None and config.auth.username == "urluser"
    flagged = builder_for_profile(profile, Overrides(user="flag-user")).config()
    assert flagged.auth is not None and flagged.auth.username == "flag-user"
    with pytest.raises(ConfigurationError, match=r"\?auth="):
        builder_for_profile(profile, Overrides(auth=("PLAIN",)))
    probe = builder_for_profile(profile, authenticate=False).config()
    assert probe.auth is None


@pytest.mark.parametrize(
    "server",
    [
        "me:hunter2-secret@mx.example",
        "smtp:me:hunter2-secret@mx.example",
        "smtp://me:hunter2-secret@mx.example",
    ],
)
def test_credentials_in_the_server_string_are_refused_without_echoing_them(
    tmp_path: pathlib.Path, server: str
) -> None:
    for profile, overrides in (
        (_profile(tmp_path, f'server = "{server}"\n'), None),
        (Profile(None), Overrides(server=server)),
    ):
        with pytest.raises(ConfigurationError) as refused:
            builder_for_profile(profile, overrides)
        assert "hunter2" not in str(refused.value) and "hunter2" not in repr(refused.value)


def test_a_malformed_timeout_variable_is_a_configuration_error(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILSDK_TIMEOUT", "soon")
    with pytest.raises(ConfigurationError, match="MAILSDK_TIMEOUT"):
        builder_for_profile(_profile(tmp_path, 'server = "mx.example"\n'))
    assert (
        builder_for_profile(_profile(tmp_path, 'server = "mx.example"\n'), Overrides(timeout=4.0))
        .config()
        .timeouts.command
        == 4.0
    )  # the override is used, the variable never read


def test_a_user_override_turns_an_oauth_profile_into_password_authentication(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILSDK_PASSWORD", "pw-env")
    profile = _profile(
        tmp_path,
        'server = "mx.example:587"\nuser = "box@example.test"\n'
        '[profiles.p.oauth]\nprovider = "static"\naccess_token_env = "TEST_UNSET_TOKEN"\n',
    )
    with pytest.raises(ConfigurationError, match="TEST_UNSET_TOKEN"):
        builder_for_profile(profile)
    config = builder_for_profile(profile, Overrides(user="box@example.test")).config()
    assert config.auth is not None and config.auth.token_provider is None
    assert config.auth.password is not None


def test_no_server_anywhere(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigurationError, match=r"has no server.*MAILSDK_SERVER"):
        builder_for_profile(_profile(tmp_path, 'user = "me"\n'))
    with pytest.raises(ConfigurationError, match="auth needs a user"):
        builder_for_profile(Profile(None), Overrides(server="mx.example", auth=("PLAIN",)))
