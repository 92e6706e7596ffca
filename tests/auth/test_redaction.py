"""No password or token in any repr, str, error message or pickle of the SASL layer."""

from __future__ import annotations

import base64
import pickle

import pytest

from mailsdk.auth import (
    ChannelBinding,
    CramMD5Mechanism,
    LoginMechanism,
    Mechanism,
    MechanismRegistry,
    OAuthBearerMechanism,
    PlainMechanism,
    SaslContext,
    SaslCredentials,
    ScramMechanism,
    XOAuth2Mechanism,
)
from mailsdk.errors import AuthError

from .sasl_support import PASSWORD, TOKEN

CB = ChannelBinding("tls-exporter", b"\x05" * 32)
CONTEXT = SaslContext("smtp.example.com", 587, True, channel_binding=CB)
SECRETS = (PASSWORD, TOKEN)
ENCODED = tuple(base64.b64encode(s.encode()).decode() for s in SECRETS)

MECHANISMS: list[Mechanism] = [
    PlainMechanism(),
    LoginMechanism(),
    LoginMechanism(initial_response=False),
    CramMD5Mechanism(),
    XOAuth2Mechanism(),
    OAuthBearerMechanism(),
    ScramMechanism("SHA-1"),
    ScramMechanism("SHA-256"),
    ScramMechanism("SHA-256", channel_binding=True),
]


def assert_clean(text: str) -> None:
    for secret in SECRETS + ENCODED:
        assert secret not in text


def credentials_for(mech: Mechanism) -> SaslCredentials:
    secret = TOKEN if mech.credential_kind.value == "token" else PASSWORD
    return SaslCredentials("user@example.com", secret, authzid="admin")


@pytest.mark.parametrize("mech", MECHANISMS, ids=lambda m: m.name)
def test_repr_of_mechanism_credentials_and_exchange(mech: Mechanism) -> None:
    credentials = credentials_for(mech)
    assert_clean(repr(mech))
    assert_clean(repr(credentials))
    assert_clean(str(credentials))
    exchange = mech.start(credentials, CONTEXT)
    assert_clean(repr(exchange))
    try:
        first = exchange.initial_response() if mech.supports_initial_response else None
        # the secret really is in play at this point (the test would otherwise prove nothing)
        if first is not None and mech.name in ("PLAIN", "XOAUTH2", "OAUTHBEARER"):
            assert credentials.secret.reveal().encode() in first
        exchange.respond(b"<1.2@host>" if mech.name == "CRAM-MD5" else b"Password:")
    except AuthError as exc:
        assert_clean(str(exc))
        assert_clean(repr(exc))
    assert_clean(repr(exchange))
    assert_clean(repr(vars(exchange).get("_server_error")))
    with pytest.raises(TypeError):
        pickle.dumps(exchange)
    with pytest.raises(TypeError):
        pickle.dumps(credentials)


def test_context_and_registry_repr() -> None:
    assert_clean(repr(CONTEXT))
    assert_clean(repr(MechanismRegistry.default()))


@pytest.mark.parametrize("mech", MECHANISMS, ids=lambda m: m.name)
@pytest.mark.parametrize(
    "challenge", [b"\xff\x00garbage", b"e=other-error", b"x" * 20000, b"{]", b"r=,s=,i="]
)
def test_error_messages_never_carry_secrets(mech: Mechanism, challenge: bytes) -> None:
    exchange = mech.start(credentials_for(mech), CONTEXT)
    if mech.supports_initial_response:
        exchange.initial_response()
    errors: list[AuthError] = []
    for _ in range(12):
        try:
            exchange.respond(challenge)
        except AuthError as exc:
            errors.append(exc)
            break
    try:
        exchange.finish(challenge)
    except AuthError as final:
        errors.append(final)
    assert errors, "a hostile challenge stream must end in an AuthError"
    for error in errors:
        assert_clean(str(error))
        assert error.__cause__ is None or isinstance(error.__cause__, AuthError)
        # errors stay picklable (MailError.__reduce__) and still carry no secret
        assert_clean(repr(pickle.loads(pickle.dumps(error))))


@pytest.mark.parametrize(
    "bad_secret", ["\x07" + PASSWORD, PASSWORD + "\u0627", PASSWORD + "\U000e0001"]
)
def test_saslprep_errors_do_not_quote_the_password(bad_secret: str) -> None:
    for mech in (PlainMechanism(), ScramMechanism()):
        with pytest.raises(AuthError) as info:
            mech.start(SaslCredentials("user", bad_secret), CONTEXT)
        assert_clean(str(info.value))
