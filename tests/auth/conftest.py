"""Fixtures for the token-provider tests: a trustme CA and the local OAuth authority."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:  # so `tests._support` imports without a pytest `pythonpath` setting
    sys.path.insert(0, _ROOT)

from tests._support.oauth_authority import FakeClock, OAuthAuthority  # noqa: E402


@pytest.fixture(scope="session")
def oauth_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def oauth_authority(oauth_ca: trustme.CA, tmp_path: Path) -> Iterator[OAuthAuthority]:
    with OAuthAuthority(oauth_ca, tmp_path) as authority:
        yield authority


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
