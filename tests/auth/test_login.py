from __future__ import annotations

import pytest

from mailsdk.auth import CredentialKind, LoginMechanism
from mailsdk.errors import AuthError

from .sasl_support import PASSWORD, TLS, creds, drive


def test_attributes() -> None:
    mech = LoginMechanism()
    assert mech.name == "LOGIN"
    assert mech.credential_kind is CredentialKind.PASSWORD
    assert mech.sends_reusable_secret is True
    assert mech.supports_initial_response is True
    assert LoginMechanism(initial_response=False).supports_initial_response is False


def test_initial_response_is_the_username_like_smtplib() -> None:
    exchange = LoginMechanism().start(creds("user", "pencil"), TLS)
    assert drive(exchange, [b"Password:"]) == [b"user", b"pencil"]
    exchange.finish(None)


def test_without_initial_response() -> None:
    exchange = LoginMechanism(initial_response=False).start(creds("user", "pencil"), TLS)
    assert exchange.initial_response() is None
    assert drive(exchange, [b"Username:", b"Password:"]) == [b"user", b"pencil"]


def test_prompts_are_advisory_order_wins() -> None:
    # Some servers send other prompt texts (or none); answer in order.
    exchange = LoginMechanism(initial_response=False).start(creds("user", "pencil"), TLS)
    assert drive(exchange, [b"", b""]) == [b"user", b"pencil"]


def test_username_asked_again_after_initial_response() -> None:
    exchange = LoginMechanism().start(creds("user", "pencil"), TLS)
    assert drive(exchange, [b"Username:", b"Password:"]) == [b"user", b"user", b"pencil"]


def test_nothing_after_the_password() -> None:
    exchange = LoginMechanism().start(creds("user", PASSWORD), TLS)
    assert drive(exchange, [b"Password:"]) == [b"user", PASSWORD.encode()]
    with pytest.raises(AuthError, match="unexpected") as info:
        exchange.respond(b"Password:")
    assert PASSWORD not in str(info.value)


def test_username_reprompt_honoured_only_once() -> None:
    # Only the first prompt may re-ask for the username; after that, order wins and the
    # exchange ends with the password, so a loop cannot go on.
    exchange = LoginMechanism().start(creds("user", "pencil"), TLS)
    sent = drive(exchange, [b"Username:", b"Username:"])
    assert sent == [b"user", b"user", b"pencil"]
    with pytest.raises(AuthError):
        exchange.respond(b"Username:")


def test_non_ascii_credentials_are_utf8() -> None:
    exchange = LoginMechanism(initial_response=False).start(creds("jürgen", "pässwörd"), TLS)
    assert drive(exchange, [b"Username:", b"Password:"]) == [
        "jürgen".encode(),
        "pässwörd".encode(),
    ]


def test_empty_username_refused() -> None:
    with pytest.raises(AuthError):
        LoginMechanism().start(creds(""), TLS)
