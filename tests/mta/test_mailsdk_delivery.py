"""mailsdk against real Postfix: what arrives in the Maildir is exactly what was sent.

Layer: tests (marker ``mta``). Each test runs with the blocking and the asyncio client (the
``mode`` fixture). Covers partial acceptance, SMTPUTF8 (RFC 6531), 8BITMIME (RFC 6152),
dot-stuffing (RFC 5321 §4.5.2), BDAT (RFC 3030), PIPELINING on and off (RFC 2920), DSN
(RFC 3461) and the local SIZE check (RFC 1870 §6). Postfix delivers asynchronously, so every
check of the Maildir goes through ``wait_for_message`` with the message's own Message-ID.
"""

from __future__ import annotations

import email.message
import email.policy
import os

import pytest
from tests._support.modes import Mode
from tests._support.mta import (
    Credentials,
    MtaEnvironment,
    as_sent,
    build_message,
    strip_trace_headers,
)
from tests.mta.mailsdk_support import (
    RELAY_RECIPIENT,
    SENDER,
    TRICKY_BODY,
    enable_wire_log,
    smtp_builder,
    wire_lines,
)

from mailsdk import (
    CapabilityError,
    CommandRefused,
    DataRefused,
    EnhancedStatus,
    MailOptions,
    RcptOptions,
    RecipientsRefused,
)

pytestmark = pytest.mark.mta

UTF8_SENDER = "jösé.ñandú@client.test"


def client_lines(caplog: pytest.LogCaptureFixture, verb: str) -> list[str]:
    """The logged commands starting with ``verb`` (``"MAIL"``, ``"RCPT"``, ``"BDAT"``...)."""
    return [line for line in wire_lines(caplog) if line.startswith(f"C: {verb}")]


async def test_partial_acceptance_delivers_to_the_good_recipient(
    mode: Mode, mta_env: MtaEnvironment
) -> None:
    message, message_id = build_message("alice@example.test, nobody@example.test")
    async with mode.session(smtp_builder(mta_env)) as s:
        result = await s.sendmail(SENDER, ["alice@example.test", "nobody@example.test"], message)
    assert result.accepted == ("alice@example.test",)
    assert not result.ok
    assert list(result.refused) == ["nobody@example.test"]
    refusal = result.refused["nobody@example.test"]
    assert refusal.code == 550
    assert refusal.enhanced == EnhancedStatus(5, 1, 1)
    assert set(result.recipient_replies) == {"alice@example.test", "nobody@example.test"}
    assert result.recipient_replies["alice@example.test"].code == 250
    assert result.reply.code == 250
    assert result.size == len(message)
    assert as_sent(mta_env.wait_for_message("alice", message_id)) == message
    # The queue id parsed from "250 2.0.0 Ok: queued as ..." is Postfix's own.
    assert result.queue_id is not None
    assert f"{result.queue_id}: " in mta_env.logs(tail=100_000)


async def test_smtputf8_sender_and_headers(mode: Mode, mta_env: MtaEnvironment) -> None:
    """No UTF-8 mailbox exists in the fixture: a UTF-8 reverse-path to alice instead."""
    message, message_id = build_message(
        "alice@example.test",
        sender=UTF8_SENDER,
        subject="Grüße ✓ 日本",
        body="Unicode body: ½ ✓ 日本\r\n".encode(),
    )
    builder = smtp_builder(mta_env)
    async with mode.session(builder) as s:
        assert s.capabilities.smtputf8
        result = await s.sendmail(UTF8_SENDER, ["alice@example.test"], message)
    assert result.accepted == ("alice@example.test",)
    stored = mta_env.wait_for_message("alice", message_id)
    # Postfix stored the UTF-8 reverse-path as is, and received the message "with UTF8SMTP".
    assert stored.startswith(f"Return-Path: <{UTF8_SENDER}>\n".encode())
    assert b" with UTF8SMTP" in stored
    assert as_sent(stored) == message


async def test_smtputf8_recipients(
    mode: Mode, mta_env: MtaEnvironment, alice: Credentials, caplog: pytest.LogCaptureFixture
) -> None:
    """A UTF-8 forward-path: an unknown local one is refused 5.1.1, a relayed one accepted."""
    enable_wire_log(caplog)
    unknown, relayed = "nöbody@example.test", "用户@elsewhere.test"
    message, _ = build_message(relayed)
    builder = smtp_builder(mta_env).with_credentials(alice.username, alice.password)
    async with mode.session(builder) as s:
        result = await s.sendmail(SENDER, [unknown, relayed], message)
    assert result.accepted == (relayed,)
    assert result.refused[unknown].code == 550
    assert result.refused[unknown].enhanced == EnhancedStatus(5, 1, 1)
    (mail,) = client_lines(caplog, "MAIL")
    assert mail.split()[-1] == "SMTPUTF8"  # requested automatically for the UTF-8 addresses


async def test_8bit_body_with_leading_dots_over_data(
    mode: Mode, mta_env: MtaEnvironment, caplog: pytest.LogCaptureFixture
) -> None:
    enable_wire_log(caplog)
    message, message_id = build_message("bob@example.test", body=TRICKY_BODY)
    async with mode.session(smtp_builder(mta_env).with_chunking(False)) as s:
        result = await s.sendmail(SENDER, ["bob@example.test"], message)
    assert result.ok
    (mail,) = client_lines(caplog, "MAIL")
    assert f"SIZE={len(message)}" in mail.split()
    assert "BODY=8BITMIME" in mail.split()  # the 8-bit body was detected
    assert client_lines(caplog, "DATA") and not client_lines(caplog, "BDAT")
    assert as_sent(mta_env.wait_for_message("bob", message_id)) == message


async def test_explicit_body_8bitmime_option(mode: Mode, mta_env: MtaEnvironment) -> None:
    message, message_id = build_message("carol@example.test", body=b"caf\xc3\xa9\r\n")
    async with mode.session(smtp_builder(mta_env, "none")) as s:
        await s.sendmail(
            SENDER, ["carol@example.test"], message, mail_options=MailOptions(body="8BITMIME")
        )
    assert as_sent(mta_env.wait_for_message("carol", message_id)) == message


async def test_bdat_in_several_chunks(
    mode: Mode, mta_env: MtaEnvironment, caplog: pytest.LogCaptureFixture
) -> None:
    enable_wire_log(caplog)
    body = TRICKY_BODY * 4 + b".\r\n"
    message, message_id = build_message("alice@example.test", body=body)
    builder = smtp_builder(mta_env).with_chunking(True, chunk_size=64)
    async with mode.session(builder) as s:
        result = await s.sendmail(SENDER, ["alice@example.test"], message)
    assert result.ok and result.reply.code == 250
    chunks = client_lines(caplog, "BDAT")
    assert len(chunks) == -(-len(message) // 64) >= 3
    assert all(line.endswith(" <chunk>") for line in chunks)
    assert [line for line in chunks if " LAST " in line] == [chunks[-1]]
    assert not client_lines(caplog, "DATA")
    assert as_sent(mta_env.wait_for_message("alice", message_id)) == message


@pytest.mark.parametrize("chunking", [False, True], ids=["data", "bdat"])
async def test_without_pipelining(
    mode: Mode, mta_env: MtaEnvironment, caplog: pytest.LogCaptureFixture, chunking: bool
) -> None:
    """Each command waits for its reply: the wire log alternates C: and S: lines."""
    enable_wire_log(caplog)
    message, message_id = build_message("bob@example.test", body=TRICKY_BODY)
    recipients = ["bob@example.test", "nobody@example.test", "carol@example.test"]
    builder = smtp_builder(mta_env).with_pipelining(False).with_chunking(chunking, chunk_size=100)
    async with mode.session(builder) as s:
        assert s.capabilities.pipelining  # offered, deliberately not used
        start = len(wire_lines(caplog))
        result = await s.sendmail(SENDER, recipients, message)
        lines = wire_lines(caplog)[start:]
    assert result.accepted == ("bob@example.test", "carol@example.test")
    assert result.refused["nobody@example.test"].code == 550
    sides = [line[0] for line in lines]
    assert sides == ["C", "S"] * (len(lines) // 2), lines
    for user in ("bob", "carol"):
        assert as_sent(mta_env.wait_for_message(user, message_id)) == message


async def test_pipelining_groups_the_envelope(
    mode: Mode, mta_env: MtaEnvironment, caplog: pytest.LogCaptureFixture
) -> None:
    """RFC 2920 §3.1: MAIL, every RCPT and DATA are written before any reply is read."""
    enable_wire_log(caplog)
    message, message_id = build_message("carol@example.test")
    builder = smtp_builder(mta_env).with_chunking(False)
    async with mode.session(builder) as s:
        start = len(wire_lines(caplog))
        await s.sendmail(SENDER, ["carol@example.test", "alice@example.test"], message)
        lines = wire_lines(caplog)[start:]
    verbs = [line.split()[1].split(":")[0] for line in lines[:4]]
    assert verbs == ["MAIL", "RCPT", "RCPT", "DATA"], lines
    assert as_sent(mta_env.wait_for_message("carol", message_id)) == message


async def test_several_messages_on_one_session(mode: Mode, mta_env: MtaEnvironment) -> None:
    sent = [build_message("alice@example.test", subject=f"n{i}") for i in range(3)]
    async with mode.session(smtp_builder(mta_env)) as s:
        for message, _ in sent:
            assert (await s.sendmail(SENDER, "alice@example.test", message)).ok
    for message, message_id in sent:
        assert as_sent(mta_env.wait_for_message("alice", message_id)) == message


async def test_dsn_parameters_and_success_report(
    mode: Mode, mta_env: MtaEnvironment, bob: Credentials, caplog: pytest.LogCaptureFixture
) -> None:
    enable_wire_log(caplog)
    envid = "envid-" + os.urandom(6).hex()
    body_marker = "body-" + os.urandom(6).hex()
    message, message_id = build_message(
        "alice@example.test", sender=bob.username, body=f"{body_marker}\r\n".encode()
    )
    async with mode.session(smtp_builder(mta_env)) as s:
        assert s.capabilities.dsn
        result = await s.sendmail(
            bob.username,
            ["alice@example.test"],
            message,
            mail_options=MailOptions(ret="HDRS", envid=envid),
            rcpt_options=RcptOptions(notify=("SUCCESS",), orcpt="alice@example.test"),
        )
    (mail,) = client_lines(caplog, "MAIL")
    assert {"RET=HDRS", f"ENVID={envid}"} <= set(mail.split())
    (rcpt,) = client_lines(caplog, "RCPT")
    assert {"NOTIFY=SUCCESS", "ORCPT=rfc822;alice@example.test"} <= set(rcpt.split())
    assert as_sent(mta_env.wait_for_message("alice", message_id)) == message
    # NOTIFY=SUCCESS: virtual(8) delivered, so Postfix reports "Action: delivered" to bob.
    report = mta_env.wait_for_message("bob", envid.encode())
    assert b"Content-Type: multipart/report; report-type=delivery-status" in report
    assert f"Original-Envelope-Id: {envid}\n".encode() in report
    assert b"Action: delivered\n" in report
    assert f"X-Postfix-Queue-ID: {result.queue_id}\n".encode() in report
    assert message_id in report  # RET=HDRS: the headers are returned ...
    assert body_marker.encode() not in report  # ... but not the body


async def test_size_over_the_advertised_limit_is_refused_before_mail(
    mode: Mode, mta_env: MtaEnvironment, caplog: pytest.LogCaptureFixture
) -> None:
    enable_wire_log(caplog)
    line = b"y" * 998 + b"\r\n"
    big, big_id = build_message(
        "alice@example.test", body=line * (mta_env.message_size_limit // len(line) + 1)
    )
    assert len(big) > mta_env.message_size_limit
    small, small_id = build_message("alice@example.test")
    async with mode.session(smtp_builder(mta_env, "none")) as s:
        assert s.capabilities.max_size == mta_env.message_size_limit
        with pytest.raises(CapabilityError, match="SIZE") as excinfo:
            await s.sendmail(SENDER, ["alice@example.test"], big)
        assert excinfo.value.extension == "SIZE"
        assert not client_lines(caplog, "MAIL")  # refused locally: nothing was sent
        # The session is still in step; a message sent after it arrives, the big one never.
        await s.sendmail(SENDER, ["alice@example.test"], small)
    assert as_sent(mta_env.wait_for_message("alice", small_id)) == small
    assert not any(big_id in stored for stored in mta_env.messages("alice"))


async def test_relaying_without_auth_is_refused(mode: Mode, mta_env: MtaEnvironment) -> None:
    message, _ = build_message(RELAY_RECIPIENT)
    async with mode.session(smtp_builder(mta_env)) as s:
        with pytest.raises(RecipientsRefused) as excinfo:
            await s.sendmail(SENDER, [RELAY_RECIPIENT], message)
        assert (await s.noop()).code == 250  # RSET put the session back in step
    refusal = excinfo.value.refused[RELAY_RECIPIENT]
    assert (refusal.code, refusal.enhanced) == (554, EnhancedStatus(5, 7, 1))


@pytest.mark.parametrize("chunking", [False, True], ids=["data", "bdat"])
async def test_message_refused_at_end_of_data(
    mode: Mode, mta_env: MtaEnvironment, chunking: bool
) -> None:
    """Exactly ``SIZE`` octets pass the local check; Postfix (which counts its own Received
    header and queue records) refuses at the end of the data with 552 5.3.4."""
    line = b"x" * 78 + b"\r\n"
    limit = mta_env.message_size_limit
    big, big_id = build_message("alice@example.test", body=line * ((limit - 300) // len(line)))
    big += b"z" * (limit - len(big) - 2) + b"\r\n"
    assert len(big) == limit
    small, small_id = build_message("alice@example.test")
    builder = smtp_builder(mta_env, "none").with_chunking(chunking)
    async with mode.session(builder) as s:
        with pytest.raises(DataRefused) as excinfo:
            await s.sendmail(SENDER, ["alice@example.test"], big)
        # The session was reset (RSET) and goes on.
        assert (await s.sendmail(SENDER, ["alice@example.test"], small)).ok
    exc = excinfo.value
    assert (exc.smtp_code, exc.enhanced_status) == (552, EnhancedStatus(5, 3, 4))
    assert exc.command == ("BDAT" if chunking else "DATA")
    assert as_sent(mta_env.wait_for_message("alice", small_id)) == small
    assert not any(big_id in stored for stored in mta_env.messages("alice"))


async def test_send_message_takes_the_envelope_from_the_headers(
    mode: Mode, mta_env: MtaEnvironment
) -> None:
    message = email.message.EmailMessage()
    message["From"] = "Jösé <sender@client.test>"
    message["To"] = "Alice <alice@example.test>, bob@example.test"
    message["Bcc"] = "carol@example.test"
    message["Subject"] = "Grüße"
    message["Message-ID"] = message_id = f"<{os.urandom(8).hex()}@client.test>"
    message.set_content("café ✓\n.a line starting with a dot\n")
    async with mode.session(smtp_builder(mta_env)) as s:
        result = await s.send_message(message)
    assert result.sender == "sender@client.test"
    assert result.accepted == ("alice@example.test", "bob@example.test", "carol@example.test")
    del message["Bcc"]  # never transmitted (RFC 5322 §3.6.3)
    expected = message.as_bytes(policy=email.policy.SMTP)
    for user in ("alice", "bob", "carol"):
        stored = mta_env.wait_for_message(user, message_id.encode())
        assert as_sent(stored) == expected
        assert b"carol@example.test" not in strip_trace_headers(stored)


async def test_one_shot_send_and_client_sendmail(mode: Mode, mta_env: MtaEnvironment) -> None:
    first, first_id = build_message("bob@example.test")
    result = await mode.send(
        first, builder=smtp_builder(mta_env), sender=SENDER, recipients="bob@example.test"
    )
    assert result.accepted == ("bob@example.test",)
    second, second_id = build_message("bob@example.test")
    client = mode.build(smtp_builder(mta_env, "implicit"))
    assert (await mode.call(client.sendmail, SENDER, ["bob@example.test"], second)).ok
    assert as_sent(mta_env.wait_for_message("bob", first_id)) == first
    assert as_sent(mta_env.wait_for_message("bob", second_id)) == second


async def test_vrfy_and_other_commands(mode: Mode, mta_env: MtaEnvironment) -> None:
    async with mode.session(smtp_builder(mta_env)) as s:
        reply = await s.vrfy("alice@example.test")
        assert (reply.code, reply.enhanced) == (252, EnhancedStatus(2, 0, 0))
        with pytest.raises(CommandRefused) as excinfo:
            await s.vrfy("nobody@example.test")
        assert (excinfo.value.smtp_code, excinfo.value.command) == (550, "VRFY")
        assert (await s.rset()).code == 250
        assert (await s.execute("NOOP")).code == 250
        caps = await s.ehlo()
        assert caps.chunking and caps.auth_mechanisms  # still the post-TLS capabilities


@pytest.mark.parametrize("chunking", [False, True], ids=["data", "bdat"])
async def test_large_message_and_bare_line_feeds(
    mode: Mode, mta_env: MtaEnvironment, chunking: bool
) -> None:
    """Half a MiB with LF-only line ends: canonicalised to CRLF (RFC 5321 §2.3.8) and dot-stuffed
    (DATA) or split at odd offsets, CRLFs included (BDAT chunks of 8191), yet stored intact."""
    body = (TRICKY_BODY.replace(b"\r\n", b"\n") + b"x" * 900 + b"\n") * 520
    head, message_id = build_message("carol@example.test")
    message = head.replace(b"\r\n", b"\n") + body
    builder = smtp_builder(mta_env).with_chunking(chunking, chunk_size=8191)
    async with mode.session(builder) as s:
        result = await s.sendmail(SENDER, ["carol@example.test"], message)
    expected = message.replace(b"\n", b"\r\n")
    assert result.size == len(expected) > 500_000
    assert as_sent(mta_env.wait_for_message("carol", message_id)) == expected
