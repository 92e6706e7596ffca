"""Greeting → EHLO/LHLO → HELO fallback → Capabilities; and the STARTTLS policy.

Layer: L3 flows (sans-IO). May import ``mailsdk.protocol``, ``mailsdk.esmtp`` and L0. Must never
import transport, telemetry or client, nor any I/O module of the standard library.

Wire (ESMTP with STARTTLS)::

    S: 220 mx.example.com ESMTP
    C: EHLO client.example.org
    S: 250-mx.example.com
    S: 250 STARTTLS
    C: STARTTLS
    S: 220 2.0.0 Ready to start TLS
    (TLS handshake; every pre-TLS capability is forgotten, RFC 3207 §4.2)
    C: EHLO client.example.org
    S: 250-mx.example.com
    S: 250 AUTH PLAIN LOGIN
"""

from __future__ import annotations

import enum
from collections.abc import Generator

from mailsdk.errors import CapabilityError, GreetingRefused, HeloRefused, StartTLSRefused
from mailsdk.esmtp import Capabilities, ExtensionRegistry, parse_ehlo
from mailsdk.flows.actions import Action, TlsInfo, await_greeting, start_tls, submit_one
from mailsdk.protocol.commands import Ehlo, Helo, Lhlo, StartTls
from mailsdk.protocol.dialect import Dialect

__all__ = ["TlsMode", "greet", "hello", "negotiate_tls"]


class TlsMode(enum.Enum):
    """How the client protects the connection.

    * ``IMPLICIT``: TLS from the first byte (port 465, RFC 8314).
    * ``STARTTLS``: STARTTLS is required; the client stops before AUTH or MAIL if it is not
      offered or fails.
    * ``OPPORTUNISTIC``: STARTTLS when offered, plaintext otherwise.
    * ``NONE``: never TLS.
    """

    IMPLICIT = "implicit"
    STARTTLS = "starttls"
    OPPORTUNISTIC = "opportunistic"
    NONE = "none"


def greet() -> Generator[Action, object, None]:
    """Read the greeting; anything but 220 raises :class:`GreetingRefused` (RFC 5321 §3.1)."""
    reply = yield from await_greeting()
    if reply.code != 220:
        raise GreetingRefused(reply, None, f"server refused the session: {reply.code} {reply.text}")


def hello(
    local_hostname: str,
    *,
    dialect: Dialect = Dialect.SMTP,
    registry: ExtensionRegistry | None = None,
) -> Generator[Action, object, Capabilities]:
    """Send EHLO (LHLO for LMTP), falling back to HELO when EHLO is refused (RFC 5321 §4.1.1.1).

    Raises:
        HeloRefused: LHLO, or both EHLO and HELO, were refused (or the server said 421).
    """
    if dialect is Dialect.LMTP:
        reply = yield from submit_one(Lhlo(local_hostname))
        if not reply.is_positive:
            raise HeloRefused(reply, "LHLO")
        return parse_ehlo(reply, registry)
    reply = yield from submit_one(Ehlo(local_hostname))
    if reply.is_positive:
        return parse_ehlo(reply, registry)
    if reply.code == 421:
        raise HeloRefused(reply, "EHLO")
    helo = yield from submit_one(Helo(local_hostname))
    if not helo.is_positive:
        raise HeloRefused(helo, "HELO")
    return Capabilities.from_helo(helo)


def negotiate_tls(
    capabilities: Capabilities,
    mode: TlsMode,
    local_hostname: str,
    *,
    dialect: Dialect = Dialect.SMTP,
    registry: ExtensionRegistry | None = None,
) -> Generator[Action, object, tuple[Capabilities, TlsInfo | None]]:
    """Apply the STARTTLS policy; returns the (re-negotiated) capabilities and the TLS details.

    Raises:
        CapabilityError: ``STARTTLS`` mode and the server does not offer it.
        StartTLSRefused: ``STARTTLS`` mode and the server refused it.
    """
    if mode in (TlsMode.NONE, TlsMode.IMPLICIT):
        return capabilities, None
    if not capabilities.starttls:
        if mode is TlsMode.STARTTLS:
            raise CapabilityError(
                "STARTTLS is required but the server does not offer it; "
                "nothing (credentials or mail) was sent over the plaintext link",
                extension="STARTTLS",
            )
        return capabilities, None
    reply = yield from submit_one(StartTls())
    if reply.code != 220:
        if mode is TlsMode.STARTTLS or reply.code == 421:
            raise StartTLSRefused(reply, "STARTTLS")
        return capabilities, None
    info = yield from start_tls()
    # RFC 3207 §4.2: forget everything learnt before TLS and ask again.
    caps = yield from hello(local_hostname, dialect=dialect, registry=registry)
    return caps, info
