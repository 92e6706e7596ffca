"""``Session.run`` with a custom flow: frames that are subclasses of the SDK's frame types are
encoded as their base type (the pump dispatches on exact types for speed), and an object that
is no frame at all is a typed refusal, never an ``AttributeError`` (both modes)."""

from __future__ import annotations

from collections.abc import Generator

import attrs
import pytest
from tests._support.modes import Mode, plain_builder
from tests._support.smtpd import SmtpdServer

from mailsdk.errors import LocalProtocolError
from mailsdk.flows import Action, BodyChunk, Exchange, Phase
from mailsdk.protocol import CommandReplied, Data, EndOfData, MailFrom, RcptTo


@attrs.frozen
class TaggedChunk(BodyChunk):
    """A flow's own body piece type."""


@attrs.frozen
class TaggedMail(MailFrom):
    """A flow's own MAIL command type."""


def flow(content: object) -> Generator[Action, object, tuple[CommandReplied, ...]]:
    envelope = (TaggedMail("a@example.org"), RcptTo("b@example.com"), Data())
    yield Exchange(envelope, 3, Phase.COMMAND)
    yield Exchange((content,), 0, Phase.DATA)  # type: ignore[arg-type]
    events = yield Exchange((EndOfData(),), 1, Phase.DATA)
    return events  # type: ignore[return-value]


async def test_subclassed_frames_are_sent_as_their_base(mode: Mode, smtpd: SmtpdServer) -> None:
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as session:
        events = await session.run(flow(TaggedChunk(b"Subject: custom\r\n\r\nhi\r\n")))
    assert [e.reply.code for e in events] == [250]
    assert smtpd.recorder.messages[-1].content.endswith(b"hi\r\n")


async def test_an_object_that_is_no_frame_is_a_typed_error(mode: Mode, smtpd: SmtpdServer) -> None:
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as session:
        with pytest.raises(LocalProtocolError, match="not str"):
            await session.run(flow("Subject: not a frame\r\n\r\n"))
