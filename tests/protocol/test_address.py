"""Address validation, path quoting and the SMTPUTF8 decision."""

from __future__ import annotations

import pytest

from mailsdk.errors import InvalidInputError
from mailsdk.protocol import needs_smtputf8, quote_path, split_mailbox, validate_address


@pytest.mark.parametrize(
    ("address", "path"),
    [
        ("a@example.com", "<a@example.com>"),
        ("<a@example.com>", "<a@example.com>"),
        ("  a@example.com  ", "<a@example.com>"),
        ("Alice Liddell <alice@example.com>", "<alice@example.com>"),
        ('"Liddell, Alice" <alice@example.com>', "<alice@example.com>"),
        ("", "<>"),
        ("<>", "<>"),
        ("postmaster", "<postmaster>"),
        ("PostMaster", "<PostMaster>"),
        ('"john smith"@example.com', '<"john smith"@example.com>'),
        ('"a@b"@example.com', '<"a@b"@example.com>'),
        ('"quote\\"d"@example.com', '<"quote\\"d"@example.com>'),
        ("first.last+tag@sub.example.com", "<first.last+tag@sub.example.com>"),
        ("user@[192.0.2.1]", "<user@[192.0.2.1]>"),
        ("<@relay.example:user@example.com>", "<user@example.com>"),
        ("\u7528\u6237@\u4f8b\u5b50.\u5e7f\u544a", "<\u7528\u6237@\u4f8b\u5b50.\u5e7f\u544a>"),
    ],
)
def test_quote_path(address: str, path: str) -> None:
    assert quote_path(address) == path


@pytest.mark.parametrize(
    "address",
    [
        "no-at-sign",
        "two words@example.com",
        "user@two words.example",
        "@example.com",
        "user@",
        "a<b@example.com",
        "user@example.com>",
        "user@exa;mple.com",
        '"unterminated@example.com',
        "user.@example.com",
        "a\r\nRCPT TO:<x@y>@example.com",
        "a@example.com\x00",
        "user@[192.0.2.1",
    ],
)
def test_invalid_addresses(address: str) -> None:
    with pytest.raises(InvalidInputError):
        quote_path(address)


def test_null_path_refused_when_not_allowed() -> None:
    with pytest.raises(InvalidInputError, match="null path"):
        quote_path("<>", allow_null=False)


def test_validate_returns_bare_mailbox() -> None:
    assert validate_address("Bob <bob@example.org>") == "bob@example.org"
    assert validate_address("") == ""


def test_split_mailbox_uses_last_at() -> None:
    assert split_mailbox('"a@b"@example.com') == ('"a@b"', "example.com")


def test_non_str_refused() -> None:
    with pytest.raises(InvalidInputError):
        quote_path(b"a@example.com")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("a@example.com", False),
        ("", False),
        ("j\u00f6rg@example.com", True),
        ("a@b\u00fccher.example", True),
    ],
)
def test_needs_smtputf8(address: str, expected: bool) -> None:
    assert needs_smtputf8(address) is expected
