"""Hostile server text never reaches the terminal raw, and secrets never reach argv or output."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests._support.scripted_server import Close, Expect, ScriptedServer, Send, WaitClose
from tests.cli._helpers import PASSWORD, Cli, no_secret

ESC = "\x1b"
# a greeting and replies full of terminal control: title change, clear screen, colours, bidi
GREETING = b"220 mx.test \x1b]0;pwned\x07 \x1b[2J ESMTP \xe2\x80\xae reversed\r\n"
EHLO = b"250-mx.test \x1b[31mred\r\n250 PIPELINING\r\n"
REFUSAL = b"550 5.1.1 \x1b[1;31mno such user\x1b[0m \x1b[8mhidden\r\n"


def _no_control(text: str) -> None:
    assert ESC not in text, repr(text)
    assert "\x07" not in text and "\u202e" not in text, repr(text)


def test_send_escapes_server_text(cli: Cli, scripted: Callable[..., ScriptedServer]) -> None:
    server = scripted(
        [
            Send(GREETING),
            Expect(b"EHLO"),
            Send(EHLO),
            Expect(b"MAIL FROM"),
            Expect(b"RCPT TO"),
            Expect(b"DATA"),
            Send(b"250 ok\r\n" + REFUSAL + b"503 no valid recipients\r\n"),
            Expect(b"RSET"),
            Send(b"250 ok\r\n"),
            Expect(b"QUIT"),
            Send(b"221 bye\r\n"),
            Close(),
        ]
    )
    proc = cli(
        "send", "--server", f"127.0.0.1:{server.port}", "--tls", "none", "--timeout", "10",
        "--wire", "--from", "a@example.org", "--to", "b@example.com", "--body", "x",
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    _no_control(proc.stdout)
    _no_control(proc.stderr)
    assert "\\x1b[1;31mno such user" in proc.stderr  # shown, escaped
    assert "S: 220 mx.test" in proc.stderr


def test_json_and_probe_escape_server_text(
    cli: Cli, scripted: Callable[..., ScriptedServer]
) -> None:
    server = scripted(
        [
            Send(GREETING),
            Expect(b"EHLO"),
            Send(EHLO),
            Expect(b"QUIT"),
            Send(b"221 bye\r\n"),
            WaitClose(),
        ]
    )
    proc = cli("probe", f"127.0.0.1:{server.port}", "--tls", "none", "--timeout", "10")
    assert proc.returncode == 0, proc.stderr
    _no_control(proc.stdout)
    assert "\\x1b]0;pwned\\x07" in proc.stdout
    again = scripted(
        [
            Send(GREETING),
            Expect(b"EHLO"),
            Send(EHLO),
            Expect(b"QUIT"),
            Send(b"221 bye\r\n"),
            WaitClose(),
        ]
    )
    as_json = cli("probe", f"127.0.0.1:{again.port}", "--tls", "none", "--json")
    assert as_json.returncode == 0, as_json.stderr
    _no_control(as_json.stdout)  # JSON escapes controls itself (\\u001b)
    assert "pwned" in json.loads(as_json.stdout)["greeting"]  # kept, in escaped form


def test_no_option_takes_a_secret(cli: Cli) -> None:
    for option in ("--password", "--pass", "--token", "--client-secret"):
        proc = cli("send", option, PASSWORD, "--to", "b@example.com")
        assert proc.returncode == 4
        assert "No such option" in proc.stderr
        no_secret(proc)
    helptext = " ".join(cli("send", "--help").stdout.split())
    assert "Never pass secrets as arguments" in helptext


def test_a_password_in_a_server_url_is_refused_and_not_echoed(cli: Cli) -> None:
    proc = cli("send", "--server", f"smtp://alice:{PASSWORD}@127.0.0.1:1", "--to", "b@example.com")
    assert proc.returncode == 4
    assert "contains a password" in proc.stderr and "MAILSDK_PASSWORD" in proc.stderr
    no_secret(proc)


def test_a_password_in_a_server_without_slashes_or_scheme_is_not_echoed(cli: Cli) -> None:
    # "smtp:user:pw@host" is no "://" URL, and "user:pw@host" no URL at all: both used to reach
    # ClientBuilder.smtp, whose error quoted the whole text, password included.
    for server in (f"smtp:alice:{PASSWORD}@127.0.0.1", f"alice:{PASSWORD}@127.0.0.1:1"):
        proc = cli("send", "--server", server, "--to", "b@example.com")
        assert proc.returncode == 4, proc.stderr
        no_secret(proc)
