"""``mailsdk send`` for real: a child process against aiosmtpd with STARTTLS, AUTH, PIPELINING."""

from __future__ import annotations

import email
import email.policy
import json
import pathlib
import ssl
from collections.abc import Callable

from tests._support.scripted_server import Close, Expect, ReadData, ScriptedServer, Send, ehlo_reply
from tests._support.smtpd import SmtpdServer
from tests.cli._helpers import PASSWORD, REFUSED, USER, Cli, no_secret, server_args

AUTH_ENV = {"MAILSDK_PASSWORD": PASSWORD}


def _send(cli: Cli, server: SmtpdServer, ca_file: str, *args: str, **kw: object):  # type: ignore[no-untyped-def]
    return cli("send", *server_args(server, ca_file, "--user", USER), *args, **kw)  # type: ignore[arg-type]


def test_send_one_message_over_starttls_with_auth(
    cli: Cli, tls_server: SmtpdServer, ca_file: str
) -> None:
    proc = _send(
        cli,
        tls_server,
        ca_file,
        "--from",
        "alice@example.org",
        "--to",
        "bob@example.com",
        "--cc",
        "carol@example.com",
        "--bcc",
        "audit@example.com",
        "--subject",
        "Hello from the CLI",
        "--body",
        "Body text.",
        env=AUTH_ENV,
    )
    assert proc.returncode == 0, proc.stderr
    assert "accepted  bob@example.com" in proc.stdout
    assert "queue id QID0001" in proc.stdout
    [message] = tls_server.recorder.messages
    assert sorted(message.rcpt_tos) == ["audit@example.com", "bob@example.com", "carol@example.com"]
    parsed = email.message_from_bytes(message.content, policy=email.policy.default)
    assert parsed["Subject"] == "Hello from the CLI"
    assert parsed["Bcc"] is None  # Bcc is envelope only
    assert parsed["Message-ID"]
    assert "Body text." in parsed.get_content()
    assert tls_server.recorder.auth_logins == [USER.encode()]
    no_secret(proc)


def test_dash_t_reads_message_and_recipients_from_stdin(
    cli: Cli, tls_server: SmtpdServer, ca_file: str
) -> None:
    raw = (
        "From: alice@example.org\r\nTo: bob@example.com\r\nBcc: hidden@example.com\r\n"
        "Subject: piped\r\n\r\nfrom stdin\r\n"
    )
    proc = _send(cli, tls_server, ca_file, "-t", input=raw, env=AUTH_ENV)
    assert proc.returncode == 0, proc.stderr
    [message] = tls_server.recorder.messages
    assert message.mail_from == "alice@example.org"
    assert message.rcpt_tos == ["bob@example.com", "hidden@example.com"]
    assert b"hidden@example.com" not in message.content
    assert b"from stdin" in message.content


def test_body_from_stdin_html_and_attachment(
    cli: Cli, tls_server: SmtpdServer, ca_file: str, tmp_path: pathlib.Path
) -> None:
    html = tmp_path / "body.html"
    html.write_text("<p>Hi <b>there</b></p>")
    report = tmp_path / "report.csv"
    report.write_text("a,b\n1,2\n")
    proc = _send(
        cli, tls_server, ca_file,
        "--from", "alice@example.org", "--to", "bob@example.com",
        "--html", str(html), "--attach", str(report),
        input="plain body from stdin\n", env=AUTH_ENV,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    parsed = email.message_from_bytes(
        tls_server.recorder.messages[0].content, policy=email.policy.default
    )
    assert parsed.get_content_type() == "multipart/mixed"
    attachments = list(parsed.iter_attachments())
    assert [a.get_filename() for a in attachments] == ["report.csv"]
    assert "plain body from stdin" in parsed.get_body(("plain",)).get_content()
    assert "<b>there</b>" in parsed.get_body(("html",)).get_content()


def test_json_output_and_partial_refusal_exit_1(
    cli: Cli, tls_server: SmtpdServer, ca_file: str
) -> None:
    proc = _send(
        cli, tls_server, ca_file, "--json",
        "--from", "alice@example.org", "--to", "bob@example.com", "--to", REFUSED,
        "--body", "x", env=AUTH_ENV,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["status"] == "partial"
    assert data["accepted"] == ["bob@example.com"]
    assert data["refused"][REFUSED]["code"] == 550
    assert data["refused"][REFUSED]["enhanced"] == "5.1.1"
    assert data["queue_id"] == "QID0001"
    no_secret(proc)


def test_every_recipient_refused_is_a_permanent_failure_exit_2(
    cli: Cli, tls_server: SmtpdServer, ca_file: str
) -> None:
    proc = _send(
        cli, tls_server, ca_file, "--from", "a@example.org", "--to", REFUSED, "--body", "x",
        env=AUTH_ENV,
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # one line, no traceback
    assert "550" in lines[0] and "5.1.1" in lines[0] and "RecipientsRefused" in lines[0]
    assert tls_server.recorder.messages == []


def test_wrong_password_is_exit_2_and_never_printed(
    cli: Cli, tls_server: SmtpdServer, ca_file: str
) -> None:
    wrong = "Wr0ng-Pa55word-xyz"
    proc = _send(
        cli, tls_server, ca_file, "--from", "a@example.org", "--to", "b@example.com",
        "--body", "x", "--wire", env={"MAILSDK_PASSWORD": wrong},
    )  # fmt: skip
    assert proc.returncode == 2
    assert "AUTH" in proc.stderr and "535" in proc.stderr
    assert "hint:" in proc.stderr
    no_secret(proc, wrong)


def test_transient_refusal_is_exit_3(
    cli: Cli, smtpd_factory: Callable[..., SmtpdServer], server_ssl_context: ssl.SSLContext,
    ca_file: str,
) -> None:  # fmt: skip
    server = smtpd_factory(starttls=server_ssl_context, data_reply="451 4.3.0 try again later")
    proc = cli(
        "send", *server_args(server, ca_file),
        "--from", "a@example.org", "--to", "b@example.com", "--body", "x",
    )  # fmt: skip
    assert proc.returncode == 3
    assert "451" in proc.stderr and "4.3.0" in proc.stderr


def test_unknown_outcome_is_exit_3(cli: Cli, scripted: Callable[..., ScriptedServer]) -> None:
    server = scripted(
        [
            Send(b"220 mx.test ESMTP\r\n"),
            Expect(b"EHLO"),
            Send(ehlo_reply("PIPELINING")),
            Expect(b"MAIL FROM"),
            Expect(b"RCPT TO"),
            Expect(b"DATA"),
            Send(b"250 ok\r\n250 ok\r\n354 go\r\n"),
            ReadData(),
            Close(),  # the end-of-data reply never comes
        ]
    )
    proc = cli(
        "send", "--server", f"127.0.0.1:{server.port}", "--tls", "none", "--timeout", "10",
        "--from", "a@example.org", "--to", "b@example.com", "--body", "x",
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "may have been delivered" in proc.stderr


def test_starttls_against_an_implicit_tls_port_gives_a_hint(
    cli: Cli, smtpd_factory: Callable[..., SmtpdServer], server_ssl_context: ssl.SSLContext,
    ca_file: str,
) -> None:  # fmt: skip
    server = smtpd_factory(implicit_tls=server_ssl_context)
    proc = cli(
        "send", "--server", f"127.0.0.1:{server.port}", "--ca-file", ca_file, "--timeout", "2",
        "--tls", "starttls", "--from", "a@example.org", "--to", "b@example.com", "--body", "x",
    )  # fmt: skip
    assert proc.returncode == 3
    assert "--tls implicit" in proc.stderr
    # and with the right mode it works
    ok = cli(
        "send", "--server", f"127.0.0.1:{server.port}", "--ca-file", ca_file, "--tls",
        "implicit", "--from", "a@example.org", "--to", "b@example.com", "--body", "x",
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr


def test_untrusted_certificate_is_exit_2_with_a_hint(cli: Cli, tls_server: SmtpdServer) -> None:
    proc = cli(
        "send", "--server", f"127.0.0.1:{tls_server.port}", "--from", "a@example.org",
        "--to", "b@example.com", "--body", "x",
    )  # fmt: skip
    assert proc.returncode == 2
    assert "TLSError" in proc.stderr and "--ca-file" in proc.stderr


def test_usage_errors_are_exit_4(cli: Cli, tls_server: SmtpdServer, ca_file: str) -> None:
    no_rcpt = _send(
        cli, tls_server, ca_file, "--from", "a@example.org", "--body", "x", env=AUTH_ENV
    )
    assert no_rcpt.returncode == 4
    assert "--to" in no_rcpt.stderr
    unknown = cli("send", "--no-such-option")
    assert unknown.returncode == 4
    no_server = cli("send", "--to", "b@example.com", "--body", "x")
    assert no_server.returncode == 4
    assert "--server" in no_server.stderr
    bad_tls = cli("send", "--tls", "sometimes")
    assert bad_tls.returncode == 4


def test_missing_password_is_a_usage_error_naming_the_variable(
    cli: Cli, tls_server: SmtpdServer, ca_file: str
) -> None:
    proc = _send(cli, tls_server, ca_file, "--from", "a@example.org", "--to", "b@example.com",
                 "--body", "x")  # fmt: skip
    assert proc.returncode == 4
    assert "MAILSDK_PASSWORD" in proc.stderr
    assert tls_server.recorder.messages == []
    named = _send(cli, tls_server, ca_file, "--password-env", "MY_PW", "--from", "a@example.org",
                  "--to", "b@example.com", "--body", "x", env={"MY_PW": PASSWORD})  # fmt: skip
    assert named.returncode == 0, named.stderr


def test_wire_shows_pipelining_and_redacts_auth(
    cli: Cli, tls_server: SmtpdServer, ca_file: str
) -> None:
    proc = _send(
        cli, tls_server, ca_file, "--wire", "--from", "a@example.org", "--to", "b@example.com",
        "--to", "c@example.com", "--body", "x", env=AUTH_ENV,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    wire = proc.stderr
    assert "C: STARTTLS" in wire
    assert "  | C: MAIL FROM:<a@example.org>" in wire  # pipelined with the RCPTs and DATA
    assert "  | C: RCPT TO:<c@example.com>" in wire
    assert "AUTH PLAIN" in wire or "AUTH LOGIN" in wire
    no_secret(proc)
    import base64

    assert base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode() not in wire


def test_python_dash_m_and_help(cli: Cli) -> None:
    proc = cli("--help")
    assert proc.returncode == 0
    for command in ("demo", "send", "batch", "probe", "token", "config"):
        assert command in proc.stdout
    assert "Exit codes" in proc.stdout
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("mailsdk ")


def test_server_urls(
    cli: Cli,
    tls_server: SmtpdServer,
    smtpd_factory: Callable[..., SmtpdServer],
    server_ssl_context: ssl.SSLContext,
    ca_file: str,
) -> None:
    submission = cli(
        "send", "--server", f"smtp://{USER}@127.0.0.1:{tls_server.port}?tls=starttls",
        "--ca-file", ca_file, "--from", "a@example.org", "--to", "b@example.com", "--body", "x",
        env=AUTH_ENV,
    )  # fmt: skip
    assert submission.returncode == 0, submission.stderr
    assert tls_server.recorder.auth_logins == [USER.encode()]  # the URL's user, the env password
    implicit = smtpd_factory(implicit_tls=server_ssl_context)
    smtps = cli(
        "send", "--server", f"smtps://127.0.0.1:{implicit.port}", "--ca-file", ca_file,
        "--from", "a@example.org", "--to", "b@example.com", "--body", "x",
    )  # fmt: skip
    assert smtps.returncode == 0, smtps.stderr
    assert len(implicit.recorder.messages) == 1
    no_secret(submission)
