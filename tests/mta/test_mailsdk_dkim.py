"""DKIM through real Postfix and Dovecot: what lands in the Maildir verifies with dkimpy.

Layer: tests (marker ``mta``), both modes. The messages are signed by mailsdk (RSA-SHA256 and
Ed25519-SHA256 at once), submitted to Postfix (DATA and BDAT) or handed to Dovecot's LMTP,
read back from the Maildir and verified with dkimpy against a stub DNS answer. The delivery
headers the servers add on top (Return-Path, Delivered-To, Received) are outside the
signature, as DKIM intends; a changed body fails.
"""

from __future__ import annotations

import pytest
from tests._support.modes import Mode
from tests._support.mta import MtaEnvironment, build_message
from tests.dkim.dkim_support import DOMAIN, ed25519_key, rsa_key, verify_all
from tests.mta.mailsdk_support import SENDER, TRICKY_BODY, lmtp_builder, smtp_builder

from mailsdk import ClientBuilder

pytestmark = pytest.mark.mta


def signed(builder: ClientBuilder, canonicalization: str) -> ClientBuilder:
    return builder.with_dkim(DOMAIN, "rsa", rsa_key(), canonicalization=canonicalization).with_dkim(
        DOMAIN, "ed", ed25519_key(), canonicalization=canonicalization
    )


def crlf(stored: bytes) -> bytes:
    """The stored message (LF line ends, delivery headers kept) with CRLF line ends."""
    return stored.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@pytest.mark.parametrize("canonicalization", ["relaxed/relaxed", "simple/simple"])
@pytest.mark.parametrize("chunking", [False, True], ids=["data", "bdat"])
async def test_signed_through_postfix_verifies_from_the_maildir(
    mode: Mode, mta_env: MtaEnvironment, canonicalization: str, chunking: bool
) -> None:
    message, message_id = build_message(
        "alice@example.test",
        sender="Signer <signer@example.com>",
        subject="signed Grüße",
        body=TRICKY_BODY,
    )
    builder = signed(smtp_builder(mta_env).with_chunking(chunking), canonicalization)
    async with mode.session(builder) as s:
        await s.sendmail(SENDER, ["alice@example.test"], message)
    stored = crlf(mta_env.wait_for_message("alice", message_id))
    assert stored.startswith(b"Return-Path: ")  # delivery headers on top of the signatures
    assert stored.count(b"DKIM-Signature:") == 2
    assert verify_all(stored) == [True, True]
    tampered = stored.replace(b"Trailing spaces", b"Trailing spades", 1)
    assert tampered != stored
    assert verify_all(tampered) == [False, False]


@pytest.mark.parametrize("transport", ["tcp", "unix"])
async def test_signed_through_dovecot_lmtp_verifies(
    mode: Mode, mta_env: MtaEnvironment, transport: str
) -> None:
    message, message_id = build_message(
        "bob@example.test", sender="signer@example.com", body=b"LMTP body  \r\n\r\n"
    )
    async with mode.session(signed(lmtp_builder(mta_env, transport), "relaxed/relaxed")) as s:
        await s.sendmail(SENDER, ["bob@example.test"], message)
    stored = crlf(mta_env.wait_for_message("bob", message_id))
    assert verify_all(stored) == [True, True]
    assert verify_all(stored.replace(b"Subject: test", b"Subject: tost", 1)) == [False, False]
