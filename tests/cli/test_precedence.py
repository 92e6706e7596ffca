"""The command line passes its options to the profiles layer as overrides: an option wins over
the ``MAILSDK_*`` variable, which wins over the profile (the real CLI in a subprocess)."""

from __future__ import annotations

from collections.abc import Callable

from tests._support.smtpd import SmtpdServer
from tests.cli._helpers import PASSWORD, USER, Cli, write_config


def _send(cli: Cli, *args: str, env: dict[str, str] | None = None) -> str:
    proc = cli(
        "send", "--profile", "p", "--from", "a@example.org", "--to", "b@example.com",
        "--body", "x", *args, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_option_over_variable_over_profile(
    cli: Cli, smtpd_factory: Callable[..., SmtpdServer]
) -> None:
    profile_server, env_server, flag_server = smtpd_factory(), smtpd_factory(), smtpd_factory()
    write_config(
        cli,
        f'[profiles.p]\nserver = "127.0.0.1:{profile_server.port}"\ntls = "none"\n'
        'local_hostname = "profile.host"\ntimeout = 20\n',
    )
    _send(cli)
    assert profile_server.recorder.ehlo_names == ["profile.host"]

    env = {
        "MAILSDK_SERVER": f"127.0.0.1:{env_server.port}",
        "MAILSDK_LOCAL_HOSTNAME": "env.host",
    }
    _send(cli, env=env)
    assert env_server.recorder.ehlo_names == ["env.host"]

    _send(cli, "--server", f"127.0.0.1:{flag_server.port}", "--local-hostname", "flag.host",
          env=env)  # fmt: skip
    assert flag_server.recorder.ehlo_names == ["flag.host"]
    assert [len(s.recorder.messages) for s in (profile_server, env_server, flag_server)] == [1] * 3


def test_tls_and_user_options_override_the_profile(
    cli: Cli, tls_server: SmtpdServer, ca_file: str
) -> None:
    write_config(
        cli,
        f'[profiles.p]\nserver = "127.0.0.1:{tls_server.port}"\ntls = "none"\n'
        'user = "mallory"\ntimeout = 20\n',
    )
    env = {"MAILSDK_PASSWORD": PASSWORD}
    plaintext = cli("send", "--profile", "p", "--from", "a@example.org", "--to",
                    "b@example.com", "--body", "x", env=env)  # fmt: skip
    assert plaintext.returncode == 4 and "plaintext" in plaintext.stderr  # the profile's "none"
    _send(cli, "--tls", "starttls", "--ca-file", ca_file, "--user", USER, env=env)
    assert tls_server.recorder.auth_logins == [USER.encode()]
    assert len(tls_server.recorder.messages) == 1
