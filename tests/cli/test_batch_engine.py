"""The batch command's engine and report writer when Ctrl-C lands while the command handles
an outcome: that message still gets its own line, with its real status (never ``not_sent``)."""

from __future__ import annotations

import json
import pathlib

from tests._support.modes import plain_builder
from tests._support.smtpd import SmtpdServer

from mailsdk.cli._batch_report import ReportWriter
from mailsdk.cli._engine import deliver
from mailsdk.flows import Outgoing


def _item(index: int) -> Outgoing:
    body = f"Subject: m{index}\r\nX-Idx: {index}\r\n\r\nhello {index}\r\n".encode()
    return Outgoing(body, sender="s@x.test", recipients=[f"r{index}@y.test"], key=f"k{index}")


def test_an_outcome_the_command_was_handling_comes_back_from_finish(
    smtpd: SmtpdServer, tmp_path: pathlib.Path
) -> None:
    items = [_item(i) for i in range(4)]
    path = tmp_path / "report.jsonl"
    writer = ReportWriter(str(path), items)
    delivery = deliver(plain_builder(smtpd.host, smtpd.port), items)
    outcomes = delivery.outcomes()
    handling = next(outcomes)
    # Ctrl-C now, before its line is written: the command's loop unwinds and never comes back
    # for the next outcome (the generator is closed at its yield).
    outcomes.close()
    late = delivery.finish()
    assert handling.index in {o.index for o in late}
    for outcome in late:
        assert writer.write(outcome)
    assert not writer.write(handling)  # its line is written once
    writer.finish()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted(line["index"] for line in lines) == list(range(4))  # one line per message
    status = {line["index"]: line["status"] for line in lines}
    assert status[handling.index] == "accepted"
    received = {
        int(m.content.split(b"X-Idx: ")[1].split(b"\r\n")[0]) for m in smtpd.recorder.messages
    }
    for index in received:  # the server has it: the report says so (or that it is unknown)
        assert status[index] in ("accepted", "unknown"), (index, status)
