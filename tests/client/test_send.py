"""send_message / sendmail end to end against aiosmtpd, in both modes.

Envelope rules (smtplib's), Bcc stripping checked on the bytes received, SMTPUTF8/8BITMIME/SIZE
chosen automatically, line endings, partial acceptance as a result, and the typed refusals after
which the session stays usable.
"""

from __future__ import annotations

from collections.abc import Callable
from email.message import EmailMessage, Message

import pytest
from tests._support.modes import Mode, plain_builder
from tests._support.smtpd import SmtpdServer

import mailsdk
from mailsdk import (
    CapabilityError,
    DataRefused,
    InvalidInputError,
    RcptOptions,
    RecipientsRefused,
    SenderRefused,
)


def make_message(**headers: str) -> EmailMessage:
    msg = EmailMessage()
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("Hello,\nthis is the body.\n")
    return msg


async def test_envelope_from_to_cc_bcc_and_bcc_never_transmitted(
    mode: Mode, smtpd: SmtpdServer
) -> None:
    msg = make_message(
        From="Alice <alice@example.org>",
        To="bob@example.com, Carol <carol@example.com>",
        Cc="dave@example.com",
        Bcc="secret@example.com",
        Subject="envelope",
    )
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        result = await s.send_message(msg)
    assert result.sender == "alice@example.org"
    assert set(result.accepted) == {
        "bob@example.com",
        "carol@example.com",
        "dave@example.com",
        "secret@example.com",
    }
    (received,) = smtpd.recorder.messages
    assert received.mail_from == "alice@example.org"
    assert sorted(received.rcpt_tos) == sorted(result.accepted)
    assert b"secret@example.com" not in received.content
    assert b"Bcc" not in received.content
    assert b"secret@example.com" not in bytes(smtpd.recorder.raw).split(b"DATA\r\n", 1)[1]
    # the caller's message object is untouched
    assert msg["Bcc"] == "secret@example.com"


async def test_sender_header_wins_over_from(mode: Mode, smtpd: SmtpdServer) -> None:
    msg = make_message(
        From="alice@example.org", Sender="list-bounces@example.org", To="bob@example.com"
    )
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        result = await s.send_message(msg)
    assert result.sender == "list-bounces@example.org"
    assert smtpd.recorder.messages[0].mail_from == "list-bounces@example.org"


async def test_resent_block_is_used_and_resent_bcc_stripped(mode: Mode, smtpd: SmtpdServer) -> None:
    msg = make_message(From="alice@example.org", To="bob@example.com", Subject="fwd")
    msg["Resent-Date"] = "Mon, 23 Nov 2026 10:00:00 +0000"
    msg["Resent-From"] = "forwarder@example.org"
    msg["Resent-To"] = "erin@example.com"
    msg["Resent-Bcc"] = "hidden@example.com"
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        result = await s.send_message(msg)
    assert result.sender == "forwarder@example.org"
    assert result.accepted == ("erin@example.com", "hidden@example.com")
    content = smtpd.recorder.messages[0].content
    assert b"hidden@example.com" not in content
    assert b"Resent-Bcc" not in content
    assert b"Resent-To: erin@example.com" in content


async def test_several_resent_blocks_are_refused_before_any_command(
    mode: Mode, smtpd: SmtpdServer
) -> None:
    msg = make_message(From="alice@example.org", To="bob@example.com")
    for n in (1, 2):
        msg["Resent-Date"] = f"Mon, 23 Nov 2026 1{n}:00:00 +0000"
        msg["Resent-To"] = f"r{n}@example.com"
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        with pytest.raises(InvalidInputError, match="Resent"):
            await s.send_message(msg)
        assert "MAIL" not in smtpd.recorder.verbs
        assert (await s.noop()).code == 250


async def test_explicit_envelope_overrides_headers(mode: Mode, smtpd: SmtpdServer) -> None:
    msg = make_message(From="alice@example.org", To="bob@example.com")
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        result = await s.send_message(
            msg, sender="bounce@example.org", recipients="only@example.com"
        )
    assert result.accepted == ("only@example.com",)
    assert smtpd.recorder.messages[0].mail_from == "bounce@example.org"
    assert smtpd.recorder.messages[0].rcpt_tos == ["only@example.com"]


async def test_legacy_message_class_works(mode: Mode, smtpd: SmtpdServer) -> None:
    msg = Message()
    msg["From"] = "alice@example.org"
    msg["To"] = "bob@example.com"
    msg.set_payload("legacy body\n")
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        result = await s.send_message(msg)
    assert result.accepted == ("bob@example.com",)
    assert smtpd.recorder.messages[0].content.endswith(b"legacy body\r\n")


async def test_smtputf8_is_chosen_for_an_international_address(
    mode: Mode, smtpd: SmtpdServer
) -> None:
    msg = make_message(From="bot@example.org", To="josé@exámple.com", Subject="intl")
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        result = await s.send_message(msg)
    assert result.accepted == ("josé@exámple.com",)
    received = smtpd.recorder.messages[0]
    assert "SMTPUTF8" in [o.upper() for o in received.mail_options]
    assert received.rcpt_tos == ["josé@exámple.com"]
    assert "josé@exámple.com".encode() in received.content


async def test_smtputf8_missing_is_a_capability_error_before_mail(
    mode: Mode, smtpd_factory: Callable[..., SmtpdServer]
) -> None:
    server = smtpd_factory(smtputf8=False)
    msg = make_message(From="bot@example.org", To="josé@exámple.com")
    async with mode.session(plain_builder(server.host, server.port)) as s:
        assert not s.capabilities.smtputf8
        with pytest.raises(CapabilityError) as info:
            await s.send_message(msg)
        assert info.value.extension == "SMTPUTF8"
        assert "MAIL" not in server.recorder.verbs
        # the session is still in step: an ASCII message goes through
        ok = await s.send_message(make_message(From="bot@example.org", To="bob@example.com"))
        assert ok.accepted == ("bob@example.com",)


async def test_8bit_body_requests_body_8bitmime(mode: Mode, smtpd: SmtpdServer) -> None:
    msg = EmailMessage()
    msg["From"] = "alice@example.org"
    msg["To"] = "bob@example.com"
    msg["Subject"] = "café"
    msg.set_content("Ventes: 1 234 € — très bien.\n", cte="8bit")
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        await s.send_message(msg)
    received = smtpd.recorder.messages[0]
    assert "BODY=8BITMIME" in [o.upper() for o in received.mail_options]
    # an ASCII envelope needs no SMTPUTF8: the non-ASCII subject is RFC 2047-encoded
    assert "SMTPUTF8" not in [o.upper() for o in received.mail_options]
    assert b"Subject: =?utf-8?" in received.content
    assert "très bien".encode() in received.content


async def test_ascii_message_announces_size_and_no_body_param(
    mode: Mode, smtpd: SmtpdServer
) -> None:
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        result = await s.sendmail("a@example.org", ["b@example.com"], b"Subject: x\r\n\r\nbody\r\n")
    received = smtpd.recorder.messages[0]
    assert received.mail_options == [f"SIZE={result.size}"]
    assert result.size == len(b"Subject: x\r\n\r\nbody\r\n")


async def test_message_over_server_size_is_refused_locally(
    mode: Mode, smtpd_factory: Callable[..., SmtpdServer]
) -> None:
    server = smtpd_factory(data_size_limit=1000)
    async with mode.session(plain_builder(server.host, server.port)) as s:
        assert s.capabilities.max_size == 1000
        with pytest.raises(CapabilityError) as info:
            await s.sendmail("a@example.org", "b@example.com", b"x" * 2000)
        assert info.value.extension == "SIZE"
        assert "MAIL" not in server.recorder.verbs
        small = await s.sendmail("a@example.org", "b@example.com", b"small\r\n")
        assert small.accepted == ("b@example.com",)


@pytest.mark.parametrize(
    "payload",
    [b"Subject: lf\n\nline one\nline two\n", "Subject: lf\n\nline one\nline two\n"],
    ids=["bytes", "str"],
)
async def test_sendmail_canonicalises_line_endings(
    mode: Mode, smtpd: SmtpdServer, payload: bytes | str
) -> None:
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        result = await s.sendmail("a@example.org", ["b@example.com"], payload)
    expected = b"Subject: lf\r\n\r\nline one\r\nline two\r\n"
    assert smtpd.recorder.messages[0].content == expected
    assert result.size == len(expected)
    wire = bytes(smtpd.recorder.raw)
    body = wire.split(b"DATA\r\n", 1)[1]
    assert b"\r\n" in body
    assert b"\n" not in body.replace(b"\r\n", b"")


async def test_sendmail_str_with_non_ascii_is_utf8(mode: Mode, smtpd: SmtpdServer) -> None:
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        await s.sendmail("a@example.org", "b@example.com", "Subject: x\r\n\r\nnaïve\r\n")
    assert smtpd.recorder.messages[0].content == "Subject: x\r\n\r\nnaïve\r\n".encode()
    assert "BODY=8BITMIME" in smtpd.recorder.messages[0].mail_options


async def test_raw_message_needs_an_envelope(mode: Mode, smtpd: SmtpdServer) -> None:
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        with pytest.raises(InvalidInputError):
            await s.send_message(b"Subject: x\r\n\r\nbody\r\n")
        with pytest.raises(InvalidInputError):
            await s.send_message(make_message(From="a@example.org"))  # no recipients
    assert "MAIL" not in smtpd.recorder.verbs


async def test_partial_acceptance_is_a_result(
    mode: Mode, smtpd_factory: Callable[..., SmtpdServer]
) -> None:
    server = smtpd_factory(refuse_rcpt={"nobody@example.net"})
    msg = make_message(
        From="a@example.org", To="b@example.com, nobody@example.net", Cc="c@example.com"
    )
    async with mode.session(plain_builder(server.host, server.port)) as s:
        result = await s.send_message(msg)
    assert result.accepted == ("b@example.com", "c@example.com")
    assert list(result.refused) == ["nobody@example.net"]
    refusal = result.refused["nobody@example.net"]
    assert isinstance(refusal, mailsdk.Reply)
    assert refusal.code == 550
    assert str(refusal.enhanced) == "5.1.1"
    assert not result.ok
    assert result.reply.code == 250
    assert result.queue_id == "QID0001"
    assert result.size == len(server.recorder.messages[0].content)
    assert set(result.recipient_replies) == {"b@example.com", "c@example.com", "nobody@example.net"}
    assert server.recorder.messages[0].rcpt_tos == ["b@example.com", "c@example.com"]


async def test_all_recipients_refused_raises_and_session_stays_usable(
    mode: Mode, smtpd_factory: Callable[..., SmtpdServer]
) -> None:
    server = smtpd_factory(refuse_rcpt={"x@example.net", "y@example.net"})
    async with mode.session(plain_builder(server.host, server.port)) as s:
        with pytest.raises(RecipientsRefused) as info:
            await s.sendmail("a@example.org", ["x@example.net", "y@example.net"], b"body\r\n")
        assert set(info.value.refused) == {"x@example.net", "y@example.net"}
        assert info.value.reply.code == 550
        assert "DATA" not in server.recorder.verbs
        assert not s.closed
        ok = await s.sendmail("a@example.org", ["b@example.com"], b"body\r\n")
        assert ok.accepted == ("b@example.com",)
    assert len(server.recorder.messages) == 1


async def test_refused_sender_raises_and_session_stays_usable(
    mode: Mode, smtpd_factory: Callable[..., SmtpdServer]
) -> None:
    server = smtpd_factory(refuse_sender={"spammer@example.org"})
    async with mode.session(plain_builder(server.host, server.port)) as s:
        with pytest.raises(SenderRefused) as info:
            await s.sendmail("spammer@example.org", ["b@example.com"], b"body\r\n")
        assert info.value.sender == "spammer@example.org"
        assert info.value.smtp_code == 553
        assert not s.closed
        ok = await s.sendmail("good@example.org", ["b@example.com"], b"body\r\n")
        assert ok.sender == "good@example.org"


async def test_refused_data_raises_data_refused(
    mode: Mode, smtpd_factory: Callable[..., SmtpdServer]
) -> None:
    server = smtpd_factory(data_reply="554 5.6.0 Message content rejected")
    async with mode.session(plain_builder(server.host, server.port)) as s:
        with pytest.raises(DataRefused) as info:
            await s.sendmail("a@example.org", ["b@example.com"], b"body\r\n")
        assert info.value.reply.code == 554
        assert info.value.is_permanent
        assert not s.closed
        assert (await s.noop()).code == 250


async def test_rcpt_options_need_the_extension(mode: Mode, smtpd: SmtpdServer) -> None:
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        with pytest.raises(CapabilityError) as info:
            await s.sendmail(
                "a@example.org",
                ["b@example.com"],
                b"body\r\n",
                rcpt_options=RcptOptions(notify=("FAILURE",)),
            )
        assert info.value.extension == "DSN"
    assert "MAIL" not in smtpd.recorder.verbs


async def test_several_messages_on_one_session(mode: Mode, smtpd: SmtpdServer) -> None:
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        ids = [
            (
                await s.sendmail(
                    "a@example.org", [f"r{i}@example.com"], f"Subject: {i}\r\n\r\n{i}\r\n"
                )
            ).queue_id
            for i in range(3)
        ]
    assert ids == ["QID0001", "QID0002", "QID0003"]
    assert smtpd.recorder.verbs.count("EHLO") == 1
    assert [m.rcpt_tos for m in smtpd.recorder.messages] == [
        [f"r{i}@example.com"] for i in range(3)
    ]


async def test_client_one_shot_send_message(mode: Mode, smtpd: SmtpdServer) -> None:
    client = mode.build(plain_builder(smtpd.host, smtpd.port))
    msg = make_message(From="a@example.org", To="b@example.com")
    result = await mode.call(client.send_message, msg)
    assert result.accepted == ("b@example.com",)
    raw_result = await mode.call(client.sendmail, "a@example.org", "c@example.com", b"raw\r\n")
    assert raw_result.accepted == ("c@example.com",)
    assert smtpd.recorder.verbs.count("QUIT") == 2


async def test_null_reverse_path_for_bounces(mode: Mode, smtpd: SmtpdServer) -> None:
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        result = await s.sendmail("", ["postmaster@example.com"], b"Subject: bounce\r\n\r\nDSN\r\n")
    assert result.sender == ""
    assert b"MAIL FROM:<> SIZE=" in smtpd.recorder.raw
    assert smtpd.recorder.messages[0].mail_from in ("", "<>")  # aiosmtpd keeps the brackets


async def test_sendmail_with_an_international_sender_asks_for_smtputf8(
    mode: Mode, smtpd: SmtpdServer
) -> None:
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        await s.sendmail("rené@exämple.org", ["b@example.com"], "Subject: x\r\n\r\nbody\r\n")
    received = smtpd.recorder.messages[0]
    assert received.mail_from == "rené@exämple.org"
    assert "SMTPUTF8" in received.mail_options
