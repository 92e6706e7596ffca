"""Secrets never sit in plain view: SASL exchange state, OAuth error JSON, unencodable credentials."""

from __future__ import annotations

import pytest

from mailsdk.auth import (
    OAuthBearerMechanism,
    SaslContext,
    SaslCredentials,
    ScramMechanism,
    XOAuth2Mechanism,
)
from mailsdk.auth.oauth import parse_error_challenge

CONTEXT = SaslContext(host="smtp.example.com", port=587, tls_active=True)


PASSWORD = "pencil-Pa55w0rd"


TOKEN = "ya29.a0Af/Secret+Token_value"


@pytest.mark.parametrize("mechanism", [XOAuth2Mechanism(), OAuthBearerMechanism()])
def test_oauth_exchange_vars_never_show_the_token(
    mechanism: XOAuth2Mechanism | OAuthBearerMechanism,
) -> None:
    exchange = mechanism.start(SaslCredentials("user@example.com", TOKEN), CONTEXT)
    assert TOKEN not in repr(vars(exchange))
    assert TOKEN.encode() not in repr(vars(exchange)).encode()
    # ... while the exchange still sends it, and still redacts an echo of it.
    message = exchange.initial_response()
    assert message is not None and TOKEN.encode() in message
    exchange.respond(b'{"status":"401","echo":"' + TOKEN.encode() + b'"}')
    assert exchange.server_error == {"status": "401", "echo": "***"}


def test_scram_exchange_vars_never_show_the_password() -> None:
    exchange = ScramMechanism().start(SaslCredentials("user", PASSWORD), CONTEXT)
    assert PASSWORD not in repr(vars(exchange))
    assert PASSWORD.encode() not in repr(vars(exchange)).encode()


def test_scram_still_computes_the_rfc7677_proof() -> None:
    mechanism = ScramMechanism(nonce_factory=lambda: "rOprNGfwEbeRWgbNEkqO")
    exchange = mechanism.start(SaslCredentials("user", "pencil"), CONTEXT)
    assert exchange.initial_response() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    final = exchange.respond(
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    assert final.endswith(b",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")


@pytest.mark.parametrize(
    "echo",
    [
        TOKEN.replace("/", "\\/"),  # PHP's json_encode escapes "/" by default
        "".join(f"\\u{ord(c):04x}" for c in TOKEN),  # fully \\u-escaped
    ],
)
def test_error_challenge_redacts_a_json_escaped_token(echo: str) -> None:
    challenge = ('{"status":"401","error_description":"bad token ' + echo + '"}').encode()
    parsed = parse_error_challenge("XOAUTH2", challenge, TOKEN)
    assert TOKEN not in repr(parsed)
    assert parsed["error_description"] == "bad token ***"


def test_error_challenge_redacts_the_token_in_keys_and_nested_values() -> None:
    challenge = ('{"' + TOKEN + '":[{"x":"' + TOKEN.replace("/", "\\/") + '"}]}').encode()
    parsed = parse_error_challenge("XOAUTH2", challenge, TOKEN)
    assert TOKEN not in repr(parsed)
    assert parsed == {"***": [{"x": "***"}]}


def _leaks(exc: BaseException, secret: str) -> bool:
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    return any(secret in repr(e.args) or secret in str(e) for e in chain)


def test_secret_equality_with_a_lone_surrogate_does_not_raise() -> None:
    from mailsdk import Secret

    assert Secret("pa\udcffss") != Secret("x")
    assert Secret("pa\udcffss") == Secret("pa\udcffss")


@pytest.mark.parametrize("mechanism", [XOAuth2Mechanism(), OAuthBearerMechanism()])
def test_oauth_unencodable_username_is_an_auth_error_without_the_token(
    mechanism: XOAuth2Mechanism | OAuthBearerMechanism,
) -> None:
    from mailsdk.errors import AuthError

    with pytest.raises(AuthError) as info:
        mechanism.start(SaslCredentials("us\udcffer@example.com", TOKEN), CONTEXT)
    assert not _leaks(info.value, TOKEN)


@pytest.mark.parametrize("name", ["LOGIN", "CRAM-MD5"])
def test_unencodable_password_is_refused_up_front_without_the_password(name: str) -> None:
    from mailsdk.auth import CramMD5Mechanism, LoginMechanism
    from mailsdk.errors import AuthError

    secret = "pa\udcffss-w0rd"
    mechanism = LoginMechanism() if name == "LOGIN" else CramMD5Mechanism()
    with pytest.raises(AuthError, match="password") as info:
        mechanism.start(SaslCredentials("user", secret), CONTEXT)
    assert not _leaks(info.value, secret)
