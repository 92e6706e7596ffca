from __future__ import annotations

import base64
import json

import pytest

from mailsdk.auth import CredentialKind, OAuthBearerMechanism, SaslContext, XOAuth2Mechanism
from mailsdk.errors import AuthError

from .sasl_support import TLS, TOKEN, creds, drive

# RFC 7628 §4.1 (IMAP example) and §4.3.
RFC7628_TOKEN = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="
RFC7628_CONTEXT = SaslContext(host="server.example.com", port=143, tls_active=True)
RFC7628_IR_B64 = (
    b"bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVyIHZG"
    b"OWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB"
)
RFC7628_ERROR_B64 = (
    "eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIiwib3BlbmlkLWNvbmZpZ3VyYXRp"
    "b24iOiJodHRwczovL2V4YW1wbGUuY29tLy53ZWxsLWtub3duL29wZW5pZC1jb25maWd1cmF0aW9uIn0="
)
GMAIL_ERROR = b'{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}'


@pytest.mark.parametrize("mech", [XOAuth2Mechanism(), OAuthBearerMechanism()])
def test_attributes(mech: XOAuth2Mechanism | OAuthBearerMechanism) -> None:
    assert mech.credential_kind is CredentialKind.TOKEN
    assert mech.sends_reusable_secret is True
    assert mech.supports_initial_response is True


# --- XOAUTH2 -----------------------------------------------------------------------------------


def test_xoauth2_google_documented_example() -> None:
    # developers.google.com/gmail/imap/xoauth2-protocol: the base64 of the initial response.
    token = "ya29.vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg"
    exchange = XOAuth2Mechanism().start(creds("someuser@example.com", token), TLS)
    first = exchange.initial_response()
    assert first == f"user=someuser@example.com\x01auth=Bearer {token}\x01\x01".encode()
    assert base64.b64encode(first) == (
        b"dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhi"
        b"SFJoZG1semRHRXVZMjl0Q2cBAQ=="
    )


def test_xoauth2_error_challenge_is_captured_and_answered_empty() -> None:
    exchange = XOAuth2Mechanism().start(creds("user@gmail.com", TOKEN), TLS)
    sent = drive(exchange, [GMAIL_ERROR])
    assert sent[1] == b""
    assert exchange.server_error == {
        "status": "401",
        "schemes": "bearer",
        "scope": "https://mail.google.com/",
    }


def test_xoauth2_without_initial_response() -> None:
    exchange = XOAuth2Mechanism().start(creds("u@example.com", TOKEN), TLS)
    sent = drive(exchange, [b"", GMAIL_ERROR], use_initial=False)
    assert sent == [f"user=u@example.com\x01auth=Bearer {TOKEN}\x01\x01".encode(), b""]
    assert exchange.server_error is not None


def test_second_error_challenge_refused() -> None:
    exchange = XOAuth2Mechanism().start(creds("u@example.com", TOKEN), TLS)
    drive(exchange, [GMAIL_ERROR])
    with pytest.raises(AuthError, match="unexpected"):
        exchange.respond(GMAIL_ERROR)


@pytest.mark.parametrize(
    "challenge", [b"not json", b"[1, 2]", b"\xff\xfe", b'{"a": ' * 5000, b"{" * 20000]
)
@pytest.mark.parametrize("mech", [XOAuth2Mechanism(), OAuthBearerMechanism()])
def test_malformed_error_challenge(
    mech: XOAuth2Mechanism | OAuthBearerMechanism, challenge: bytes
) -> None:
    exchange = mech.start(creds("u@example.com", TOKEN), TLS)
    exchange.initial_response()
    with pytest.raises(AuthError) as info:
        exchange.respond(challenge)
    assert TOKEN not in str(info.value)
    assert mech.name in str(info.value)


def test_token_echoed_by_server_is_redacted() -> None:
    exchange = XOAuth2Mechanism().start(creds("u@example.com", TOKEN), TLS)
    echo = json.dumps({"status": "400", "detail": f"bad token {TOKEN}"}).encode()
    drive(exchange, [echo])
    assert exchange.server_error == {"status": "400", "detail": "bad token ***"}
    assert TOKEN not in repr(exchange.server_error)


@pytest.mark.parametrize(
    ("username", "token"),
    [
        ("u@example.com", ""),
        ("u@example.com", "abc def"),
        ("u@example.com", "abc\x01auth=Bearer x"),
        ("u\x01auth=Bearer evil", TOKEN),
        ("", TOKEN),
    ],
)
def test_xoauth2_injection_and_empty_fields_refused(username: str, token: str) -> None:
    with pytest.raises(AuthError) as info:
        XOAuth2Mechanism().start(creds(username, token), TLS)
    assert TOKEN not in str(info.value)


# --- OAUTHBEARER -------------------------------------------------------------------------------


def test_oauthbearer_rfc7628_section_4_1_vector() -> None:
    exchange = OAuthBearerMechanism().start(
        creds("user@example.com", RFC7628_TOKEN), RFC7628_CONTEXT
    )
    first = exchange.initial_response()
    assert first == (
        b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
        b"auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
    )
    assert base64.b64encode(first) == RFC7628_IR_B64
    exchange.finish(None)


def test_oauthbearer_rfc7628_section_4_3_error() -> None:
    exchange = OAuthBearerMechanism().start(
        creds("user@example.com", RFC7628_TOKEN), RFC7628_CONTEXT
    )
    sent = drive(exchange, [base64.b64decode(RFC7628_ERROR_B64)])
    assert sent[1] == b"\x01"  # RFC 7628 §3.2.3: the dummy response is %x01 ("AQ==")
    assert base64.b64encode(sent[1]) == b"AQ=="
    assert exchange.server_error == {
        "status": "invalid_token",
        "scope": "example_scope",
        "openid-configuration": "https://example.com/.well-known/openid-configuration",
    }


def test_oauthbearer_saslname_escaping_and_authzid() -> None:
    # RFC 5801 §4: "," and "=" in the authzid are escaped as =2C and =3D.
    exchange = OAuthBearerMechanism().start(creds("a=b,c", TOKEN), TLS)
    first = exchange.initial_response()
    assert first is not None
    assert first.startswith(b"n,a=a=3Db=2Cc,\x01host=smtp.example.com\x01port=587\x01")
    exchange = OAuthBearerMechanism().start(creds("login", TOKEN, authzid="shared@x"), TLS)
    first = exchange.initial_response()
    assert first is not None
    assert first.startswith(b"n,a=shared@x,")


def test_oauthbearer_host_injection_refused() -> None:
    context = SaslContext(host="evil\x01auth=Bearer x", port=25, tls_active=True)
    with pytest.raises(AuthError, match="host"):
        OAuthBearerMechanism().start(creds("u", TOKEN), context)
