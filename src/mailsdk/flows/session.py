"""Opening a session: greeting, EHLO/LHLO, the STARTTLS policy, AUTH.

Layer: L3 flows (sans-IO). May import ``mailsdk.protocol``, ``mailsdk.esmtp``, ``mailsdk.auth``
and L0. Must never import transport, telemetry or client.
"""

from __future__ import annotations

from collections.abc import Generator

import attrs

from mailsdk.auth import ChannelBinding, MechanismRegistry
from mailsdk.errors import CapabilityError
from mailsdk.esmtp import Capabilities, ExtensionRegistry
from mailsdk.flows.actions import Action, TlsInfo
from mailsdk.flows.authenticate import AuthRequest, authenticate
from mailsdk.flows.handshake import TlsMode, greet, hello, negotiate_tls
from mailsdk.protocol.dialect import Dialect

__all__ = ["OpenedSession", "SessionPlan", "channel_binding_of", "open_session"]


@attrs.frozen(kw_only=True)
class SessionPlan:
    """Everything the opening flow needs to know (built by the client from its config)."""

    local_hostname: str
    host: str
    port: int
    dialect: Dialect = Dialect.SMTP
    tls_mode: TlsMode = TlsMode.STARTTLS
    auth: AuthRequest | None = None
    esmtp_registry: ExtensionRegistry | None = None
    sasl_registry: MechanismRegistry | None = None


@attrs.frozen
class OpenedSession:
    """What the opening flow learnt."""

    capabilities: Capabilities
    tls: TlsInfo | None
    mechanism: str | None


def channel_binding_of(info: TlsInfo | None) -> ChannelBinding | None:
    """The SASL channel binding for a TLS session, if the transport exposed one."""
    if info is None or info.channel_binding is None:
        return None
    kind, data = info.channel_binding
    return ChannelBinding(kind, data)


def open_session(
    plan: SessionPlan, *, implicit_tls: TlsInfo | None = None
) -> Generator[Action, object, OpenedSession]:
    """Greet, negotiate, upgrade and authenticate according to ``plan``.

    Args:
        plan: the session plan.
        implicit_tls: the TLS details when the stream is already TLS (port 465).

    Raises:
        GreetingRefused, HeloRefused, StartTLSRefused, CapabilityError, AuthError,
        AuthenticationFailed: see the individual flows.
    """
    yield from greet()
    caps = yield from hello(plan.local_hostname, dialect=plan.dialect, registry=plan.esmtp_registry)
    tls = implicit_tls
    if implicit_tls is None:
        caps, tls = yield from negotiate_tls(
            caps,
            plan.tls_mode,
            plan.local_hostname,
            dialect=plan.dialect,
            registry=plan.esmtp_registry,
        )
    mechanism = None
    if plan.auth is not None:
        if plan.tls_mode is TlsMode.STARTTLS and tls is None:
            raise CapabilityError("refusing to authenticate: TLS is required but not active")
        mechanism = yield from authenticate(
            plan.auth,
            caps,
            plan.sasl_registry or MechanismRegistry.default(),
            host=plan.host,
            port=plan.port,
            tls_active=tls is not None,
            channel_binding=channel_binding_of(tls),
        )
    return OpenedSession(caps, tls, mechanism)
