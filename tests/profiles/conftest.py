"""Fixtures for the profiles tests: the local OAuth authority and a clean ``MAILSDK_*`` slate."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator

import pytest
import trustme
from tests._support.oauth_authority import OAuthAuthority


@pytest.fixture(autouse=True)
def _no_inherited_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``MAILSDK_*`` variable or CA bundle override of the developer's reaches a test."""
    for name in list(os.environ):
        if name.startswith("MAILSDK_"):
            monkeypatch.delenv(name)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def oauth_authority(tls_ca: trustme.CA, tmp_path: pathlib.Path) -> Iterator[OAuthAuthority]:
    """The local HTTPS OAuth authority (msal and Google token endpoints) on 127.0.0.1."""
    with OAuthAuthority(tls_ca, tmp_path) as authority:
        authority.token_prefix = "at-SECRET-"  # distinctive: a leak cannot hide in other text
        yield authority
