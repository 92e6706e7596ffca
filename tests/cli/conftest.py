"""Fixtures for the command-line tests: the real ``mailsdk`` in a subprocess, TLS servers.

Every test runs ``python -m mailsdk ...`` as a child process (real argv, real stdin that is not
a terminal, real exit status) with ``HOME`` and ``XDG_CONFIG_HOME`` in a temporary directory and
no ``MAILSDK_*`` variable inherited, against aiosmtpd servers with trustme certificates.
"""

from __future__ import annotations

import pathlib
import ssl
from collections.abc import Callable, Iterator

import pytest
import trustme
from tests._support.oauth_authority import OAuthAuthority
from tests._support.smtpd import SmtpdServer
from tests.cli._helpers import PASSWORD, REFUSED, USER, Cli


@pytest.fixture
def cli(tmp_path: pathlib.Path) -> Cli:
    home = tmp_path / "home"
    home.mkdir()
    return Cli(home)


@pytest.fixture
def ca_file(tls_ca: trustme.CA, tmp_path: pathlib.Path) -> str:
    path = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def tls_server(
    smtpd_factory: Callable[..., SmtpdServer], server_ssl_context: ssl.SSLContext
) -> SmtpdServer:
    """STARTTLS (offered), AUTH after TLS for alice, PIPELINING, one refused address."""
    return smtpd_factory(
        starttls=server_ssl_context,
        users={USER: PASSWORD},
        refuse_rcpt=[REFUSED],
        pipelining=True,
    )


@pytest.fixture
def oauth_authority(tls_ca: trustme.CA, tmp_path: pathlib.Path) -> Iterator[OAuthAuthority]:
    """The local HTTPS OAuth authority (msal and Google token endpoints) on 127.0.0.1."""
    with OAuthAuthority(tls_ca, tmp_path) as authority:
        yield authority
