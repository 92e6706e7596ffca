"""Hostile or careless input gets one clear line and a documented exit code, never a traceback:
header injection through options and rows, bad ``MAILSDK_*`` values, unsafe secret files, and a
reader that closes stdout early."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

from tests._support.smtpd import SmtpdServer
from tests.cli._helpers import PASSWORD, USER, Cli, server_args, write_config

AUTH_ENV = {"MAILSDK_PASSWORD": PASSWORD}


def _one_line_error(proc: subprocess.CompletedProcess[str], code: int = 4) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_header_injection_through_options_is_refused(
    cli: Cli, tls_server: SmtpdServer, ca_file: str
) -> None:
    base = [*server_args(tls_server, ca_file, "--user", USER), "--body", "hi"]
    for option, value in (
        ("--subject", "Hi\r\nBcc: victim@example.net"),
        ("--to", "bob@example.com\nBcc: victim@example.net"),
        ("--from", "alice@example.org\r\nX-Evil: 1"),
    ):
        extra = ["--to", "bob@example.com"] if option != "--to" else []
        sender = [] if option == "--from" else ["--from", "alice@example.org"]
        proc = cli("send", *base, *sender, *extra, option, value, env=AUTH_ENV)
        line = _one_line_error(proc)
        assert option in line and "line break" in line
    assert tls_server.recorder.messages == []


def test_header_injection_through_a_row_variable_is_refused(
    cli: Cli, tls_server: SmtpdServer, ca_file: str, tmp_path: pathlib.Path
) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        json.dumps({"to": "a@example.com", "name": "A"})
        + "\n"
        + json.dumps({"to": "b@example.com", "name": "B\r\nBcc: victim@example.net"})
        + "\n"
    )
    body = tmp_path / "body.txt"
    body.write_text("hello $name\n")
    proc = cli(
        "batch", str(rows), "--template", str(body), "--subject", "Hi $name", "--from",
        "news@example.org", *server_args(tls_server, ca_file, "--user", USER), env=AUTH_ENV,
    )  # fmt: skip
    line = _one_line_error(proc)
    assert "row 2" in line and "line break" in line
    assert tls_server.recorder.messages == []  # bad input: nothing is sent


def test_a_malformed_timeout_variable_is_a_usage_error(cli: Cli) -> None:
    proc = cli(
        "send", "--server", "127.0.0.1:9", "--tls", "none", "--from", "a@example.org",
        "--to", "b@example.com", "--body", "x", env={"MAILSDK_TIMEOUT": "soon"},
    )  # fmt: skip
    assert "MAILSDK_TIMEOUT" in _one_line_error(proc)


def _secret_profile(cli: Cli, secret: pathlib.Path, port: int) -> None:
    write_config(
        cli,
        f'default_profile = "p"\n[profiles.p]\nserver = "127.0.0.1:{port}"\n'
        f'user = "{USER}"\npassword_file = "{secret}"\n',
    )


def test_a_secret_file_behind_a_symlink_is_refused(
    cli: Cli, tls_server: SmtpdServer, ca_file: str, tmp_path: pathlib.Path
) -> None:
    real = tmp_path / "real.secret"
    real.write_text(PASSWORD + "\n")
    real.chmod(0o600)
    link = tmp_path / "link.secret"
    link.symlink_to(real)
    _secret_profile(cli, link, tls_server.port)
    proc = cli(
        "send", "--ca-file", ca_file, "--from", "a@example.org", "--to", "b@example.com",
        "--body", "x",
    )  # fmt: skip
    assert "symbolic link" in _one_line_error(proc)
    assert tls_server.recorder.messages == []
    _secret_profile(cli, real, tls_server.port)  # the file itself is fine
    ok = cli(
        "send", "--ca-file", ca_file, "--from", "a@example.org", "--to", "b@example.com",
        "--body", "x",
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert PASSWORD not in ok.stdout + ok.stderr


def test_a_group_readable_secret_file_is_refused(
    cli: Cli, tls_server: SmtpdServer, tmp_path: pathlib.Path
) -> None:
    secret = tmp_path / "group.secret"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o640)
    _secret_profile(cli, secret, tls_server.port)
    proc = cli("send", "--from", "a@example.org", "--to", "b@example.com", "--body", "x")
    line = _one_line_error(proc)
    assert "chmod 600" in line and PASSWORD not in line


def test_a_closed_stdout_does_not_turn_a_delivery_into_a_failure(
    cli: Cli, tls_server: SmtpdServer, ca_file: str
) -> None:
    """``mailsdk send ... | head -0``: the message was accepted, so exit 0 and no traceback
    (exit 3 would tell a script to send it again)."""
    for output in ([], ["--json"]):
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader is gone before mailsdk writes a byte: EPIPE
        try:
            proc = subprocess.run(
                cli.argv(
                    "send",
                    *server_args(tls_server, ca_file, "--user", USER),
                    "--from",
                    "a@example.org",
                    "--to",
                    "b@example.com",
                    "--body",
                    "x",
                    *output,
                ),
                env={**cli.env, **AUTH_ENV},
                stdin=subprocess.DEVNULL,
                stdout=write_end,
                stderr=subprocess.PIPE,
                timeout=60,
                check=False,
            )
        finally:
            os.close(write_end)
        stderr = proc.stderr.decode("utf-8", "replace")
        assert proc.returncode == 0, stderr
        assert "Traceback" not in stderr and "Broken pipe" not in stderr, stderr
    assert len(tls_server.recorder.messages) == 2


def test_password_env_never_falls_back_to_mailsdk_password(
    cli: Cli, tls_server: SmtpdServer, ca_file: str
) -> None:
    """``--password-env WORK_PW`` with WORK_PW unset is an error: MAILSDK_PASSWORD (maybe
    another account's) must not be sent to this server instead."""
    proc = cli(
        "send", *server_args(tls_server, ca_file, "--user", USER), "--password-env", "WORK_PW",
        "--from", "a@example.org", "--to", "b@example.com", "--body", "x",
        env={"MAILSDK_PASSWORD": PASSWORD},
    )  # fmt: skip
    assert "WORK_PW is not set" in _one_line_error(proc)
    assert tls_server.recorder.auth_logins == []
    assert tls_server.recorder.messages == []
