"""The groups of commands an express run has in flight, and what the runner is asked for.

Layer: L3 flows (sans-IO). May import ``mailsdk.protocol``, ``mailsdk.esmtp`` and L0. Must never
import transport, telemetry or client, nor any I/O module of the standard library.

:class:`~mailsdk.flows.express.ExpressRun` keeps, oldest first, one :class:`Group` per set of
commands whose replies are judged together: a message's envelope, its content and end, or the
RSET (or empty body) after a refusal. A reply is paired by its position in the oldest group.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator

from mailsdk.errors import MailError
from mailsdk.flows._delivery import Delivery, broken_outcome, end_outcome
from mailsdk.flows.actions import BdatChunk, BodyChunk, Phase
from mailsdk.flows.judge import EnvelopePlan, EnvelopeVerdict
from mailsdk.flows.outcomes import SendOutcome
from mailsdk.protocol.reply import Reply

__all__ = [
    "CONTENT",
    "ENVELOPE",
    "FINAL",
    "LOCAL",
    "OUTPUT_BLOCK",
    "SERVICE",
    "WHOLE_CONTENT",
    "Group",
    "Want",
    "awaiting",
    "by_index",
    "final_outcome",
    "lost_outcome",
]

#: In-memory content up to this size is encoded whole, with its end (one write); larger or
#: streamed content is encoded piece by piece as the runner takes the output (bounded memory).
WHOLE_CONTENT: typing.Final = 256 * 1024
#: Output is handed to the runner once this much is buffered (streamed content).
OUTPUT_BLOCK: typing.Final = 128 * 1024

ENVELOPE: typing.Final = 0  # MAIL, RCPT... (and DATA) written, replies owed
CONTENT: typing.Final = 1  # content being written, its end not yet
FINAL: typing.Final = 2  # end of data / BDAT LAST written: its replies decide
SERVICE: typing.Final = 3  # an RSET or the empty body after a refusal
LOCAL: typing.Final = 4  # failed before anything was written


class Want:
    """What :attr:`ExpressRun.want` asks of the runner."""

    NOTHING: typing.Final = 0
    #: The next item, prepared (``None`` when the input is exhausted).
    ITEM: typing.Final = 1
    #: The next item only to account for it (it will never be sent): preparing it is wasted.
    UNPREPARED: typing.Final = 2


class Group:
    """Commands in flight whose replies are judged together, oldest first."""

    __slots__ = (
        "content",
        "count",
        "data_at",
        "item",
        "kind",
        "outcome",
        "plan",
        "replies",
        "verb",
        "verdict",
        "wait_next",
    )

    def __init__(self, kind: int, item: Delivery, count: int = 0) -> None:
        self.kind = kind
        self.item = item
        self.count = count  # replies owed
        self.wait_next = False  # BDAT chunks: the next envelope waits for their replies
        self.data_at = -1  # the position of DATA's reply (the one 3xx allowed), if any
        self.replies: list[Reply] = []
        self.plan: EnvelopePlan | None = None
        self.verdict: EnvelopeVerdict | None = None
        self.outcome: SendOutcome | None = None  # LOCAL, SERVICE: reported when reached
        self.verb = ""  # SERVICE: the command's verb
        self.content: Iterator[BodyChunk | BdatChunk] | None = None

    def label(self, position: int) -> str:
        """The command whose reply is at ``position`` (for errors)."""
        if self.kind == SERVICE:
            return self.verb
        plan = self.plan
        if self.kind != ENVELOPE or plan is None:
            return "BDAT" if plan is not None and plan.use_bdat else "DATA.END"
        if position == 0:
            return "MAIL"
        return "RCPT" if position <= len(plan.rcpts) else "DATA"


def awaiting(label: str, phase: Phase) -> str:
    if label == "DATA.END":
        return "the end-of-data reply"
    if label == "BDAT" and phase is Phase.DATA:
        return "the reply to BDAT LAST (the end of the data)"
    return f"the reply to {label}"


def by_index(group: Group) -> int:
    return group.item.index


def final_outcome(group: Group) -> SendOutcome:
    """The outcome a judged final reply (a FINAL group's replies) stands for."""
    assert group.plan is not None
    assert group.verdict is not None
    return end_outcome(group.item, group.plan, group.verdict, group.replies)


def lost_outcome(group: Group, cause: MailError) -> SendOutcome | None:
    """The outcome of ``group``'s message when the connection broke with ``cause``; ``None``
    for a service command whose message a later one reports."""
    item = group.item
    if group.kind == SERVICE and group.outcome is None:
        return None  # the item's refusal is reported by the service command after it
    if group.outcome is not None:  # a refusal whose RSET got no answer: still refused
        return group.outcome
    return broken_outcome(item, cause, final=group.kind == FINAL, envelope=group.kind == ENVELOPE)
