"""``mailsdk probe``: greeting, extensions before/after STARTTLS, TLS, certificate, AUTH, SIZE."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable

from tests._support.smtpd import SmtpdServer
from tests.cli._helpers import Cli


def test_probe_starttls_server(cli: Cli, tls_server: SmtpdServer, ca_file: str) -> None:
    proc = cli("probe", f"127.0.0.1:{tls_server.port}", "--ca-file", ca_file, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["greeting"].startswith("220 mx.test")
    assert "STARTTLS" in report["before_tls"]
    assert "AUTH" not in report["before_tls"]  # aiosmtpd offers AUTH only after TLS
    assert sorted(report["after_tls"]["AUTH"]) == ["LOGIN", "PLAIN"]
    assert report["after_tls"]["SIZE"] == 33554432
    assert report["after_tls"]["PIPELINING"] is True or "PIPELINING" in report["after_tls"]
    assert report["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert report["verified"] is True
    cert = report["certificate"]
    assert "127.0.0.1" in cert["names"] and "localhost" in cert["names"]
    assert "trustme" in cert["issuer"].lower() or cert["issuer"]
    assert cert["days_left"] > 0
    text = cli("probe", f"127.0.0.1:{tls_server.port}", "--ca-file", ca_file)
    assert text.returncode == 0
    assert "verified     yes" in text.stdout
    assert "SIZE         33554432" in text.stdout
    assert tls_server.recorder.messages == []
    assert "AUTH" not in tls_server.recorder.verbs and "MAIL" not in tls_server.recorder.verbs


def test_probe_reports_an_untrusted_certificate_with_exit_2(
    cli: Cli, tls_server: SmtpdServer
) -> None:
    proc = cli("probe", f"127.0.0.1:{tls_server.port}", "--json")
    assert proc.returncode == 2
    report = json.loads(proc.stdout)
    assert report["verified"] is False
    assert "certificate" in report["verify_error"].lower() or report["verify_error"]
    assert report["certificate"]["subject"]  # still shown, from an unverified second look
    assert "AUTH" in report["after_tls"]


def test_probe_implicit_tls(
    cli: Cli,
    smtpd_factory: Callable[..., SmtpdServer],
    server_ssl_context: ssl.SSLContext,
    ca_file: str,
) -> None:
    server = smtpd_factory(implicit_tls=server_ssl_context, data_size_limit=None)
    proc = cli("probe", f"127.0.0.1:{server.port}", "--tls", "implicit", "--ca-file", ca_file)
    assert proc.returncode == 0, proc.stderr
    assert "verified     yes" in proc.stdout
    assert "SIZE         not advertised" in proc.stdout
    assert "before TLS" not in proc.stdout


def test_probe_plaintext_and_unreachable(
    cli: Cli, smtpd_factory: Callable[..., SmtpdServer]
) -> None:
    server = smtpd_factory()
    proc = cli("probe", f"127.0.0.1:{server.port}", "--tls", "none", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["tls_version"] is None and report["verified"] is None
    port = server.port
    server.stop()
    gone = cli("probe", f"127.0.0.1:{port}", "--tls", "none", "--timeout", "5")
    assert gone.returncode == 3
    assert "mailsdk probe" in gone.stderr or "hint" in gone.stderr


def test_probe_url_with_a_user_never_asks_for_a_password(
    cli: Cli, tls_server: SmtpdServer, ca_file: str
) -> None:
    # probe never authenticates: a user in the URL must not need a password (no prompt, no
    # "user without a password" error) and must not lead to AUTH
    url = f"smtp://alice@127.0.0.1:{tls_server.port}?tls=starttls"
    proc = cli("probe", url, "--ca-file", ca_file, "--json")
    assert proc.returncode == 0, proc.stderr
    assert "password" not in proc.stderr.lower()
    report = json.loads(proc.stdout)
    assert report["verified"] is True
    assert "AUTH" not in tls_server.recorder.verbs
