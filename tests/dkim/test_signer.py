"""DKIM signatures that dkimpy's verifier accepts (RSA and Ed25519 at once), tampering caught,
hostile input refused with typed errors, keys never shown."""

from __future__ import annotations

import re

import pytest
from tests.dkim.dkim_support import DOMAIN, ed25519_key, rsa_key, signers, verify_all

from mailsdk import ConfigurationError, InvalidInputError
from mailsdk.dkim import DEFAULT_HEADERS, DkimKey, DkimSigner, sign_bytes, sign_message

MESSAGE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject:  spaced   out \r\n"
    b"Date: Tue, 01 Dec 2026 21:00:00 +0000\r\n"
    b"Message-ID: <1@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"X-Unsigned: anything\r\n"
    b"\r\n"
    b"Hello  Bob,\r\n\r\n.a dot line\r\nbye \r\n\r\n\r\n"
)
NOW = 1_796_160_000


@pytest.mark.parametrize(
    "canonicalization", ["relaxed/relaxed", "simple/simple", "relaxed/simple", "simple/relaxed"]
)
def test_rsa_and_ed25519_both_verify(canonicalization: str) -> None:
    signed = sign_bytes(signers(canonicalization=canonicalization), MESSAGE, timestamp=NOW)
    assert signed.endswith(MESSAGE.split(b"\r\n\r\n", 1)[1])
    assert verify_all(signed) == [True, True]
    first = signed.split(b"\r\n\r\n", 1)[0].decode()
    assert "a=rsa-sha256" in first
    assert "a=ed25519-sha256" in first
    assert f"c={canonicalization}" in first
    assert f"t={NOW}" in first


def test_default_header_list_and_from_oversigned() -> None:
    signed = sign_bytes(signers()[:1], MESSAGE, timestamp=NOW)
    tags = re.sub(rb"\r\n\s+", b" ", signed.split(b"\r\nFrom:", 1)[0]).decode()
    h = re.search(r"h=([^;]+);", tags)
    assert h is not None
    names = [n.strip() for n in h.group(1).split(":")]
    assert names.count("from") == 2  # one more than present: no From can be added
    assert {"to", "subject", "date", "message-id", "mime-version", "content-type"} <= set(names)
    assert "x-unsigned" not in names
    assert "From" in DEFAULT_HEADERS and "Content-Transfer-Encoding" in DEFAULT_HEADERS


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"Hello  Bob", b"Hello  Rob"),  # the body
        (b"Subject:  spaced", b"Subject:  spaces"),  # a signed header
        (
            b"To: bob@example.org\r\n",
            b"To: bob@example.org\r\nFrom: mallory@evil.test\r\n",
        ),  # added From
    ],
)
def test_tampering_fails_verification(old: bytes, new: bytes) -> None:
    signed = sign_bytes(signers(), MESSAGE, timestamp=NOW)
    assert old in signed
    assert verify_all(signed.replace(old, new, 1)) == [False, False]


def test_unsigned_header_and_relaxed_whitespace_changes_still_verify() -> None:
    signed = sign_bytes(signers(), MESSAGE, timestamp=NOW)
    relayed = signed.replace(b"X-Unsigned: anything", b"X-Unsigned: changed")
    relayed = relayed.replace(b"Subject:  spaced   out ", b"Subject: spaced out")
    assert verify_all(b"Received: from relay\r\n" + relayed) == [True, True]


def test_wrong_public_key_fails() -> None:
    signed = sign_bytes(signers(), MESSAGE, timestamp=NOW)
    records = {
        f"rsa._domainkey.{DOMAIN}.".encode(): DkimKey.generate("rsa-sha256").dns_record().encode(),
        f"ed._domainkey.{DOMAIN}.".encode(): DkimKey.generate("ed25519-sha256")
        .dns_record()
        .encode(),
    }
    assert verify_all(signed, records) == [False, False]


def test_bare_line_ends_are_signed_as_the_wire_carries_them() -> None:
    lf = MESSAGE.replace(b"\r\n", b"\n")
    signed = sign_bytes(signers(), lf, timestamp=NOW)
    assert b"\n" not in signed.replace(b"\r\n", b"")
    assert verify_all(signed) == [True, True]


def test_cr_injected_into_a_header_is_signed_as_the_separate_field_it_becomes() -> None:
    # "Subject: hi\rBcc: x" goes on the wire as two fields (every bare CR becomes CRLF): the
    # signature must cover what the receiver sees, not the caller's single line.
    hostile = MESSAGE.replace(b"Subject:  spaced   out ", b"Subject: hi\rFrom: mallory@evil.test")
    signed = sign_bytes(signers(), hostile, timestamp=NOW)
    assert b"Subject: hi\r\nFrom: mallory@evil.test\r\n" in signed
    head = signed.split(b"\r\n\r\n", 1)[0]
    assert re.search(rb"h=from\s*:\s*from\s*:\s*from", re.sub(rb"\r\n\s+", b" ", head))
    assert verify_all(signed) == [True, True]


@pytest.mark.parametrize(
    ("header", "match"),
    [
        (b" folded: first line\r\nFrom: a@example.com\r\n", "starts with a continuation"),
        (b"From: a@example.com\r\nno colon here\r\n", "line 2 is neither"),
        (b"From: a@example.com\r\nBad Name: x\r\n", "line 2 is neither"),
        (b"From a@example.com Tue Dec  1 2026\r\nFrom: a@example.com\r\n", "line 1"),
        (b"To: b@example.org\r\n", "no From field"),
    ],
)
def test_malformed_headers_are_typed_errors(header: bytes, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        sign_message(signers(), header, [b"body\r\n"], timestamp=NOW)


def test_non_ascii_headers_and_body_verify() -> None:
    message = (
        "From: Jürgen <jürgen@example.com>\r\nTo: 山田 <yamada@example.org>\r\n"
        "Subject: Grüße — 你好\r\n\r\nGrüße aus Köln\r\n"
    ).encode()
    signed = sign_bytes(signers(), message, timestamp=NOW)
    assert verify_all(signed) == [True, True]


def test_empty_body_and_no_body() -> None:
    for message in (b"From: a@example.com\r\n\r\n", b"From: a@example.com\r\n"):
        assert verify_all(sign_bytes(signers(), message, timestamp=NOW)) == [True, True]


def test_timestamp_none_and_expiry() -> None:
    plain = sign_bytes(signers()[:1], MESSAGE, timestamp=None)
    assert b"t=" not in plain.split(b"\r\nFrom:")[0]
    expiring = sign_bytes(
        [DkimSigner(domain=DOMAIN, selector="rsa", key=rsa_key(), expire_after=3600)],
        MESSAGE,
        timestamp=NOW,
    )
    assert f"x={NOW + 3600}".encode() in expiring


def test_identity_tag() -> None:
    signer = DkimSigner(
        domain=DOMAIN, selector="ed", key=ed25519_key(), identity="news@mail.example.com"
    )
    signed = sign_bytes([signer], MESSAGE, timestamp=NOW)
    assert b"i=news@mail.example.com" in signed
    assert verify_all(signed) == [True]


def test_an_identity_with_an_equals_sign_is_written_quoted_printable() -> None:
    # i= is dkim-quoted-printable (RFC 6376 §2.11): a VERP/SRS local part's "=" is =3D.
    signer = DkimSigner(
        domain=DOMAIN,
        selector="ed",
        key=ed25519_key(),
        identity="bounce+bob=example.org@example.com",
    )
    signed = sign_bytes([signer], MESSAGE, timestamp=NOW)
    assert b"i=bounce+bob=3Dexample.org@example.com;" in signed
    assert verify_all(signed) == [True]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"domain": "example.com; s=evil"}, "not a DNS name"),
        ({"domain": "exa\r\nmple.com"}, "not a DNS name"),
        ({"selector": "s 1"}, "not a DNS name"),
        ({"domain": "bücher.example"}, "A-label"),
        ({"headers": ("To", "Subject")}, "must include From"),
        ({"headers": ("From", "Received")}, "must not be signed"),
        ({"headers": ("From", "Bad:Name")}, "not a header field name"),
        ({"oversign": ("Bcc",)}, "must not be signed"),
        ({"canonicalization": "loose/relaxed"}, "canonicalization"),
        ({"identity": "user@other.test"}, "identity"),
        ({"identity": "a;b@example.com"}, "identity"),
        ({"expire_after": 0}, "expire_after"),
        ({"expire_after": 1.5}, "expire_after"),
        ({"domain": None}, "must be a str"),
        ({"headers": ("From", "Fröm")}, "not a header field name"),
        ({"headers": ("From", 7)}, "not a header field name"),
        ({"identity": 5}, "identity must be a str"),
        ({"canonicalization": "relaxed/relaxed/x"}, "canonicalization"),
        ({"canonicalization": None}, "canonicalization is a str"),
        ({"headers": None}, "sequences of field names"),
        ({"oversign": 5}, "sequences of field names"),
        ({"identity": "a\x00b@example.com"}, "printable ASCII"),
        ({"identity": "a\x7fb@example.com"}, "printable ASCII"),
        ({"identity": "a\x0bb@example.com"}, "printable ASCII"),
    ],
)
def test_signer_options_are_validated(options: dict[str, object], match: str) -> None:
    values: dict[str, object] = {"domain": DOMAIN, "selector": "s1", "key": rsa_key(), **options}
    with pytest.raises(ConfigurationError, match=match):
        DkimSigner(**values)  # type: ignore[arg-type]


def test_oversigning_a_field_the_list_does_not_sign() -> None:
    signer = DkimSigner(domain=DOMAIN, selector="rsa", key=rsa_key(), oversign=("From", "X-Extra"))
    assert signer.signed_fields(b"From: a@example.com\r\n").count("x-extra") == 1
    signed = sign_bytes([signer], MESSAGE, timestamp=NOW)
    assert verify_all(signed) == [True]
    assert verify_all(signed.replace(b"\r\nTo:", b"\r\nX-Extra: added\r\nTo:", 1)) == [False]


def test_huge_body_streams_through_sign_message() -> None:
    chunk = b"x" * 1000 + b"  \r\n"
    count = 20_000  # 20 MB, fed chunk by chunk: the hasher keeps one line, not the body

    def body() -> object:
        for _ in range(count):
            yield chunk

    head = MESSAGE.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    signatures = sign_message(signers(), head, body(), timestamp=NOW)  # type: ignore[arg-type]
    assert verify_all(signatures + head + b"\r\n" + chunk * count) == [True, True]


def test_non_utf8_and_long_folded_headers_verify() -> None:
    message = (
        b"From: caf\xe9 <a@example.com>\r\n"  # Latin-1, not UTF-8: signed as the bytes it is
        b"Subject: " + b"word " * 60 + b"\r\n\tcontinued\r\n"
        b"References: <1@x>\r\n <2@x>\r\n <3@x>\r\n"
        b"\r\nbody\r\n"
    )
    signed = sign_bytes(signers(), message, timestamp=NOW)
    assert verify_all(signed) == [True, True]
    assert verify_all(signed.replace(b"<2@x>", b"<9@x>")) == [False, False]


def test_a_missing_dkim_extra_fails_when_configured_not_at_the_first_send(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from mailsdk import ClientBuilder

    monkeypatch.setitem(sys.modules, "dkim", None)  # "import dkim" now raises ImportError
    with pytest.raises(ConfigurationError, match=r"mailsdk\[dkim\]"):
        ClientBuilder.smtp("mail.example.com").with_dkim(DOMAIN, "rsa", rsa_key())
    with pytest.raises(ConfigurationError, match=r"mailsdk\[dkim\]"):
        DkimSigner(domain=DOMAIN, selector="rsa", key=rsa_key())
