"""A consumer of the public API, type-checked with ``mypy --strict`` (never run, never collected).

This is aiosmtplib's ``tests/type_usage.py`` idea: every public entry point is called with every
option as an application would, and ``typing.assert_type`` pins the inferred types, so a change
that degrades the public typing (an ``Any`` leaking out, a wrong return type) fails
``tests/test_typing_usage.py``.
"""

from __future__ import annotations

import asyncio
import ssl
from email.message import EmailMessage
from typing import assert_type

import mailsdk
import mailsdk.batch
from mailsdk import (
    AsyncClient,
    AsyncLMTPClient,
    AsyncSession,
    AuthSettings,
    Capabilities,
    Client,
    ClientBuilder,
    ClientConfig,
    EnhancedStatus,
    LMTPClient,
    MailError,
    MailOptions,
    RcptOptions,
    RecipientsRefused,
    Reply,
    ReplyError,
    Secret,
    SenderRefused,
    SendResult,
    Session,
    Timeouts,
    TlsMode,
    TlsSettings,
)
from mailsdk.auth.tokens import AccessToken, CachingTokenProvider, StaticTokenProvider
from mailsdk.dkim import DkimKey, DkimSigner, sign_bytes
from mailsdk.flows import TlsInfo
from mailsdk.protocol.reply_parser import ReplyLimits
from mailsdk.testing import MailServer, ReceivedMessage, serve


def message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "me@example.org"
    msg["To"] = "you@example.com"
    msg.set_content("hi")
    return msg


def builders() -> list[ClientBuilder]:
    tls = TlsSettings(ca_file="/etc/ssl/ca.pem", minimum_version=ssl.TLSVersion.TLSv1_2)
    provider = CachingTokenProvider(StaticTokenProvider("token"), refresh_ahead=60.0)
    full = (
        ClientBuilder.smtp("mail.example.com", 587)
        .with_tls(TlsMode.STARTTLS, settings=tls, server_hostname="mail.example.com")
        .with_tls("starttls")
        .with_tls_settings(tls)
        .with_credentials("me", Secret("pw"), mechanisms=["SCRAM-SHA-256", "PLAIN"], authzid=None)
        .with_timeouts(
            Timeouts(connect=5.0, greeting=30.0, command=30.0, tls=10.0, data=60.0, quit=2.0)
        )
        .with_timeouts(10)
        .with_limits(ReplyLimits(max_line_length=4096, max_lines=64, max_reply_bytes=32768))
        .with_local_hostname("client.example.org")
        .with_source_address("192.0.2.10", 0)
        .with_pipelining(True)
        .with_chunking(None, chunk_size=64 * 1024)
        .with_8bit_policy(require_8bitmime=False)
        .with_mail_options(MailOptions(ret="HDRS", envid="abc", requiretls=False))
        .with_rcpt_options(RcptOptions(notify=("FAILURE", "DELAY"), orcpt="rfc822;you@example.com"))
        .with_entry_point_plugins(False)
        .with_opentelemetry(record_addresses=False)
    )
    return [
        full,
        ClientBuilder.smtp("[::1]:2525").with_tls("none"),
        ClientBuilder.unix("/run/dovecot/lmtp"),
        ClientBuilder.office365("me@example.com", token_provider=provider),
        ClientBuilder.gmail("me@gmail.com", password="app-password"),
        ClientBuilder.smtp("mail.example.com").with_token_provider(
            "me", provider, mechanisms=["XOAUTH2"]
        ),
    ]


def use_result(result: SendResult) -> None:
    assert_type(result.accepted, tuple[str, ...])
    assert_type(result.sender, str)
    assert_type(result.size, int)
    assert_type(result.ok, bool)
    assert_type(result.queue_id, str | None)
    assert_type(result.lmtp, bool)
    reply = result.reply
    assert_type(reply, Reply)
    assert_type(reply.code, int)
    assert_type(reply.text, str)
    assert_type(reply.message, bytes)
    assert_type(reply.enhanced, EnhancedStatus | None)
    for rcpt, refusal in result.refused.items():
        assert_type(rcpt, str)
        assert_type(refusal.is_permanent, bool)
    for rcpt, reply in result.recipient_replies.items():
        print(rcpt, reply.code)


def sync_usage() -> None:
    builder = builders()[1]
    config = builder.config()
    assert_type(config, ClientConfig)
    client = builder.build()
    assert_type(client, Client)
    assert_type(Client(config), Client)
    assert_type(LMTPClient(config), LMTPClient)
    with client.connect() as session:
        assert_type(session, Session)
        caps = session.capabilities
        assert_type(caps, Capabilities)
        assert_type(caps.max_size, int | None)
        assert_type(caps.auth_mechanisms, tuple[str, ...])
        assert_type(session.tls, TlsInfo | None)
        assert_type(session.mechanism, str | None)
        assert_type(session.closed, bool)
        assert_type(session.ehlo(), Capabilities)
        assert_type(session.starttls(), TlsInfo)
        assert_type(session.login("me", "pw", mechanisms=["PLAIN"], allow_plaintext=False), str)
        assert_type(session.authenticate(AuthSettings(username="me", password=Secret("pw"))), str)
        for r in (
            session.noop(),
            session.rset(),
            session.vrfy("me"),
            session.expn("list"),
            session.help(),
            session.help("MAIL"),
            session.execute("XCLIENT NAME=x"),
        ):
            assert_type(r, Reply)
        try:
            result = session.send_message(
                message(),
                sender="bounce@example.org",
                recipients=["you@example.com"],
                mail_options=MailOptions(body="8BITMIME"),
                rcpt_options=RcptOptions(notify=("NEVER",)),
            )
            use_result(result)
            use_result(session.sendmail("me@example.org", "you@example.com", b"raw"))
            use_result(session.sendmail("me@example.org", ["you@example.com"], "text"))
        except SenderRefused as exc:
            assert_type(exc.sender, str)
        except RecipientsRefused as exc:
            assert_type(exc.refused, dict[str, Reply])
        except ReplyError as exc:
            assert_type(exc.smtp_code, int)
            assert_type(exc.smtp_error, bytes)
            assert_type(exc.is_transient, bool)
        except MailError as exc:
            print(exc)
        assert_type(session.quit(), Reply)
    session.close()
    use_result(client.send_message(message()))
    use_result(client.sendmail("a@example.org", "b@example.com", b"x"))
    use_result(
        mailsdk.send(
            message(),
            host="mail.example.com",
            port=587,
            username="me",
            password="pw",
            tls="starttls",
            tls_settings=TlsSettings(),
            timeout=30.0,
        )
    )
    use_result(
        mailsdk.send(b"raw", builder=builder, sender="a@example.org", recipients="b@example.com")
    )
    token = StaticTokenProvider("t").get_token(force_refresh=True)
    assert_type(token, AccessToken)


async def async_usage() -> None:
    builder = builders()[2]
    client = builder.build_async()
    assert_type(client, AsyncClient)
    assert_type(AsyncLMTPClient(builder.config()), AsyncLMTPClient)
    async with await client.connect() as session:
        assert_type(session, AsyncSession)
        assert_type(await session.ehlo(), Capabilities)
        assert_type(await session.noop(), Reply)
        assert_type(await session.starttls(), TlsInfo)
        assert_type(await session.login("me", Secret("pw")), str)
        use_result(await session.send_message(message(), mail_options=MailOptions(smtputf8=True)))
        use_result(await session.sendmail("a@example.org", ["b@example.com"], b"x"))
        assert_type(await session.execute("NOOP"), Reply)
        assert_type(await session.quit(), Reply)
    await session.aclose()
    use_result(await client.send_message(message()))
    use_result(await mailsdk.asend(message(), builder=builder))


def pool_usage() -> None:
    from mailsdk.pool import AsyncPool, Pool

    client = builders()[2].build()
    bucket: mailsdk.batch.RateLimiter = mailsdk.batch.TokenBucket(messages_per_second=10)
    with client.pool(max_connections=2) as pool:
        assert_type(pool, Pool)
        use_result(pool.send_message(message()))
        with pool.send_batch(
            [mailsdk.Outgoing(message(), key="k")],
            rate=bucket,
            retry=mailsdk.batch.RetryPolicy(attempts=2),
            ordered=True,
        ) as run:
            for outcome in run:
                assert_type(outcome, mailsdk.SendOutcome)
        assert_type(run.report, mailsdk.batch.BatchReport)
        assert_type(run.report.p95, float | None)

    async def apool() -> None:
        async with builders()[2].build_async().pool() as pool:
            assert_type(pool, AsyncPool)
            use_result(await pool.send_message(message()))
            async for outcome in pool.send_batch([message()]):
                assert_type(outcome.status, mailsdk.DeliveryStatus)

    asyncio.run(apool())


def dkim_url_and_kit_usage() -> None:
    key = DkimKey.load(Secret("-----BEGIN PRIVATE KEY-----..."))
    assert_type(key, DkimKey)
    assert_type(key.dns_record(), str)
    signer = DkimSigner(domain="example.com", selector="s1", key=key, oversign=("From", "To"))
    assert_type(sign_bytes([signer], b"From: a@example.com\r\n\r\nx", timestamp=None), bytes)
    builder = (
        ClientBuilder.from_url("smtp://me@mail.example.com:587?tls=starttls", password=Secret("p"))
        .with_dkim("example.com", "s1", "/etc/dkim/s1.pem", canonicalization="relaxed/simple")
        .with_dkim("example.com", "s2", key)
    )
    assert_type(builder, ClientBuilder)
    with serve(tls="starttls", users={"me": "pw"}, chunking=True) as server:
        assert_type(server, MailServer)
        server.refuse_recipient("nobody@example.com")
        server.transient("MAIL", times=2)
        assert_type(server.client(username="me", password="pw"), Client)
        assert_type(server.async_client(), AsyncClient)
        assert_type(server.client_builder(), ClientBuilder)
        for received in server.messages:
            assert_type(received, ReceivedMessage)
            assert_type(received.data, bytes)
            assert_type(received.message, EmailMessage)
            assert_type(received.rcpt_tos, tuple[str, ...])


if __name__ == "__main__":  # pragma: no cover - type-checked only
    sync_usage()
    asyncio.run(async_usage())
    pool_usage()
