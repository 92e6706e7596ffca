"""Fixtures for the real-server suite (marker ``mta``): one private Postfix + Dovecot per session.

Layer: tests. Imports ``tests._support.mta`` (which never imports mailsdk). When postfix,
dovecot-core or dovecot-lmtpd are missing (or we are not root) every ``mta`` test is skipped with
the reason; set ``MAILSDK_REQUIRE_MTA=1`` (CI, after ``scripts/install-mta.sh``) to turn that
skip into a failure so a broken install cannot pass silently.
"""

from __future__ import annotations

import os
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:  # so `tests._support` imports without a pytest `pythonpath` setting
    sys.path.insert(0, _ROOT)

from tests._support.mta import (  # noqa: E402
    Credentials,
    MtaEnvironment,
    find_missing,
    start_mta,
)

_REQUIRED = os.environ.get("MAILSDK_REQUIRE_MTA", "") not in ("", "0")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every ``mta`` test, with the reason, when the servers cannot run here."""
    reason = find_missing()
    if reason is None or _REQUIRED:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if item.get_closest_marker("mta") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def mta_env() -> Iterator[MtaEnvironment]:
    """The running private Postfix + Dovecot (ports, CA, users, Maildir reader, logs)."""
    reason = find_missing()
    if reason is not None:
        if _REQUIRED:
            pytest.fail(f"MAILSDK_REQUIRE_MTA is set but {reason}")
        pytest.skip(reason)
    with start_mta() as env:
        yield env


@pytest.fixture
def mta_tls_context(mta_env: MtaEnvironment) -> ssl.SSLContext:
    """A fresh verifying client context that trusts only the suite's CA."""
    return mta_env.client_context()


@pytest.fixture
def alice(mta_env: MtaEnvironment) -> Credentials:
    """Mailbox with a password and the OAuth token ``good-token``."""
    return mta_env.users["alice"]


@pytest.fixture
def bob(mta_env: MtaEnvironment) -> Credentials:
    """Mailbox with a password only."""
    return mta_env.users["bob"]
