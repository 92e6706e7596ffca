from __future__ import annotations

import pytest

from mailsdk.auth import CramMD5Mechanism, CredentialKind
from mailsdk.auth.cram_md5 import cram_md5_response
from mailsdk.errors import AuthError

from .sasl_support import TLS, creds

RFC2195_CHALLENGE = b"<1896.697170952@postoffice.reston.mci.net>"


def test_attributes() -> None:
    mech = CramMD5Mechanism()
    assert mech.name == "CRAM-MD5"
    assert mech.credential_kind is CredentialKind.PASSWORD
    assert mech.sends_reusable_secret is False
    assert mech.supports_initial_response is False


def test_rfc2195_vector() -> None:
    # RFC 2195 §2: user tim, secret tanstaaftanstaaf.
    assert (
        cram_md5_response("tim", "tanstaaftanstaaf", RFC2195_CHALLENGE)
        == b"tim b913a602c7eda7a495b4e6e7334d3890"
    )
    exchange = CramMD5Mechanism().start(creds("tim", "tanstaaftanstaaf"), TLS)
    assert exchange.initial_response() is None
    assert exchange.respond(RFC2195_CHALLENGE) == b"tim b913a602c7eda7a495b4e6e7334d3890"
    exchange.finish(None)


def test_empty_challenge_refused() -> None:
    exchange = CramMD5Mechanism().start(creds("tim", "tanstaaftanstaaf"), TLS)
    with pytest.raises(AuthError, match="empty challenge"):
        exchange.respond(b"")


def test_second_challenge_refused() -> None:
    exchange = CramMD5Mechanism().start(creds("tim", "tanstaaftanstaaf"), TLS)
    exchange.respond(RFC2195_CHALLENGE)
    with pytest.raises(AuthError, match="unexpected"):
        exchange.respond(RFC2195_CHALLENGE)


@pytest.mark.parametrize("username", ["", "two words"])
def test_bad_username(username: str) -> None:
    with pytest.raises(AuthError):
        CramMD5Mechanism().start(creds(username), TLS)
