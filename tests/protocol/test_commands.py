"""Commands: exact wire bytes (h11 SIMPLE_CASES style) and the injection guard."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mailsdk.errors import InvalidInputError
from mailsdk.protocol import (
    Auth,
    AuthResponse,
    Bdat,
    Command,
    Data,
    Ehlo,
    EndOfData,
    Expn,
    Helo,
    Help,
    Lhlo,
    MailFrom,
    Noop,
    Quit,
    Raw,
    RcptTo,
    Rset,
    StartTls,
    Vrfy,
)

SIMPLE_CASES: list[tuple[Command, bytes, str]] = [
    (Ehlo("client.example"), b"EHLO client.example\r\n", "EHLO"),
    (Ehlo("[192.0.2.1]"), b"EHLO [192.0.2.1]\r\n", "EHLO"),
    (Helo("client.example"), b"HELO client.example\r\n", "HELO"),
    (Lhlo("client.example"), b"LHLO client.example\r\n", "LHLO"),
    (MailFrom("a@example.com"), b"MAIL FROM:<a@example.com>\r\n", "MAIL"),
    (MailFrom(""), b"MAIL FROM:<>\r\n", "MAIL"),
    (MailFrom("<>"), b"MAIL FROM:<>\r\n", "MAIL"),
    (MailFrom("<a@example.com>"), b"MAIL FROM:<a@example.com>\r\n", "MAIL"),
    (MailFrom("Alice <a@example.com>"), b"MAIL FROM:<a@example.com>\r\n", "MAIL"),
    (
        MailFrom("a@example.com", ("SIZE=1000", "BODY=8BITMIME")),
        b"MAIL FROM:<a@example.com> SIZE=1000 BODY=8BITMIME\r\n",
        "MAIL",
    ),
    (
        MailFrom("j\u00f6rg@b\u00fccher.example", ("SMTPUTF8",)),
        "MAIL FROM:<j\u00f6rg@b\u00fccher.example> SMTPUTF8\r\n".encode(),
        "MAIL",
    ),
    (RcptTo("b@example.org"), b"RCPT TO:<b@example.org>\r\n", "RCPT"),
    (RcptTo("postmaster"), b"RCPT TO:<postmaster>\r\n", "RCPT"),
    (RcptTo("<Postmaster>"), b"RCPT TO:<Postmaster>\r\n", "RCPT"),
    (RcptTo('"john smith"@example.org'), b'RCPT TO:<"john smith"@example.org>\r\n', "RCPT"),
    (RcptTo("u@[IPv6:2001:db8::1]"), b"RCPT TO:<u@[IPv6:2001:db8::1]>\r\n", "RCPT"),
    (
        RcptTo("b@example.org", ("NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;b@example.org")),
        b"RCPT TO:<b@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.org\r\n",
        "RCPT",
    ),
    (Data(), b"DATA\r\n", "DATA"),
    (Bdat(0, True), b"BDAT 0 LAST\r\n", "BDAT"),
    (Bdat(1024), b"BDAT 1024\r\n", "BDAT"),
    (Rset(), b"RSET\r\n", "RSET"),
    (Noop(), b"NOOP\r\n", "NOOP"),
    (Noop("ping"), b"NOOP ping\r\n", "NOOP"),
    (Vrfy("alice"), b"VRFY alice\r\n", "VRFY"),
    (Expn("staff"), b"EXPN staff\r\n", "EXPN"),
    (Help(), b"HELP\r\n", "HELP"),
    (Help("MAIL"), b"HELP MAIL\r\n", "HELP"),
    (Quit(), b"QUIT\r\n", "QUIT"),
    (StartTls(), b"STARTTLS\r\n", "STARTTLS"),
    (Auth("PLAIN"), b"AUTH PLAIN\r\n", "AUTH"),
    (Auth("plain", b"AGFsaWNlAHNlY3JldA=="), b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", "AUTH"),
    (Auth("EXTERNAL", b"="), b"AUTH EXTERNAL =\r\n", "AUTH"),
    (AuthResponse(b"c2VjcmV0"), b"c2VjcmV0\r\n", "AUTH"),
    (AuthResponse(b"*"), b"*\r\n", "AUTH"),
    (Raw("XCLIENT NAME=x"), b"XCLIENT NAME=x\r\n", "XCLIENT"),
    (EndOfData(), b".\r\n", "DATA-END"),
]


@pytest.mark.parametrize(("command", "wire", "verb"), SIMPLE_CASES)
def test_wire_bytes(command: Command, wire: bytes, verb: str) -> None:
    assert command.to_bytes() == wire
    assert command.verb == verb


REDACTED_CASES: list[tuple[Command, bytes]] = [
    (Auth("PLAIN", b"AGFsaWNlAHNlY3JldA=="), b"AUTH PLAIN ***\r\n"),
    (Auth("LOGIN"), b"AUTH LOGIN\r\n"),
    (AuthResponse(b"c2VjcmV0"), b"***\r\n"),
    (Raw("AUTH PLAIN AGFsaWNlAHNlY3JldA=="), b"AUTH PLAIN ***\r\n"),
    (Raw("c2VjcmV0"), b"***\r\n"),
    (Raw("NOOP"), b"NOOP\r\n"),
    (MailFrom("a@b.example"), b"MAIL FROM:<a@b.example>\r\n"),
]


@pytest.mark.parametrize(("command", "redacted"), REDACTED_CASES)
def test_redacted(command: Command, redacted: bytes) -> None:
    assert command.redacted() == redacted


@pytest.mark.parametrize(
    "command", [Auth("PLAIN", b"c2VjcmV0"), AuthResponse(b"c2VjcmV0"), Raw("AUTH PLAIN c2VjcmV0")]
)
def test_repr_hides_auth_payload(command: Command) -> None:
    assert "c2VjcmV0" not in repr(command)


INJECTIONS = ["\r", "\n", "\r\n", "\x00", "\x1b", "\t", "\x7f"]


@pytest.mark.parametrize("bad", INJECTIONS)
@pytest.mark.parametrize(
    "build",
    [
        lambda s: Ehlo("host" + s + "x"),
        lambda s: Helo("host" + s),
        lambda s: Lhlo(s + "host"),
        lambda s: MailFrom("a" + s + "@example.com"),
        lambda s: MailFrom("a@example.com", ("SIZE=1" + s,)),
        lambda s: RcptTo("b@exa" + s + "mple.com"),
        lambda s: RcptTo("b@example.com", ("NOTIFY=NEVER" + s + "RCPT TO:<evil@x>",)),
        lambda s: Noop("x" + s),
        lambda s: Vrfy("alice" + s),
        Expn,
        lambda s: Help("x" + s + "y"),
        lambda s: Auth("PLAIN", b"abc" + s.encode()),
        lambda s: Auth("PL" + s + "AIN"),
        lambda s: AuthResponse(b"abc" + s.encode() + b"def"),
        lambda s: Raw("NOOP" + s + "QUIT"),
    ],
)
def test_control_characters_refused(build: Callable[[str], object], bad: str) -> None:
    with pytest.raises(InvalidInputError):
        build(bad)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Ehlo(""),
        lambda: Ehlo("two words"),
        lambda: MailFrom("no-at-sign"),
        lambda: MailFrom("a b@example.com"),
        lambda: MailFrom("a@example.com", ("SIZE 1",)),
        lambda: MailFrom("a@example.com", ("",)),
        lambda: RcptTo(""),
        lambda: RcptTo("<>"),
        lambda: RcptTo("@example.com"),
        lambda: RcptTo("user@"),
        lambda: RcptTo("a@b@c"),
        lambda: RcptTo("user@exa mple.com"),
        lambda: RcptTo("<user@example.com"),
        lambda: RcptTo(".user@example.com"),
        lambda: Bdat(-1),
        lambda: Auth("PLAIN", b"not base64!"),
        lambda: Auth("A" * 21),
        lambda: Raw("   "),
    ],
)
def test_malformed_arguments_refused(build: Callable[[], object]) -> None:
    with pytest.raises(InvalidInputError):
        build()


def test_invalid_input_is_value_error() -> None:
    with pytest.raises(ValueError, match="control character"):
        MailFrom("a\r\n@example.com")


def test_needs_smtputf8() -> None:
    assert MailFrom("j\u00f6rg@example.com").needs_smtputf8
    assert not MailFrom("jorg@example.com").needs_smtputf8
    assert RcptTo("a@b\u00fccher.example").needs_smtputf8


def test_commands_are_frozen_values() -> None:
    assert MailFrom("a@b.example") == MailFrom("a@b.example")
    assert hash(RcptTo("a@b.example")) == hash(RcptTo("a@b.example"))
    with pytest.raises(AttributeError):
        MailFrom("a@b.example").sender = "x@y.example"  # type: ignore[misc]
