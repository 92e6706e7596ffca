"""Fixtures for the esmtp tests: realistic EHLO replies and capabilities built from them."""

from __future__ import annotations

import pytest

from mailsdk.esmtp import Capabilities, parse_ehlo
from mailsdk.protocol.reply import Reply

GMAIL_EHLO = Reply(
    250,
    (
        b"smtp.gmail.com at your service, [203.0.113.5]",
        b"SIZE 35882577",
        b"8BITMIME",
        b"AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH",
        b"ENHANCEDSTATUSCODES",
        b"PIPELINING",
        b"CHUNKING",
        b"SMTPUTF8",
    ),
)

OFFICE365_EHLO = Reply(
    250,
    (
        b"AM0PR10CA0001.outlook.office365.com Hello [203.0.113.5]",
        b"SIZE 157286400",
        b"PIPELINING",
        b"DSN",
        b"ENHANCEDSTATUSCODES",
        b"AUTH LOGIN XOAUTH2",
        b"8BITMIME",
        b"BINARYMIME",
        b"CHUNKING",
        b"SMTPUTF8",
    ),
)

POSTFIX_EHLO = Reply(
    250,
    (
        b"mail.example.org",
        b"PIPELINING",
        b"SIZE 10240000",
        b"VRFY",
        b"ETRN",
        b"STARTTLS",
        b"AUTH PLAIN LOGIN",
        b"AUTH=PLAIN LOGIN",
        b"ENHANCEDSTATUSCODES",
        b"8BITMIME",
        b"DSN",
        b"SMTPUTF8",
        b"CHUNKING",
    ),
)

EVERYTHING_EHLO = Reply(
    250,
    (
        b"mx.example.com Hello",
        b"SIZE 1000",
        b"8BITMIME",
        b"BINARYMIME",
        b"CHUNKING",
        b"SMTPUTF8",
        b"DSN",
        b"REQUIRETLS",
        b"PIPELINING",
    ),
)


@pytest.fixture
def full_caps() -> Capabilities:
    """A server advertising every extension the parameter builders know (SIZE 1000)."""
    return parse_ehlo(EVERYTHING_EHLO)


@pytest.fixture
def bare_caps() -> Capabilities:
    """An ESMTP server advertising only PIPELINING."""
    return parse_ehlo(Reply(250, (b"bare.example.com", b"PIPELINING")))


@pytest.fixture
def helo_caps() -> Capabilities:
    """A server that only answered HELO."""
    return Capabilities.from_helo(Reply(250, (b"old.example.com",)))
