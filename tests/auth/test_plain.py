from __future__ import annotations

import pytest

from mailsdk.auth import CredentialKind, PlainMechanism
from mailsdk.auth.plain import encode_plain
from mailsdk.errors import AuthError

from .sasl_support import PASSWORD, TLS, creds, drive


def test_attributes() -> None:
    mech = PlainMechanism()
    assert mech.name == "PLAIN"
    assert mech.credential_kind is CredentialKind.PASSWORD
    assert mech.sends_reusable_secret is True
    assert mech.supports_initial_response is True


def test_rfc4616_examples() -> None:
    # RFC 4616 §4: "\0tim\0tanstaaftanstaaf" and "Ursel\0Kurt\0xipj3plmq".
    assert encode_plain(creds("tim", "tanstaaftanstaaf")) == b"\x00tim\x00tanstaaftanstaaf"
    assert (
        encode_plain(creds("Kurt", "xipj3plmq", authzid="Ursel")) == b"Ursel\x00Kurt\x00xipj3plmq"
    )


def test_initial_response() -> None:
    exchange = PlainMechanism().start(creds("user", "pencil"), TLS)
    assert drive(exchange, []) == [b"\x00user\x00pencil"]
    exchange.finish(None)
    assert exchange.server_error is None


def test_without_initial_response_answers_the_empty_challenge() -> None:
    exchange = PlainMechanism().start(creds("user", "pencil"), TLS)
    assert drive(exchange, [b""], use_initial=False) == [b"\x00user\x00pencil"]


def test_saslprep_applied_to_username_and_password() -> None:
    # RFC 4013 §3: SOFT HYPHEN maps to nothing; NO-BREAK SPACE maps to SPACE.
    exchange = PlainMechanism().start(creds("I\u00adX", "a\u00a0b"), TLS)
    assert exchange.initial_response() == b"\x00IX\x00a b"


def test_utf8_is_sent_as_utf8() -> None:
    assert encode_plain(creds("jürgen", "pässwörd")) == "\x00jürgen\x00pässwörd".encode()


@pytest.mark.parametrize(
    ("username", "password", "authzid"),
    [
        ("user", "", None),
        ("", "pencil", None),
        ("user", "pen\x00cil", None),
        ("us\x00er", "pencil", None),
        ("user", "pencil", "ad\x00min"),
        ("user", "pen\x07cil", None),
    ],
)
def test_unencodable_credentials_fail_at_start(
    username: str, password: str, authzid: str | None
) -> None:
    with pytest.raises(AuthError) as info:
        PlainMechanism().start(creds(username, password, authzid), TLS)
    assert password not in str(info.value) or not password
    assert "PLAIN" in str(info.value) or "SASLprep" in str(info.value)


def test_unexpected_challenge_after_initial_response() -> None:
    exchange = PlainMechanism().start(creds(), TLS)
    exchange.initial_response()
    with pytest.raises(AuthError, match="unexpected"):
        exchange.respond(b"")


def test_non_empty_first_challenge_is_refused() -> None:
    exchange = PlainMechanism().start(creds(), TLS)
    with pytest.raises(AuthError, match="empty challenge"):
        exchange.respond(b"hello")


def test_initial_response_only_once() -> None:
    exchange = PlainMechanism().start(creds(), TLS)
    first = exchange.initial_response()
    assert first is not None
    assert PASSWORD.encode() in first
    with pytest.raises(AuthError):
        exchange.initial_response()
