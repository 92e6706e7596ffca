"""mailsdk's LMTP client against real Dovecot LMTP, over TCP and over the unix socket.

Layer: tests (marker ``mta``). Each test runs with the blocking and the asyncio client (the
``mode`` fixture). RFC 2033 §4.2: after the data, one reply per accepted recipient, in RCPT
order. Dovecot offers CHUNKING, so both DATA and BDAT are exercised. LMTP delivery is
synchronous: once the replies are in, the Maildirs hold the message.
"""

from __future__ import annotations

import pytest
from tests._support.modes import Mode
from tests._support.mta import MtaEnvironment, as_sent, build_message
from tests.mta.mailsdk_support import (
    SENDER,
    TRICKY_BODY,
    enable_wire_log,
    lmtp_builder,
    wire_lines,
)

from mailsdk import AsyncLMTPClient, EnhancedStatus, LMTPClient, RecipientsRefused

pytestmark = pytest.mark.mta

TRANSPORTS = pytest.mark.parametrize("transport", ["tcp", "unix"])
GOOD = ("alice@example.test", "bob@example.test", "carol@example.test")
UNKNOWN = "nobody@example.test"


@TRANSPORTS
@pytest.mark.parametrize("chunking", [False, True], ids=["data", "bdat"])
async def test_one_reply_per_recipient(
    mode: Mode,
    mta_env: MtaEnvironment,
    transport: str,
    chunking: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    enable_wire_log(caplog)
    recipients = [GOOD[0], UNKNOWN, GOOD[1], GOOD[2]]
    message, message_id = build_message(", ".join(GOOD), body=TRICKY_BODY)
    builder = lmtp_builder(mta_env, transport).with_chunking(chunking, chunk_size=128)
    client = mode.build(builder)
    assert isinstance(client, AsyncLMTPClient if mode.is_async else LMTPClient)
    async with mode.session(builder) as s:
        assert s.tls is None
        caps = s.capabilities
        assert caps.pipelining and caps.chunking and caps.eightbitmime
        assert caps.enhanced_status_codes
        result = await s.sendmail(SENDER, recipients, message)
    assert result.lmtp
    assert result.accepted == GOOD
    sent = [line.split()[1] for line in wire_lines(caplog) if line.startswith("C: ")]
    assert sent[:2] == ["LHLO", "MAIL"]
    if chunking:
        assert "DATA" not in sent and sent.count("BDAT") == -(-len(message) // 128)
    else:
        assert "DATA" in sent and "BDAT" not in sent
    # One entry per recipient: the delivery reply for the accepted, the RCPT refusal for the
    # unknown one; each delivery reply names its own recipient (the pairing kept RCPT order).
    assert list(result.recipient_replies) == recipients
    for rcpt in GOOD:
        reply = result.recipient_replies[rcpt]
        assert (reply.code, reply.enhanced) == (250, EnhancedStatus(2, 0, 0))
        assert reply.text.startswith(f"2.0.0 <{rcpt}> "), reply.text
    assert list(result.refused) == [UNKNOWN]
    refusal = result.refused[UNKNOWN]
    assert (refusal.code, refusal.enhanced) == (550, EnhancedStatus(5, 1, 1))
    assert result.reply == result.recipient_replies[GOOD[-1]]
    for rcpt in GOOD:
        stored = mta_env.wait_for_message(rcpt, message_id, timeout=1.0)
        assert as_sent(stored) == message


@TRANSPORTS
async def test_every_recipient_refused(mode: Mode, mta_env: MtaEnvironment, transport: str) -> None:
    message, _ = build_message("nobody@example.test")
    unknown = ["nobody@example.test", "nemo@example.test"]
    async with mode.session(lmtp_builder(mta_env, transport)) as s:
        with pytest.raises(RecipientsRefused) as excinfo:
            await s.sendmail(SENDER, unknown, message)
        assert (await s.noop()).code == 250  # RSET put the session back in step
    assert list(excinfo.value.refused) == unknown
    for reply in excinfo.value.refused.values():
        assert (reply.code, reply.enhanced) == (550, EnhancedStatus(5, 1, 1))


@TRANSPORTS
async def test_several_transactions_on_one_session(
    mode: Mode, mta_env: MtaEnvironment, transport: str
) -> None:
    sent = [build_message("bob@example.test", subject=f"lmtp {i}") for i in range(3)]
    async with mode.session(lmtp_builder(mta_env, transport)) as s:
        for message, _ in sent:
            result = await s.sendmail(SENDER, ["bob@example.test"], message)
            assert result.lmtp and result.accepted == ("bob@example.test",)
    for message, message_id in sent:
        assert as_sent(mta_env.wait_for_message("bob", message_id, timeout=1.0)) == message
