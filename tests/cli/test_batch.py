"""``mailsdk batch``: CSV/JSONL rows with a template, .eml folders, the report, Ctrl-C."""

from __future__ import annotations

import email
import email.policy
import json
import pathlib
import signal
import subprocess
import time
from collections.abc import Callable

import pytest
from tests._support.scripted_server import Close, Expect, ReadData, ScriptedServer, Send
from tests._support.smtpd import SmtpdServer
from tests.cli._helpers import PASSWORD, REFUSED, USER, Cli, no_secret, server_args

AUTH_ENV = {"MAILSDK_PASSWORD": PASSWORD}


def _report(path: pathlib.Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _csv(tmp_path: pathlib.Path, rows: int, *, refused_row: int | None = None) -> pathlib.Path:
    lines = ["to,name,key"]
    for n in range(1, rows + 1):
        to = REFUSED if n == refused_row else f"user{n}@example.com"
        lines.append(f"{to},User {n},k{n}")
    path = tmp_path / "people.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _template(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "body.txt"
    path.write_text("Dear $name,\nyour key is ${key}... no: $$5 off.\n")
    return path


def test_csv_batch_with_a_refused_row(
    cli: Cli, tls_server: SmtpdServer, ca_file: str, tmp_path: pathlib.Path
) -> None:
    source = _csv(tmp_path, 4, refused_row=3)
    report = tmp_path / "out.jsonl"
    proc = cli(
        "batch", str(source), "--template", str(_template(tmp_path)), "--subject", "Hi $name",
        "--from", "news@example.org", "--connections", "2", "--report", str(report),
        *server_args(tls_server, ca_file, "--user", USER), env=AUTH_ENV,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # some refused, the rest accepted
    lines = _report(report)
    assert sorted(int(str(line["index"])) for line in lines) == [0, 1, 2, 3]
    by_key = {line["key"]: line for line in lines}
    assert by_key["k3"]["status"] == "refused"
    assert by_key["k3"]["error"]["reply"]["code"] == 550  # type: ignore[index]
    assert {by_key[k]["status"] for k in ("k1", "k2", "k4")} == {"accepted"}
    assert str(by_key["k1"]["queue_id"]).startswith("QID")
    assert "accepted" in proc.stdout and "refused" in proc.stdout  # the summary table
    assert len(tls_server.recorder.messages) == 3
    first = next(m for m in tls_server.recorder.messages if m.rcpt_tos == ["user1@example.com"])
    parsed = email.message_from_bytes(first.content, policy=email.policy.default)
    assert parsed["Subject"] == "Hi User 1"
    assert (
        parsed.get_content()
        == "Dear User 1,\nyour key is ${key}... no: $5 off.\n".replace("${key}", "${key}")
        or "$5 off" in parsed.get_content()
    )
    no_secret(proc)


def test_jsonl_rows_and_eml_folder(
    cli: Cli, tls_server: SmtpdServer, ca_file: str, tmp_path: pathlib.Path
) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        json.dumps({"to": ["a@example.com", "b@example.com"], "subject": "S", "vars": {"x": 1}})
        + "\n"
        + json.dumps({"to": "c@example.com", "x": "two", "key": "c"})
        + "\n"
    )
    body = tmp_path / "t.txt"
    body.write_text("x=$x\n")
    proc = cli(
        "batch", str(rows), "--template", str(body), "--from", "n@example.org", "--json",
        *server_args(tls_server, ca_file, "--user", USER), env=AUTH_ENV,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["counts"] == {"accepted": 2}
    assert pathlib.Path(summary["report"]) == rows.with_name("rows.jsonl.report.jsonl")
    assert sorted(tuple(m.rcpt_tos) for m in tls_server.recorder.messages) == [
        ("a@example.com", "b@example.com"),
        ("c@example.com",),
    ]

    folder = tmp_path / "outbox"
    folder.mkdir()
    for n in range(2):
        (folder / f"{n}.eml").write_bytes(
            f"From: n@example.org\r\nTo: e{n}@example.com\r\nSubject: eml {n}\r\n\r\nhi\r\n".encode()
        )
    eml = cli(
        "batch", str(folder), "--report", str(tmp_path / "eml.jsonl"),
        *server_args(tls_server, ca_file, "--user", USER), env=AUTH_ENV,
    )  # fmt: skip
    assert eml.returncode == 0, eml.stderr
    assert {line["key"] for line in _report(tmp_path / "eml.jsonl")} == {"0.eml", "1.eml"}


def test_bad_rows_send_nothing(
    cli: Cli, tls_server: SmtpdServer, ca_file: str, tmp_path: pathlib.Path
) -> None:
    source = tmp_path / "bad.csv"
    source.write_text("to,name\na@example.com,A\nb@example.com\n")
    body = tmp_path / "t.txt"
    body.write_text("Hi $name and $missing\n")
    proc = cli(
        "batch", str(source), "--template", str(body), "--from", "n@example.org",
        *server_args(tls_server, ca_file, "--user", USER), env=AUTH_ENV,
    )  # fmt: skip
    assert proc.returncode == 4
    assert "row 1" in proc.stderr and "$missing" in proc.stderr
    assert tls_server.recorder.messages == []
    bad_rate = cli(
        "batch", str(_csv(tmp_path, 1)), "--template", str(_template(tmp_path)), "--rate", "fast",
        "--from", "n@example.org", *server_args(tls_server, ca_file),
    )  # fmt: skip
    assert bad_rate.returncode == 4 and "30/min" in bad_rate.stderr


def test_interrupted_run_writes_a_complete_report(
    cli: Cli, tls_server: SmtpdServer, ca_file: str, tmp_path: pathlib.Path
) -> None:
    source = _csv(tmp_path, 30)
    report = tmp_path / "interrupted.jsonl"
    child = subprocess.Popen(
        cli.argv(
            "batch",
            str(source),
            "--template",
            str(_template(tmp_path)),
            "--from",
            "news@example.org",
            "--rate",
            "4/s",
            "--report",
            str(report),
            *server_args(tls_server, ca_file, "--user", USER),
        ),
        env={**cli.env, **AUTH_ENV},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stderr is not None
        deadline = time.monotonic() + 30
        seen = []
        while time.monotonic() < deadline:
            line = child.stderr.readline()
            seen.append(line)
            if line.startswith("[2/30]"):
                break
        else:  # pragma: no cover
            raise AssertionError("".join(seen))
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:  # pragma: no cover
            child.kill()
            child.wait()
    assert child.returncode == 130, err
    lines = _report(report)
    assert len(lines) == 30  # one line per input message, none missing, none twice
    assert sorted(int(str(line["index"])) for line in lines) == list(range(30))
    statuses = [line["status"] for line in lines]
    accepted = statuses.count("accepted")
    assert accepted >= 2 and statuses.count("not_sent") >= 1
    assert set(statuses) <= {"accepted", "not_sent", "unknown", "failed"}
    # a message a connection held, unsent, when the stop came ends "failed" (never sent), by
    # timing: it must say so, and it must not have reached the server
    for line in lines:
        if line["status"] == "failed":
            assert "not sent" in line["error"]["message"], line  # type: ignore[index]
    # the server got every message the report calls accepted, and beyond those only messages
    # whose fate the report calls unknown (end of data written, the stop came before its reply)
    unknown = statuses.count("unknown")
    received = len(tls_server.recorder.messages)
    assert accepted <= received <= accepted + unknown, statuses
    assert "stopped" in err and "not_sent" in out


def test_progress_bar_on_a_terminal(
    cli: Cli, tls_server: SmtpdServer, ca_file: str, tmp_path: pathlib.Path
) -> None:
    import os
    import pty

    source = _csv(tmp_path, 5)
    master, slave = pty.openpty()
    child = subprocess.Popen(
        cli.argv(
            "batch",
            str(source),
            "--template",
            str(_template(tmp_path)),
            "--from",
            "news@example.org",
            "--report",
            str(tmp_path / "tty.jsonl"),
            *server_args(tls_server, ca_file, "--user", USER),
        ),
        env={**cli.env, **AUTH_ENV, "TERM": "xterm-256color"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    screen = b""
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            screen += chunk
        out, _ = child.communicate(timeout=60)
    finally:
        os.close(master)
        if child.poll() is None:  # pragma: no cover
            child.kill()
            child.wait()
    assert child.returncode == 0
    text = screen.decode("utf-8", "replace")
    assert "5/5" in text and "msg/s" in text and "ETA" in text and "accepted=5" in text
    assert "[1/5]" not in text  # the plain-lines mode is for pipes, not terminals
    assert b"accepted" in out  # the summary table on stdout


def test_a_lost_final_reply_is_unknown_and_listed_apart(
    cli: Cli, scripted: Callable[..., ScriptedServer], tmp_path: pathlib.Path
) -> None:
    envelope = [Expect(b"MAIL FROM"), Send(b"250 ok\r\n"), Expect(b"RCPT TO"),
                Send(b"250 ok\r\n"), Expect(b"DATA"), Send(b"354 go\r\n"), ReadData()]  # fmt: skip
    server = scripted(
        [
            Send(b"220 mx.test ESMTP\r\n"),
            Expect(b"EHLO"),
            Send(b"250 mx.test\r\n"),  # no PIPELINING: one command at a time
            *envelope,
            Send(b"250 2.0.0 queued as Q1\r\n"),
            *envelope,
            Close(),  # message 2's end-of-data reply never comes
        ]
    )
    report = tmp_path / "lost.jsonl"
    proc = cli(
        "batch", str(_csv(tmp_path, 3)), "--template", str(_template(tmp_path)),
        "--from", "news@example.org", "--report", str(report), "--tls", "none",
        "--server", f"127.0.0.1:{server.port}", "--timeout", "2", "--retries", "0",
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    statuses = {line["key"]: line["status"] for line in _report(report)}
    assert statuses == {"k1": "accepted", "k2": "unknown", "k3": "failed"}
    assert "UNKNOWN (may have been delivered, do not resend blindly): k2" in proc.stdout


def test_wrong_password_ends_the_batch_with_a_complete_report(
    cli: Cli, tls_server: SmtpdServer, ca_file: str, tmp_path: pathlib.Path
) -> None:
    report = tmp_path / "denied.jsonl"
    proc = cli(
        "batch", str(_csv(tmp_path, 4)), "--template", str(_template(tmp_path)),
        "--from", "news@example.org", "--report", str(report),
        *server_args(tls_server, ca_file, "--user", USER),
        env={"MAILSDK_PASSWORD": "not-the-password"},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: AUTH")
    lines = _report(report)
    assert sorted(int(str(line["index"])) for line in lines) == [0, 1, 2, 3]
    assert {line["status"] for line in lines} <= {"failed", "refused", "not_sent"}
    assert tls_server.recorder.messages == []
    assert len(tls_server.recorder.auth_logins) <= 2  # not one login attempt per message


def test_a_batch_over_two_worker_processes(
    cli: Cli, tls_server: SmtpdServer, ca_file: str, tmp_path: pathlib.Path
) -> None:
    source = _csv(tmp_path, 6, refused_row=3)
    report = tmp_path / "out.jsonl"
    proc = cli(
        "batch", str(source), "--template", str(_template(tmp_path)), "--subject", "Hi $name",
        "--from", "news@example.org", "--connections", "2", "--processes", "2",
        "--report", str(report), *server_args(tls_server, ca_file, "--user", USER), env=AUTH_ENV,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # row 3 refused, the rest accepted
    lines = _report(report)
    assert sorted(int(str(line["index"])) for line in lines) == list(range(6))
    statuses = {line["key"]: line["status"] for line in lines}
    assert statuses.pop("k3") == "refused"
    assert set(statuses.values()) == {"accepted"}
    assert len(tls_server.recorder.messages) == 5  # each accepted message once
    no_secret(proc)


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_over_worker_processes_writes_a_complete_report(
    cli: Cli, tls_server: SmtpdServer, ca_file: str, tmp_path: pathlib.Path, presses: int
) -> None:
    # Ctrl-C in a terminal signals the whole process group: the parent and its workers.
    import os

    source = _csv(tmp_path, 40)
    report = tmp_path / "interrupted.jsonl"
    child = subprocess.Popen(
        cli.argv(
            "batch", str(source), "--template", str(_template(tmp_path)),
            "--from", "news@example.org", "--rate", "8/s", "--connections", "2",
            "--processes", "2", "--report", str(report),
            *server_args(tls_server, ca_file, "--user", USER),
        ),
        env={**cli.env, **AUTH_ENV}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert child.stderr is not None
        deadline = time.monotonic() + 30
        seen = []
        while time.monotonic() < deadline:
            line = child.stderr.readline()
            seen.append(line)
            if line.startswith("[3/40]"):
                break
        else:  # pragma: no cover
            raise AssertionError("".join(seen))
        for _ in range(presses):
            os.killpg(child.pid, signal.SIGINT)
            time.sleep(0.05)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:  # pragma: no cover
            child.kill()
            child.wait()
    assert child.returncode == 130, err
    assert not _group_alive(child.pid)  # no worker outlives the command
    lines = _report(report)
    assert sorted(int(str(line["index"])) for line in lines) == list(range(40))
    statuses = [line["status"] for line in lines]
    assert set(statuses) <= {"accepted", "not_sent", "unknown", "failed"}
    accepted, unknown = statuses.count("accepted"), statuses.count("unknown")
    assert accepted >= 3 and statuses.count("not_sent") + statuses.count("failed") >= 1
    received = len(tls_server.recorder.messages)
    assert accepted <= received <= accepted + unknown, statuses
    for line in lines:
        if line["status"] == "failed":
            assert "not sent" in line["error"]["message"], line  # type: ignore[index]


def _group_alive(pgid: int) -> bool:
    import os

    for _ in range(50):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.1)
    return True
