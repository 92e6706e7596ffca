"""The built-in extensions' parsers (SIZE, AUTH, flags)."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailsdk.errors import ConfigurationError
from mailsdk.esmtp import (
    AuthExtension,
    Extension,
    FlagExtension,
    MailParameterHook,
    SizeExtension,
    builtin_extensions,
    parse_auth_mechanisms,
    parse_size,
)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ("35882577", 35882577),
        ("1", 1),
        ("", None),  # bare SIZE: advertised, no limit declared
        ("0", None),  # RFC 1870 §4: 0 = no fixed maximum
        ("000", None),
        ("abc", None),
        ("-5", None),
        ("12.5", None),
        ("1e6", None),
        ("\u0661\u0662", None),  # Arabic-Indic digits: str.isdigit() but not ASCII
        ("\u00b2", None),  # superscript two: isdigit() yet int() would raise
        ("9" * 21, None),  # absurd: and never feed int() a huge digit string
        ("9" * 5000, None),
        ("100 200", 100),
        ("  42  ", 42),
    ],
)
def test_parse_size(params: str, expected: int | None) -> None:
    assert parse_size(params) == expected
    assert SizeExtension().parse(params) == expected


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ("LOGIN PLAIN XOAUTH2", ("LOGIN", "PLAIN", "XOAUTH2")),
        ("login plain", ("LOGIN", "PLAIN")),
        ("PLAIN LOGIN plain Login", ("PLAIN", "LOGIN")),
        ("SCRAM-SHA-256-PLUS GSS_SPNEGO", ("SCRAM-SHA-256-PLUS", "GSS_SPNEGO")),
        ("", ()),
        ("PLAIN \u00e9t\u00e9 A-NAME-LONGER-THAN-TWENTY X!Y", ("PLAIN",)),
        ("\tCRAM-MD5\t  DIGEST-MD5 ", ("CRAM-MD5", "DIGEST-MD5")),
    ],
)
def test_parse_auth_mechanisms(params: str, expected: tuple[str, ...]) -> None:
    assert parse_auth_mechanisms(params) == expected
    assert AuthExtension().parse(params) == expected


@given(st.text(max_size=200))
def test_builtin_parsers_never_raise(params: str) -> None:
    size = parse_size(params)
    assert size is None or size > 0
    for mech in parse_auth_mechanisms(params):
        assert mech == mech.upper()
        assert 1 <= len(mech) <= 20
    for ext in builtin_extensions():
        ext.parse(params)


def test_flag_extension_parse_is_true_whatever_the_params() -> None:
    ext = FlagExtension("PIPELINING")
    assert ext.parse("") is True
    assert ext.parse("odd params") is True


@pytest.mark.parametrize("keyword", ["pipelining", "X FOO", "", "-X", "X_Y", "CAFÉ"])
def test_flag_extension_rejects_invalid_keywords(keyword: str) -> None:
    with pytest.raises(ConfigurationError):
        FlagExtension(keyword)


def test_builtin_set_and_order() -> None:
    keywords = [ext.keyword for ext in builtin_extensions()]
    assert keywords == [
        "SIZE",
        "PIPELINING",
        "CHUNKING",
        "BINARYMIME",
        "8BITMIME",
        "SMTPUTF8",
        "STARTTLS",
        "AUTH",
        "ENHANCEDSTATUSCODES",
        "DSN",
        "REQUIRETLS",
    ]
    for ext in builtin_extensions():
        assert isinstance(ext, Extension)
        # built-ins contribute parameters through params.py, not through hooks
        assert not isinstance(ext, MailParameterHook)


def test_builtins_are_immutable() -> None:
    ext = SizeExtension()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        ext.keyword = "OTHER"  # type: ignore[misc]
    assert SizeExtension() == ext
