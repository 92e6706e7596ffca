"""``mailsdk demo`` runs end to end (both clients) and reports the refused recipient."""

from __future__ import annotations

import logging

import pytest

from mailsdk.cli import main
from mailsdk.cli._demo_server import REFUSED_RECIPIENT


@pytest.mark.parametrize("argv", [["demo"], ["demo", "--async"]], ids=["sync", "async"])
def test_demo_reports_the_refused_recipient(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(argv)
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"REFUSED  {REFUSED_RECIPIENT}" in out
    assert "550" in out
    assert "summary: 3/3 messages sent, 5 recipients accepted, 1 refused" in out
    assert "server received 3 messages for 5 recipients" in out
    assert ("asyncio client" if "--async" in argv else "blocking client") in out
    assert "AUTH PLAIN" in out or "AUTH LOGIN" in out


def test_demo_wire_log_redacts_auth(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from mailsdk.cli._demo_server import DEMO_PASSWORD

    caplog.set_level("DEBUG", logger="mailsdk.wire")
    try:
        assert main(["demo", "--wire"]) == 0
    finally:
        logging.getLogger("mailsdk.wire").setLevel(logging.NOTSET)
    captured = capsys.readouterr()
    text = captured.out + captured.err + caplog.text
    assert "C: EHLO demo.client.invalid" in caplog.text
    assert DEMO_PASSWORD not in text


def test_demo_without_aiosmtpd_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    # A None entry in sys.modules makes the import fail as if aiosmtpd were not installed.
    for name in ("aiosmtpd", "aiosmtpd.controller", "aiosmtpd.smtp"):
        monkeypatch.setitem(sys.modules, name, None)
    code = main(["demo"])
    captured = capsys.readouterr()
    assert code == 1
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert "pip install 'mailsdk[demo]'" in lines[0]
    assert "Traceback" not in captured.err + captured.out
