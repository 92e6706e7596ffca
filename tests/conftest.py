"""Top-level shared fixtures: the sync|async ``mode`` runner, trustme TLS, env cleaning, servers.

Every client test is written once as ``async def test_x(mode, ...)`` and runs twice: with
``mode.name == "sync"`` the blocking API is called directly (no threads: the servers run in
their own threads), with ``"async"`` the asyncio API is awaited. :class:`Mode` and
:class:`SessionProxy` hide the difference so one body covers both.
"""

from __future__ import annotations

import os
import shutil
import ssl
import tempfile
import typing
from collections.abc import Callable, Iterator

import pytest
import trustme
from hypothesis import HealthCheck, settings
from tests._support.modes import Mode
from tests._support.scripted_server import ScriptedServer, Step
from tests._support.smtpd import SmtpdServer, start_smtpd

from mailsdk.transport import TlsSettings

# mailsdk's own test kit (opt-in for users; mailsdk's suite opts in) and pytest's pytester,
# which runs the kit's documented pytest examples.
pytest_plugins = ["mailsdk.testing.pytest_plugin", "pytester"]

# Hypothesis profiles (docs/architecture.md, "Decisions"): CI is deterministic and has no per-example deadline (a
# loaded 2-core machine must not turn slowness into failures); "dev" explores new examples.
settings.register_profile(
    "ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

#: Environment variables that could change TLS or proxy behaviour under a test's feet.
_ENV_VARS = (
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "SSLKEYLOGFILE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "SOCKS_PROXY",
    "socks_proxy",
)


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove proxy and CA-bundle variables (httpx's ``clean_environ``)."""
    for name in _ENV_VARS:
        monkeypatch.delenv(name, raising=False)


# -- TLS -------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """The CA every test server certificate is issued by."""
    return trustme.CA()


@pytest.fixture(scope="session")
def untrusted_ca() -> trustme.CA:
    """A CA the client is never told about."""
    return trustme.CA()


@pytest.fixture(scope="session")
def server_ssl_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    """Server-side context with a cert for localhost / 127.0.0.1 / ::1."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("localhost", "127.0.0.1", "::1").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="session")
def untrusted_ssl_context(untrusted_ca: trustme.CA) -> ssl.SSLContext:
    """Server-side context whose certificate chains to an unknown CA."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    untrusted_ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="session")
def wrong_name_ssl_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    """Server-side context with a trusted certificate for another host name."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("mail.other.example").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="session")
def client_tls(tls_ca: trustme.CA) -> TlsSettings:
    """Client TLS settings trusting :func:`tls_ca` (verification stays on)."""
    return TlsSettings(ca_data=tls_ca.cert_pem.bytes().decode("ascii"))


# -- servers ---------------------------------------------------------------------------------------


@pytest.fixture
def smtpd_factory() -> Iterator[Callable[..., SmtpdServer]]:
    """Start aiosmtpd servers (see :func:`tests._support.smtpd.start_smtpd`); all stopped at the end.

    ``unix=True`` puts the server on a unix socket in a fresh short temporary directory
    (``AF_UNIX`` paths are limited to about 100 bytes, too short for pytest's ``tmp_path``).
    """
    servers: list[SmtpdServer] = []
    directories: list[str] = []

    def make(**options: typing.Any) -> SmtpdServer:
        if options.pop("unix", False):
            directories.append(tempfile.mkdtemp(prefix="msd"))
            options["unix_path"] = os.path.join(directories[-1], "s")
        server = start_smtpd(**options)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
    for directory in directories:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def smtpd(smtpd_factory: Callable[..., SmtpdServer]) -> SmtpdServer:
    """A plain aiosmtpd server on 127.0.0.1 (no TLS, no AUTH, SMTPUTF8 on)."""
    return smtpd_factory()


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedServer]]:
    """Start scripted one-connection servers; each is stopped (and its errors re-raised) at the end."""
    servers: list[ScriptedServer] = []

    def make(steps: typing.Sequence[Step], **options: typing.Any) -> ScriptedServer:
        server = ScriptedServer(steps, **options)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> Mode:
    """Run the test once with the blocking client and once with the asyncio client."""
    return Mode(request.param)
