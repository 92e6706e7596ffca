"""``mailsdk send --profile NAME`` with an OAuth profile: real msal against the local authority,
the test kit's aiosmtpd with XOAUTH2 over STARTTLS, the CLI in a real subprocess."""

from __future__ import annotations

import pathlib

from tests._support.oauth_authority import OAuthAuthority
from tests.cli._helpers import Cli, no_secret, write_config

from mailsdk.testing import MailServer

MAILBOX = "sender@contoso.example"
CLIENT_SECRET = "client-secret-value-42"


def _profile(cli: Cli, server: MailServer, authority: OAuthAuthority, ca: pathlib.Path) -> None:
    write_config(
        cli,
        f"""
[profiles.o365]
server = "127.0.0.1:{server.port}"
ca_file = "{ca}"
timeout = 20
user = "{MAILBOX}"
[profiles.o365.oauth]
provider = "msal-app-only"
client_id = "11111111-0000-0000-0000-000000000001"
client_secret_env = "O365_SECRET"
authority = "{authority.authority_url}"
instance_discovery = false
ca_file = "{authority.ca_path}"
cache_file = "{cli.home / ".cache" / "o365.json"}"
""",
    )


def test_send_with_an_oauth_profile_authenticates_with_xoauth2(
    cli: Cli, oauth_authority: OAuthAuthority, tmp_path: pathlib.Path
) -> None:
    with MailServer(tls="starttls", tokens={MAILBOX: "at-1"}) as server:
        assert server.ca is not None
        ca = tmp_path / "smtp-ca.pem"
        server.ca.cert_pem.write_to_path(str(ca))
        _profile(cli, server, oauth_authority, ca)
        proc = cli(
            "send", "--profile", "o365", "--wire", "--from", MAILBOX, "--to", "b@example.test",
            "--subject", "hi", "--body", "x", env={"O365_SECRET": CLIENT_SECRET},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert [(x.mechanism, x.success) for x in server.logins] == [("XOAUTH2", True)]
        assert [m.rcpt_tos for m in server.messages] == [("b@example.test",)]
        assert "AUTH XOAUTH2" in proc.stderr  # the wire trace shows the mechanism...
        no_secret(proc, CLIENT_SECRET, "at-1")  # ...never the token or the client secret

        # --timeout on the command line wins over the profile; the profile's OAuth (and its
        # token cache: no second token request) stays
        again = cli(
            "send", "--profile", "o365", "--timeout", "15", "--from", MAILBOX,
            "--to", "c@example.test", "--body", "y", env={"O365_SECRET": CLIENT_SECRET},
        )  # fmt: skip
        assert again.returncode == 0, again.stderr
        assert len(server.messages) == 2
        assert len(oauth_authority.token_requests("client_credentials")) == 1


def test_send_with_an_oauth_profile_but_no_client_secret_is_a_usage_error(
    cli: Cli, oauth_authority: OAuthAuthority, tmp_path: pathlib.Path
) -> None:
    with MailServer(tls="starttls", tokens={MAILBOX: "at-1"}) as server:
        _profile(cli, server, oauth_authority, tmp_path / "unused.pem")
        proc = cli("send", "--profile", "o365", "--from", MAILBOX, "--to", "b@example.test",
                   "--body", "x")  # fmt: skip
        assert proc.returncode == 4
        assert "O365_SECRET" in proc.stderr
        assert server.sessions == 0 and oauth_authority.token_requests() == []
