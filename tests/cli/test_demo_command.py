"""``mailsdk demo`` as a user runs it: the batch, pipelining on the wire, the span tree."""

from __future__ import annotations

from tests.cli._helpers import Cli

from mailsdk.cli._demo_server import DEMO_PASSWORD


def test_demo_shows_batch_pipelining_and_spans(cli: Cli) -> None:
    proc = cli("demo", "--wire", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "PIPELINING" in out.split("server extensions:", 1)[1].splitlines()[0]
    assert "batch: 5 messages over 2 connections (PIPELINING)" in out
    for line in ("ACCEPTED newsletter-1", "REFUSED  newsletter-3", "PARTIAL  newsletter-5"):
        assert line in out
    assert "batch: 4/5 delivered, 1 refused" in out
    assert "spans recorded by the OpenTelemetry SDK" in out
    assert out.count("smtp.session") == 2  # one per batch connection
    assert "pipelined x3" in out
    wire = proc.stderr
    assert "  | C: RCPT TO:" in wire  # a command written together with the ones around it
    assert "S: 250-PIPELINING" in wire
    assert DEMO_PASSWORD not in out + wire


def test_python_dash_m_mailsdk_runs_the_demo(cli: Cli) -> None:
    proc = cli("demo", "--async", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "asyncio client" in proc.stdout
