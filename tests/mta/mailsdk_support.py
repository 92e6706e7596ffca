"""Helpers for the mailsdk-against-Postfix/Dovecot tests: builders, wire-log reader, token providers.

Layer: tests (not collected). Imports mailsdk, ``tests._support.mta`` and the shared sync|async
runner ``tests._support.modes``. Every ``test_mailsdk_*.py`` module runs each test in both modes
through the top-level ``mode`` fixture (``tests/conftest.py``): ``sync`` calls the blocking
:class:`mailsdk.Client`, ``async`` awaits the :class:`mailsdk.AsyncClient`.

The wire log (logger ``mailsdk.wire`` at DEBUG) is how the tests check what the client put on
the wire: which MAIL/RCPT parameters, how many BDAT chunks, whether commands were pipelined,
and that no secret was ever logged.
"""

from __future__ import annotations

import logging
import threading

import pytest
from tests._support.mta import MtaEnvironment

from mailsdk import ClientBuilder, TlsSettings
from mailsdk.auth.tokens import AccessToken

__all__ = [
    "ALL_MECHANISMS",
    "CLIENT_NAME",
    "RELAY_RECIPIENT",
    "SENDER",
    "TIMEOUT",
    "TRICKY_BODY",
    "CountingTokenProvider",
    "ca_settings",
    "enable_wire_log",
    "lmtp_builder",
    "smtp_builder",
    "wire_lines",
]

#: Deadline for every phase: generous for a loaded CI box, still far below pytest-timeout.
TIMEOUT = 10.0
#: The EHLO/LHLO name (never let the client look up the FQDN).
CLIENT_NAME = "client.test"
SENDER = "sender@client.test"
#: Another domain: Postfix relays (and discards) it only for authenticated clients.
RELAY_RECIPIENT = "someone@elsewhere.test"
ALL_MECHANISMS = (
    "PLAIN",
    "LOGIN",
    "CRAM-MD5",
    "SCRAM-SHA-1",
    "SCRAM-SHA-256",
    "XOAUTH2",
    "OAUTHBEARER",
)
#: Catches dot-stuffing, 8-bit and line-ending mistakes on the way to the Maildir.
TRICKY_BODY = (
    b"First line.\r\n"
    b".A line starting with a dot\r\n"
    b"..two dots\r\n"
    b".\r\n"
    b". dot space\r\n"
    b"8-bit: caf\xc3\xa9 \xe2\x9c\x93\r\n"
    b"\r\n"
    b"Trailing spaces   \r\n"
    b".\r\n"
)


def ca_settings(env: MtaEnvironment) -> TlsSettings:
    """TLS settings trusting only the suite's CA (verification and host name checks on)."""
    return TlsSettings(ca_file=env.ca_file)


def smtp_builder(
    env: MtaEnvironment,
    tls: str = "starttls",
    *,
    port: int | None = None,
    settings: TlsSettings | None = None,
) -> ClientBuilder:
    """A builder for Postfix: ``smtp_port`` (or ``smtps_port`` for implicit TLS), test CA.

    Args:
        env: the running servers.
        tls: the TLS mode (``"starttls"``, ``"implicit"``, ``"opportunistic"``, ``"none"``).
        port: overrides the port chosen from the mode.
        settings: overrides the TLS settings (default: trust the test CA).

    Returns:
        The builder, with short deadlines and a fixed EHLO name.
    """
    if port is None:
        port = env.smtps_port if tls == "implicit" else env.smtp_port
    return (
        ClientBuilder.smtp(env.host, port)
        .with_tls(tls, settings=settings or ca_settings(env))
        .with_timeouts(TIMEOUT)
        .with_local_hostname(CLIENT_NAME)
    )


def lmtp_builder(env: MtaEnvironment, transport: str) -> ClientBuilder:
    """A builder for Dovecot LMTP over ``"tcp"`` (``lmtp_port``) or ``"unix"`` (the socket)."""
    if transport == "tcp":
        base = ClientBuilder.smtp(env.host, env.lmtp_port).with_lmtp().with_tls("none")
    else:
        base = ClientBuilder.unix(str(env.lmtp_socket))
    return base.with_timeouts(TIMEOUT).with_local_hostname(CLIENT_NAME)


def wire_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The ``mailsdk.wire`` log lines captured so far (``"C: ..."`` and ``"S: ..."``)."""
    return [r.getMessage() for r in caplog.records if r.name == "mailsdk.wire"]


def enable_wire_log(caplog: pytest.LogCaptureFixture) -> None:
    """Capture the ``mailsdk.wire`` protocol log at DEBUG for the rest of the test."""
    caplog.set_level(logging.DEBUG, logger="mailsdk.wire")


class CountingTokenProvider:
    """A synchronous TokenProvider that records every call.

    Args:
        first: the token returned by the first call.
        refreshed: the token returned by every later call (the forced refresh after a 535).

    Attributes:
        calls: the ``force_refresh`` argument of each call, in order.
    """

    def __init__(self, first: str, refreshed: str) -> None:
        self._first = first
        self._refreshed = refreshed
        self._lock = threading.Lock()  # the async client calls it from a worker thread
        self.calls: list[bool] = []

    def get_token(self, *, force_refresh: bool = False) -> AccessToken:
        """Return ``first`` on the first call, ``refreshed`` afterwards."""
        with self._lock:
            self.calls.append(force_refresh)
            token = self._first if len(self.calls) == 1 else self._refreshed
        return AccessToken(token)
