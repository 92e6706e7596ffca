"""Profiles and ``mailsdk config check``: TOML, MAILSDK_* variables, 0600 secret files."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable

from tests._support.smtpd import SmtpdServer
from tests.cli._helpers import PASSWORD, USER, Cli, no_secret, write_config


def test_config_check_reports_each_profile(cli: Cli) -> None:
    secret = cli.home / "work.secret"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    loose = cli.home / "loose.secret"
    loose.write_text(PASSWORD)
    loose.chmod(0o644)
    write_config(
        cli,
        f"""
default_profile = "work"
[profiles.work]
server = "mail.example.com:587"
user = "{USER}"
password_file = "{secret}"
[profiles.loose]
server = "mail.example.com:587"
user = "{USER}"
password_file = "{loose}"
[profiles.plaintext]
server = "mail.example.com:25"
tls = "none"
user = "{USER}"
password_env = "PLAIN_PW"
""",
    )
    proc = cli("config", "check", "--json", env={"PLAIN_PW": PASSWORD})
    assert proc.returncode == 4
    data = json.loads(proc.stdout)
    assert data["default_profile"] == "work"
    assert data["profiles"]["work"] == {"ok": True, "error": None}
    assert "chmod 600" in data["profiles"]["loose"]["error"]
    assert "plaintext" in data["profiles"]["plaintext"]["error"]
    no_secret(proc)
    only_work = cli("config", "check", "--profile", "work")
    assert only_work.returncode == 0, only_work.stderr
    assert "ok      work default" in only_work.stdout


def test_config_check_rejects_unknown_keys_and_bad_toml(cli: Cli) -> None:
    path = write_config(cli, '[profiles.x]\nsrever = "typo"\n')
    proc = cli("config", "check")
    assert proc.returncode == 4
    assert "unknown key 'srever'" in proc.stderr
    path.write_text("[profiles.x\n")
    broken = cli("config", "check")
    assert broken.returncode == 4 and "not valid TOML" in broken.stderr
    missing = cli("config", "check", "--config", str(cli.home / "nope.toml"))
    assert missing.returncode == 4 and "does not exist" in missing.stderr
    none = cli("config", "check", env={"XDG_CONFIG_HOME": str(cli.home / "empty")})
    assert none.returncode == 0 and "does not exist: no profiles" in none.stdout


def test_send_through_a_profile_with_env_overrides(
    cli: Cli,
    smtpd_factory: Callable[..., SmtpdServer],
    server_ssl_context: ssl.SSLContext,
    ca_file: str,
) -> None:
    server = smtpd_factory(starttls=server_ssl_context, users={USER: PASSWORD})
    secret = cli.home / "pw"
    secret.write_text(PASSWORD)
    secret.chmod(0o600)
    path = write_config(
        cli,
        f"""
[profiles.local]
server = "127.0.0.1:1"
ca_file = "{ca_file}"
user = "{USER}"
password_file = "{secret}"
from = "alice@example.org"
timeout = 20
""",
    )
    # MAILSDK_SERVER overrides the profile's (wrong) server; MAILSDK_PROFILE selects it.
    proc = cli(
        "send", "--config", str(path), "--to", "bob@example.com", "--body", "via profile",
        env={"MAILSDK_PROFILE": "local", "MAILSDK_SERVER": f"127.0.0.1:{server.port}"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    [message] = server.recorder.messages
    assert message.mail_from == "alice@example.org"
    no_secret(proc)
