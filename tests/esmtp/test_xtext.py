"""RFC 3461 §4 xtext and RFC 6533 §3 utf-8-addr-xtext."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailsdk.errors import InvalidInputError
from mailsdk.esmtp import decode_xtext, encode_utf8_addr_xtext, encode_xtext, is_xtext


@pytest.mark.parametrize(
    ("plain", "encoded"),
    [
        ("", ""),
        ("abc", "abc"),
        ("QQ314159", "QQ314159"),
        ("a+b", "a+2Bb"),
        ("a=b", "a+3Db"),
        ("a b", "a+20b"),
        ("!~", "!~"),
        ("tab\there", "tab+09here"),
        ("é", "+C3+A9"),
        (b"\x00\x7f\xff", "+00+7F+FF"),
        ("user+tag@example.com", "user+2Btag@example.com"),
    ],
)
def test_encode_and_decode_table(plain: str | bytes, encoded: str) -> None:
    assert encode_xtext(plain) == encoded
    expected = plain.encode() if isinstance(plain, str) else plain
    assert decode_xtext(encoded) == expected
    assert decode_xtext(encoded.encode()) == expected
    assert is_xtext(encoded)


@pytest.mark.parametrize(
    "bad",
    [
        "a+2b",  # lower-case hex is not hexchar
        "a+2",
        "+",
        "a+GG",
        "a=b",  # '=' must be encoded
        "a b",  # space must be encoded
        "é",
        b"\x7f",
        b"a\r\nb",
    ],
)
def test_decode_rejects_malformed(bad: str | bytes) -> None:
    with pytest.raises(InvalidInputError):
        decode_xtext(bad)
    if isinstance(bad, str):
        assert not is_xtext(bad)


def test_decode_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="RFC 3461"):
        decode_xtext("a+zz")


@given(st.binary(max_size=200))
def test_round_trip_bytes(data: bytes) -> None:
    encoded = encode_xtext(data)
    assert is_xtext(encoded)
    assert all(0x21 <= ord(c) <= 0x7E for c in encoded)
    assert "=" not in encoded
    assert decode_xtext(encoded) == data


@given(st.text(max_size=100))
def test_round_trip_text(text: str) -> None:
    try:
        expected = text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates cannot be UTF-8
        with pytest.raises(UnicodeEncodeError):
            encode_xtext(text)
        return
    assert decode_xtext(encode_xtext(text)) == expected


@given(st.text(max_size=50))
def test_decode_never_raises_anything_else(text: str) -> None:
    try:
        decode_xtext(text)
    except InvalidInputError:
        assert not is_xtext(text)
    else:
        assert is_xtext(text)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("plain@example.com", "plain@example.com"),
        ("a+b=c@example.com", "a\\x{2B}b\\x{3D}c@example.com"),
        ("back\\slash@example.com", "back\\x{5C}slash@example.com"),
        ("用户@例子.广告", "\\x{7528}\\x{6237}@\\x{4F8B}\\x{5B50}.\\x{5E7F}\\x{544A}"),
        ("é@example.com", "\\x{E9}@example.com"),
        ("\U0001f600@x", "\\x{1F600}@x"),
    ],
)
def test_utf8_addr_xtext(address: str, expected: str) -> None:
    encoded = encode_utf8_addr_xtext(address)
    assert encoded == expected
    assert encoded.isascii()
    assert is_xtext(encoded)  # RFC 6533: the 7-bit form is itself valid xtext
