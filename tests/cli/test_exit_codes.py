"""Exit codes for mixed outcomes: the worst actionable outcome wins, independent of order."""

from __future__ import annotations

import pytest

from mailsdk.cli._exit import ExitCode, exit_code_for, exit_code_for_statuses
from mailsdk.errors import RecipientsRefused
from mailsdk.flows import DeliveryStatus
from mailsdk.protocol.reply import Reply

TRANSIENT = Reply.build(450, "4.2.1 mailbox busy, try later")
PERMANENT = Reply.build(550, "5.1.1 no such user")


@pytest.mark.parametrize(
    "refused",
    [
        {"busy@example.com": TRANSIENT, "gone@example.com": PERMANENT},
        {"gone@example.com": PERMANENT, "busy@example.com": TRANSIENT},
    ],
    ids=["4xx-then-5xx", "5xx-then-4xx"],
)
def test_all_refused_with_one_transient_recipient_is_exit_3(refused: dict[str, Reply]) -> None:
    # exit 2 says "retrying will not help", but the 4xx recipient may be accepted later
    assert exit_code_for(RecipientsRefused(refused)) == ExitCode.TEMPORARY


def test_all_refused_permanently_is_exit_2() -> None:
    refused = {"a@example.com": PERMANENT, "b@example.com": PERMANENT}
    assert exit_code_for(RecipientsRefused(refused)) == ExitCode.PERMANENT


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        ({DeliveryStatus.ACCEPTED}, ExitCode.OK),
        ({DeliveryStatus.ACCEPTED, DeliveryStatus.REFUSED}, ExitCode.PARTIAL),
        ({DeliveryStatus.REFUSED}, ExitCode.PERMANENT),
        ({DeliveryStatus.UNKNOWN, DeliveryStatus.REFUSED}, ExitCode.TEMPORARY),
        ({DeliveryStatus.ACCEPTED, DeliveryStatus.FAILED}, ExitCode.TEMPORARY),
        ({DeliveryStatus.PARTIAL}, ExitCode.PARTIAL),
    ],
)
def test_batch_exit_code_for_mixed_statuses(statuses: set[DeliveryStatus], code: ExitCode) -> None:
    assert exit_code_for_statuses(statuses) == code
