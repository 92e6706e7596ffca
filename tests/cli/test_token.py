"""``mailsdk token --profile NAME`` against the local OAuth authority (real msal over HTTPS)."""

from __future__ import annotations

import json
import os
import pathlib
import stat

from tests._support.oauth_authority import OAuthAuthority
from tests.cli._helpers import Cli, no_secret, write_config

CLIENT_SECRET = "client-secret-value-42"


def _profile(cli: Cli, authority: OAuthAuthority) -> None:
    cache = cli.home / ".cache" / "mailsdk" / "o365.json"
    write_config(
        cli,
        f"""
default_profile = "o365"

[profiles.o365]
server = "127.0.0.1:2525"
user = "sender@contoso.example"

[profiles.o365.oauth]
provider = "msal-app-only"
client_id = "11111111-0000-0000-0000-000000000001"
client_secret_env = "O365_SECRET"
authority = "{authority.authority_url}"
instance_discovery = false
ca_file = "{authority.ca_path}"
cache_file = "{cache}"
""",
    )


def test_token_acquires_caches_and_hides_the_token(
    cli: Cli, oauth_authority: OAuthAuthority
) -> None:
    _profile(cli, oauth_authority)
    env = {"O365_SECRET": CLIENT_SECRET}
    proc = cli("token", "--profile", "o365", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "user       sender@contoso.example" in proc.stdout
    assert "https://outlook.office365.com/.default" in proc.stdout
    assert "expires    " in proc.stdout and "(in 3" in proc.stdout  # about 3600 s
    assert "at-1" not in proc.stdout  # the access token itself stays hidden
    no_secret(proc, CLIENT_SECRET)
    [request] = oauth_authority.token_requests("client_credentials")
    assert request.client_id == "11111111-0000-0000-0000-000000000001"
    cache = cli.home / ".cache" / "mailsdk" / "o365.json"
    assert cache.exists()
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o600

    # a second run is served from the cache: no new token request
    again = cli("token", "--json", env=env)  # default_profile picks o365
    assert again.returncode == 0, again.stderr
    data = json.loads(again.stdout)
    assert data["provider"] == "msal-app-only" and "access_token" not in data
    assert 3000 < data["expires_in"] <= 3600
    assert len(oauth_authority.token_requests("client_credentials")) == 1

    shown = cli("token", "--show", "--force", env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip().splitlines()[-1] == "at-2"


def test_token_error_from_the_authority_is_one_line(
    cli: Cli, oauth_authority: OAuthAuthority
) -> None:
    _profile(cli, oauth_authority)
    oauth_authority.error = {
        "error": "invalid_client",
        "error_description": "AADSTS7000215: Invalid client secret provided.",
        "correlation_id": "corr-1",
    }
    proc = cli("token", env={"O365_SECRET": CLIENT_SECRET})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "invalid_client" in lines[0] and "TokenError" in lines[0]
    no_secret(proc, CLIENT_SECRET)


def test_token_needs_an_oauth_profile_and_its_secret(
    cli: Cli, oauth_authority: OAuthAuthority
) -> None:
    _profile(cli, oauth_authority)
    missing_secret = cli("token")
    assert missing_secret.returncode == 4
    assert "O365_SECRET" in missing_secret.stderr
    write_config(cli, '[profiles.plain]\nserver = "mx.example"\n')
    no_oauth = cli("token", "--profile", "plain")
    assert no_oauth.returncode == 4 and "oauth" in no_oauth.stderr
    unknown = cli("token", "--profile", "nope")
    assert unknown.returncode == 4 and "no profile 'nope'" in unknown.stderr


def test_token_with_a_google_service_account(
    cli: Cli, oauth_authority: OAuthAuthority, tmp_path: pathlib.Path
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    account = tmp_path / "sa.json"
    account.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "p",
                "private_key_id": "k1",
                "private_key": pem,
                "client_email": "sender@p.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": oauth_authority.google_token_uri,
            }
        )
    )
    account.chmod(0o600)
    write_config(
        cli,
        f"""
[profiles.gmail]
server = "smtp.gmail.com:587"
user = "user@example.com"
[profiles.gmail.oauth]
provider = "google-service-account"
service_account_file = "{account}"
ca_file = "{oauth_authority.ca_path}"
""",
    )
    proc = cli("token", "--profile", "gmail", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["provider"] == "google-service-account"
    assert data["user"] == "user@example.com"
    assert data["scopes"] == ["https://mail.google.com/"]
    assert data["expires_in"] is not None and data["expires_in"] > 3000
    assert "access_token" not in data and "ya29." not in proc.stdout
    [request] = oauth_authority.token_requests()
    assert request.assertion_claims is not None
    assert request.assertion_claims["sub"] == "user@example.com"  # acting as the mailbox


def test_token_show_escapes_a_hostile_token(cli: Cli, oauth_authority: OAuthAuthority) -> None:
    # the token comes from the identity provider: it must not reach the terminal as control
    oauth_authority.token_prefix = "at-\x1b]0;pwned\x07\x1b[2J-"
    _profile(cli, oauth_authority)
    proc = cli("token", "--profile", "o365", "--show", env={"O365_SECRET": CLIENT_SECRET})
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout, repr(proc.stdout)
    assert "at-\\x1b]0;pwned\\x07\\x1b[2J-1" in proc.stdout
    as_json = cli("token", "--profile", "o365", "--show", "--json", "--force",
                  env={"O365_SECRET": CLIENT_SECRET})  # fmt: skip
    assert as_json.returncode == 0, as_json.stderr
    assert "\x1b" not in as_json.stdout
    assert json.loads(as_json.stdout)["access_token"].startswith("at-\x1b]0;pwned")
