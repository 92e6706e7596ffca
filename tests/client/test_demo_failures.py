"""``mailsdk demo`` reports failures with a non-zero exit code."""

from __future__ import annotations

import pytest


def test_demo_exits_non_zero_when_a_message_failed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from email.message import EmailMessage

    from mailsdk.cli import demo
    from mailsdk.cli import main as cli_main

    original = demo.demo_messages

    def with_a_failure() -> list[EmailMessage]:
        broken = EmailMessage()
        broken["From"] = "bot@example.org"  # no To/Cc/Bcc: InvalidInputError, reported FAILED
        broken["Subject"] = "no recipients"
        broken.set_content("x\n")
        return [*original(), broken]

    monkeypatch.setattr(demo, "demo_messages", with_a_failure)
    code = cli_main(["demo"])
    out = capsys.readouterr().out
    assert "FAILED   InvalidInputError" in out
    assert code == 1, out
