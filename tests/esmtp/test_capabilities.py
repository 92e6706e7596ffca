"""parse_ehlo / Capabilities on realistic and hostile EHLO replies."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailsdk.errors import CapabilityError, LocalProtocolError, MailError
from mailsdk.esmtp import (
    Capabilities,
    ExtensionRegistry,
    FlagExtension,
    is_ehlo_keyword,
    parse_ehlo,
)
from mailsdk.protocol.reply import Reply

from .conftest import GMAIL_EHLO, OFFICE365_EHLO, POSTFIX_EHLO


def ehlo(*lines: bytes) -> Reply:
    return Reply(250, (b"mx.example.com Hello [192.0.2.1]", *lines))


def test_gmail_like() -> None:
    caps = parse_ehlo(GMAIL_EHLO)
    assert caps.server_name == "smtp.gmail.com"
    assert caps.greeting == "at your service, [203.0.113.5]"
    assert caps.esmtp is True
    assert caps.max_size == 35882577
    assert caps.auth_mechanisms == (
        "LOGIN",
        "PLAIN",
        "XOAUTH2",
        "PLAIN-CLIENTTOKEN",
        "OAUTHBEARER",
        "XOAUTH",
    )
    assert caps.eightbitmime
    assert caps.pipelining
    assert caps.chunking
    assert caps.smtputf8
    assert caps.enhanced_status_codes
    assert not caps.starttls
    assert not caps.dsn
    assert not caps.binarymime
    assert not caps.requiretls
    assert caps.keywords == (
        "SIZE",
        "8BITMIME",
        "AUTH",
        "ENHANCEDSTATUSCODES",
        "PIPELINING",
        "CHUNKING",
        "SMTPUTF8",
    )
    assert caps.ignored_lines == ()
    assert caps.unparsed == ()


def test_office365_like() -> None:
    caps = parse_ehlo(OFFICE365_EHLO)
    assert caps.server_name == "AM0PR10CA0001.outlook.office365.com"
    assert caps.max_size == 157286400
    assert caps.auth_mechanisms == ("LOGIN", "XOAUTH2")
    assert caps.dsn
    assert caps.binarymime
    assert caps.chunking
    assert caps.eightbitmime
    assert caps.get("DSN") is True
    assert caps.get("SIZE") == 157286400


def test_postfix_like_with_legacy_auth_and_unknown_keywords() -> None:
    caps = parse_ehlo(POSTFIX_EHLO)
    assert caps.server_name == "mail.example.org"
    assert caps.greeting == ""
    assert caps.starttls
    # "AUTH PLAIN LOGIN" + "AUTH=PLAIN LOGIN": merged, de-duplicated, order kept
    assert caps.auth_mechanisms == ("PLAIN", "LOGIN")
    assert caps.keywords.count("AUTH") == 1
    # unknown keywords stay reachable
    assert caps.has("VRFY")
    assert caps.has("etrn")
    assert caps.raw["VRFY"] == ""
    assert caps.get("ETRN") == ""
    assert caps.max_size == 10240000


def test_legacy_auth_only_and_mixed_case() -> None:
    caps = parse_ehlo(ehlo(b"auth=login cram-md5", b"Auth PLAIN LOGIN", b"AUTH=XOAUTH2"))
    assert caps.auth_mechanisms == ("LOGIN", "CRAM-MD5", "PLAIN", "XOAUTH2")
    assert caps.raw["AUTH"] == "login cram-md5 PLAIN LOGIN XOAUTH2"
    assert caps.keywords == ("AUTH",)


def test_bare_legacy_auth_equals() -> None:
    caps = parse_ehlo(ehlo(b"AUTH="))
    assert caps.has("AUTH")
    assert caps.auth_mechanisms == ()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"SIZE", None),
        (b"SIZE 0", None),
        (b"SIZE garbage", None),
        (b"SIZE 52428800", 52428800),
        (b"size 1000", 1000),
    ],
)
def test_size_variants_keep_size_advertised(line: bytes, expected: int | None) -> None:
    caps = parse_ehlo(ehlo(line))
    assert caps.has("SIZE")
    assert caps.max_size == expected


def test_unknown_keyword_kept_raw() -> None:
    caps = parse_ehlo(ehlo(b"X-FOO bar  baz", b"XCLIENT NAME ADDR", b"X-FOO qux"))
    assert caps.raw["X-FOO"] == "bar  baz qux"
    assert caps.params("X-FOO") == ("bar", "baz", "qux")
    assert caps.params("x-foo") == ("bar", "baz", "qux")
    assert caps.get("XCLIENT") == "NAME ADDR"
    assert caps.params("NOT-THERE") == ()
    assert caps.get("NOT-THERE") is None
    assert caps.get("NOT-THERE", "dflt") == "dflt"
    assert "X-FOO" in caps
    assert "x-foo" in caps
    assert "NOPE" not in caps
    assert caps.keywords == ("X-FOO", "XCLIENT")


def test_malformed_lines_are_ignored_not_fatal() -> None:
    bad = [b"", b"   ", b"\xff\xfeBAD", b"X_UNDERSCORE", b"-DASH", b"caf\xc3\xa9", b"=X"]
    caps = parse_ehlo(ehlo(*bad, b"  PIPELINING  ", b"\tSIZE 1000\r", b"8BITMIME"))
    assert caps.ignored_lines == tuple(bad)
    assert caps.keywords == ("PIPELINING", "SIZE", "8BITMIME")
    assert caps.pipelining
    assert caps.eightbitmime
    assert caps.max_size == 1000


def test_non_ascii_params_are_decoded_with_replacement() -> None:
    caps = parse_ehlo(ehlo(b"X-ODD caf\xe9 \xff"))
    assert caps.has("X-ODD")
    assert "\ufffd" in caps.raw["X-ODD"]


@pytest.mark.parametrize("code", [334, 354, 421, 450, 500, 502, 550, 554])
def test_non_positive_reply_is_a_local_protocol_error(code: int) -> None:
    with pytest.raises(LocalProtocolError, match=str(code)):
        parse_ehlo(Reply(code, (b"mx.example.com",)))
    with pytest.raises(LocalProtocolError):
        Capabilities.from_helo(Reply(code, (b"mx.example.com",)))


def test_empty_reply_and_single_line() -> None:
    empty = parse_ehlo(Reply(250, ()))
    assert empty.server_name == ""
    assert empty.keywords == ()
    single = parse_ehlo(Reply(250, (b"mx.example.com",)))
    assert single.server_name == "mx.example.com"
    assert single.greeting == ""
    assert single.max_size is None
    assert single.auth_mechanisms == ()


def test_from_helo() -> None:
    caps = Capabilities.from_helo(Reply(250, (b"old.example.com pleased to meet you",)))
    assert caps.esmtp is False
    assert caps.server_name == "old.example.com"
    assert caps.greeting == "pleased to meet you"
    assert caps.keywords == ()
    assert not caps.pipelining
    assert caps.max_size is None
    assert next(e.keyword for e in caps.extensions) == "SIZE"


def test_capabilities_are_immutable_and_comparable() -> None:
    caps = parse_ehlo(GMAIL_EHLO)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        caps.server_name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        caps.raw["NEW"] = "x"  # type: ignore[index]
    assert parse_ehlo(GMAIL_EHLO) == caps
    assert parse_ehlo(OFFICE365_EHLO) != caps
    assert hash(parse_ehlo(GMAIL_EHLO)) == hash(caps)


def test_require() -> None:
    caps = parse_ehlo(GMAIL_EHLO)
    caps.require("pipelining")
    with pytest.raises(CapabilityError) as info:
        caps.require("starttls", purpose="STARTTLS policy 'required'")
    assert info.value.extension == "STARTTLS"
    assert "smtp.gmail.com" in str(info.value)
    assert "STARTTLS policy 'required'" in str(info.value)


class _Strict:
    """A third-party parser that rejects anything but digits."""

    keyword = "X-LIMIT"

    def parse(self, params: str) -> object:
        return int(params)  # ValueError on garbage


class _Buggy:
    keyword = "X-BUGGY"

    def parse(self, params: str) -> object:
        raise RuntimeError("bug in the extension")


def test_extension_value_error_marks_keyword_unparsed() -> None:
    registry = ExtensionRegistry.default()
    registry.register(_Strict())
    good = parse_ehlo(ehlo(b"X-LIMIT 5"), registry)
    assert good.get("X-LIMIT") == 5
    assert good.get_as("X-LIMIT", int) == 5
    assert good.get_as("X-LIMIT", str) is None
    bad = parse_ehlo(ehlo(b"X-LIMIT lots"), registry)
    assert bad.has("X-LIMIT")
    assert bad.raw["X-LIMIT"] == "lots"
    assert bad.get("X-LIMIT") is None
    assert bad.unparsed == ("X-LIMIT",)


def test_extension_bug_propagates() -> None:
    registry = ExtensionRegistry.default()
    registry.register(_Buggy())
    with pytest.raises(RuntimeError, match="bug in the extension"):
        parse_ehlo(ehlo(b"X-BUGGY"), registry)


def test_capabilities_snapshot_the_registry() -> None:
    registry = ExtensionRegistry.default()
    caps = parse_ehlo(ehlo(b"X-NEW"), registry)
    registry.register(FlagExtension("X-NEW"))
    assert "X-NEW" not in [e.keyword for e in caps.extensions]
    assert caps.get("X-NEW") == ""  # parsed without the extension
    assert parse_ehlo(ehlo(b"X-NEW"), registry).get("X-NEW") is True


def test_typed_accessors_ignore_foreign_values() -> None:
    class WeirdSize:
        keyword = "SIZE"

        def parse(self, params: str) -> object:
            return "not an int"

    class WeirdAuth:
        keyword = "AUTH"

        def parse(self, params: str) -> object:
            return [params]

    registry = ExtensionRegistry.default()
    registry.register(WeirdSize(), replace=True)
    registry.register(WeirdAuth(), replace=True)
    caps = parse_ehlo(ehlo(b"SIZE 100", b"AUTH PLAIN"), registry)
    assert caps.max_size is None
    assert caps.auth_mechanisms == ()


ehlo_lines = st.lists(
    st.one_of(
        st.binary(max_size=60),
        st.sampled_from(
            [b"SIZE", b"SIZE 0", b"AUTH=", b"AUTH", b" AUTH= LOGIN", b"8BITMIME", b"\x00", b"-"]
        ),
        st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")),
    ),
    max_size=20,
)


@given(ehlo_lines)
def test_parse_ehlo_never_raises_on_arbitrary_lines(lines: list[bytes]) -> None:
    caps = parse_ehlo(Reply(250, tuple(lines)))
    assert isinstance(caps.server_name, str)
    for keyword in caps.keywords:
        assert is_ehlo_keyword(keyword)
        assert keyword == keyword.upper()
        assert caps.has(keyword)
    assert set(caps.raw) == set(caps.keywords)
    assert len(caps.ignored_lines) + len(caps.keywords) <= max(len(lines) - 1, 0)
    assert caps.max_size is None or caps.max_size > 0
    assert all(m == m.upper() for m in caps.auth_mechanisms)
    assert len(set(caps.auth_mechanisms)) == len(caps.auth_mechanisms)


@given(st.integers(min_value=0, max_value=999), ehlo_lines)
def test_parse_ehlo_only_raises_mailsdk_errors(code: int, lines: list[bytes]) -> None:
    reply = Reply(code, tuple(lines))
    if 200 <= code < 300:
        assert parse_ehlo(reply).esmtp
    else:
        with pytest.raises(MailError) as info:
            parse_ehlo(reply)
        assert type(info.value) is LocalProtocolError


def test_parse_ehlo_accepts_the_raw_reply_bytes() -> None:
    from mailsdk.esmtp import parse_ehlo

    caps = parse_ehlo(b"250-mx.example.com hi\r\n250-SIZE 1000\r\n250 PIPELINING\r\n")
    assert caps.server_name == "mx.example.com"
    assert caps.max_size == 1000 and caps.pipelining
    assert parse_ehlo(b"250-mx\n250 8BITMIME").eightbitmime  # no final line end, bare LF


@pytest.mark.parametrize("bad", ["250 mx", None, 250, ["250 mx"]], ids=repr)
def test_parse_ehlo_refuses_other_types_with_a_typed_error(bad: object) -> None:
    from mailsdk.errors import InvalidInputError
    from mailsdk.esmtp import parse_ehlo

    with pytest.raises(InvalidInputError, match="parse_ehlo needs a Reply"):
        parse_ehlo(bad)  # type: ignore[arg-type]


def test_parse_ehlo_refuses_bytes_that_are_not_one_reply() -> None:
    from mailsdk.errors import InvalidInputError, RemoteProtocolError
    from mailsdk.esmtp import parse_ehlo

    with pytest.raises(InvalidInputError, match="exactly one reply"):
        parse_ehlo(b"250 one\r\n250 two\r\n")
    with pytest.raises(RemoteProtocolError):
        parse_ehlo(b"garbage\r\n")
