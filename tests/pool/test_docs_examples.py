"""Every Python example of docs/pools-and-batches.md runs against a local server.

Blocks preceded by ``<!-- no-test -->`` are skipped (set-up with placeholders, protocol
signatures). The others run in one namespace holding ``mailsdk``, ``client``, ``aclient`` (both
pointed at aiosmtpd) and ``messages`` (five messages whose headers name the envelope).
"""

from __future__ import annotations

import email.message
import pathlib
import re

import pytest
from tests._support.modes import plain_builder
from tests._support.smtpd import SmtpdServer

import mailsdk

PAGE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "pools-and-batches.md"
_BLOCK = re.compile(r"(<!-- no-test -->\n)?```python\n(.*?)```", re.DOTALL)


def examples() -> list[str]:
    return [code for skip, code in _BLOCK.findall(PAGE.read_text()) if not skip]


def make_messages() -> list[email.message.EmailMessage]:
    out = []
    for i in range(5):
        msg = email.message.EmailMessage()
        msg["From"] = "app@example.com"
        msg["To"] = "user@example.com"
        msg["Subject"] = f"example {i}"
        msg.set_content(f"hello {i}\n")
        out.append(msg)
    return out


def test_the_page_has_examples() -> None:
    assert len(examples()) >= 8


@pytest.mark.parametrize("index", range(len(examples())))
def test_example_runs(index: int, smtpd: SmtpdServer, capsys: pytest.CaptureFixture[str]) -> None:
    builder = plain_builder(smtpd.host, smtpd.port)
    namespace = {
        "mailsdk": mailsdk,
        "client": builder.build(),
        "aclient": builder.build_async(),
        "messages": make_messages(),
    }
    exec(compile(examples()[index], f"{PAGE.name}[{index}]", "exec"), namespace)
    capsys.readouterr()
