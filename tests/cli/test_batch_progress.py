"""The batch progress display shows the pool's own :class:`~mailsdk.batch.Progress` numbers."""

from __future__ import annotations

import io
import pathlib
import re

from tests._support.smtpd import SmtpdServer
from tests.cli._helpers import PASSWORD, USER, Cli, server_args

from mailsdk.batch import Progress
from mailsdk.cli._batch_report import Progressbar
from mailsdk.flows import DeliveryStatus, SendOutcome


def test_plain_lines_show_the_engines_rate_eta_and_in_flight() -> None:
    out = io.StringIO()
    bar = Progressbar(10, stream=out)
    # numbers no local clock would produce: the line must repeat the engine's snapshot
    bar.update(
        Progress(
            done=3,
            in_flight=4,
            counts={DeliveryStatus.ACCEPTED: 2, DeliveryStatus.REFUSED: 1},
            elapsed=1.0,
            rate=123.4,
            total=10,
            eta=56.0,
        )
    )
    bar.advance(SendOutcome(index=2, status=DeliveryStatus.ACCEPTED, key="k3"), "k3")
    bar.close()
    line = out.getvalue()
    assert "123.4 msg/s" in line
    assert "ETA 56 s" in line
    assert "4 in flight" in line
    assert "accepted=2 refused=1" in line


def test_batch_plain_lines_carry_in_flight_counts(
    cli: Cli, tls_server: SmtpdServer, ca_file: str, tmp_path: pathlib.Path
) -> None:
    source = tmp_path / "rows.csv"
    source.write_text("to,key\n" + "".join(f"u{n}@example.com,k{n}\n" for n in range(4)))
    body = tmp_path / "body.txt"
    body.write_text("hello\n")
    proc = cli(
        "batch", str(source), "--template", str(body), "--subject", "s", "--from",
        "news@example.org", "--connections", "2", "--report", str(tmp_path / "r.jsonl"),
        *server_args(tls_server, ca_file, "--user", USER), env={"MAILSDK_PASSWORD": PASSWORD},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("[")]
    assert len(lines) == 4
    assert all(re.search(r"\d+ in flight", line) for line in lines), lines
    assert "accepted=4" in lines[-1] and "ETA 0 s" in lines[-1]
