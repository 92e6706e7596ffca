"""The google-auth provider against real google-auth talking HTTPS to the local authority."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from tests._support.oauth_authority import JWT_BEARER_GRANT, OAuthAuthority

from mailsdk.auth.google import GMAIL_SCOPE, GoogleTokenProvider
from mailsdk.auth.tokens import CachingTokenProvider
from mailsdk.errors import ConfigurationError, TokenError

SUBJECT = "mailer@example.org"
CLIENT_EMAIL = "smtp-relay@demo-project.iam.gserviceaccount.com"
USER_SECRET = "GOCSPX-user-client-secret"


@pytest.fixture(scope="module")
def private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def service_account_info(authority: OAuthAuthority, pem: str) -> dict[str, Any]:
    return {
        "type": "service_account",
        "project_id": "demo-project",
        "private_key_id": "kid-1",
        "private_key": pem,
        "client_email": CLIENT_EMAIL,
        "client_id": "1234567890",
        "token_uri": authority.google_token_uri,
    }


def test_service_account_jwt_bearer_with_subject(
    oauth_authority: OAuthAuthority, private_key_pem: str
) -> None:
    provider = GoogleTokenProvider.from_service_account_info(
        service_account_info(oauth_authority, private_key_pem),
        subject=SUBJECT,
        session=oauth_authority.session(),
    )
    assert provider.username == SUBJECT
    before = time.time()
    token = provider.get_token()
    assert token.token.reveal() == "ya29.at-1"
    assert token.expires_at is not None
    assert before + 3500 < token.expires_at < time.time() + 3700
    [request] = oauth_authority.token_requests()
    assert request.path == "/token"
    assert request.grant_type == JWT_BEARER_GRANT
    claims = request.assertion_claims
    assert claims is not None
    assert claims["iss"] == CLIENT_EMAIL
    assert claims["sub"] == SUBJECT  # domain-wide delegation: act as the mailbox
    assert claims["scope"] == GMAIL_SCOPE
    assert claims["aud"] == "https://oauth2.googleapis.com/token"  # google-auth's fixed audience
    assert request.assertion_header is not None
    assert request.assertion_header["alg"] == "RS256"

    assert provider.get_token().token.reveal() == "ya29.at-1"  # still valid: no request
    assert len(oauth_authority.token_requests()) == 1
    assert provider.get_token(force_refresh=True).token.reveal() == "ya29.at-2"
    assert len(oauth_authority.token_requests(JWT_BEARER_GRANT)) == 2


def test_service_account_file_and_caching_layer(
    oauth_authority: OAuthAuthority, private_key_pem: str, tmp_path: Path
) -> None:
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(service_account_info(oauth_authority, private_key_pem)))
    inner = GoogleTokenProvider.from_service_account_file(
        path, subject=SUBJECT, session=oauth_authority.session()
    )
    provider = CachingTokenProvider(inner)
    assert provider.get_token().token.reveal() == "ya29.at-1"
    assert provider.get_token().token.reveal() == "ya29.at-1"
    assert provider.username == SUBJECT
    assert len(oauth_authority.token_requests()) == 1


def test_refused_grant_maps_to_token_error(
    oauth_authority: OAuthAuthority, private_key_pem: str
) -> None:
    oauth_authority.error = {
        "error": "unauthorized_client",
        "error_description": "Client is unauthorized to retrieve access tokens using this method.",
    }
    provider = GoogleTokenProvider.from_service_account_info(
        service_account_info(oauth_authority, private_key_pem),
        subject=SUBJECT,
        session=oauth_authority.session(),
    )
    with pytest.raises(TokenError) as info:
        provider.get_token()
    assert info.value.error == "unauthorized_client"
    assert info.value.error_description is not None
    assert "unauthorized" in str(info.value)
    assert "PRIVATE KEY" not in str(info.value)


def test_authorized_user_refresh_token_grant(oauth_authority: OAuthAuthority) -> None:
    info = {
        "client_id": "client.apps.googleusercontent.com",
        "client_secret": USER_SECRET,
        "refresh_token": "1//user-refresh-token",
    }
    provider = GoogleTokenProvider.from_authorized_user_info(
        info,
        username="someone@gmail.com",
        token_uri=oauth_authority.google_token_uri,
        session=oauth_authority.session(),
    )
    assert provider.get_token().token.reveal() == "ya29.at-1"
    [request] = oauth_authority.token_requests("refresh_token")
    assert request.form["refresh_token"] == "1//user-refresh-token"
    assert request.client_id == "client.apps.googleusercontent.com"
    assert provider.username == "someone@gmail.com"
    assert USER_SECRET not in repr(provider)

    oauth_authority.error = {"error": "invalid_grant", "error_description": "Token revoked."}
    with pytest.raises(TokenError) as exc_info:
        provider.get_token(force_refresh=True)
    assert exc_info.value.error == "invalid_grant"
    assert USER_SECRET not in str(exc_info.value)


def test_malformed_service_account_info_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        GoogleTokenProvider.from_service_account_info({"type": "service_account"}, subject="x@y")
    with pytest.raises(ConfigurationError):
        GoogleTokenProvider.from_service_account_file("/nonexistent/sa.json", subject="x@y")


def test_missing_google_auth_gives_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulate the optional extra not being installed: a None entry makes the import fail.
    monkeypatch.setitem(sys.modules, "google.auth.transport.requests", None)
    with pytest.raises(ConfigurationError, match=r"mailsdk\[google\]"):
        GoogleTokenProvider(object())
