"""Session set-up from a configuration: telemetry session, TLS context, the opening plan.

Layer: L5 client (private, pure: no I/O). May import L0-L4. Both facades call these to turn a
:class:`~mailsdk.config.ClientConfig` into what the flows and drivers need; the host-name lookup
(I/O) is in ``_hostname.py``, the connectors in ``_connectors.py``.
"""

from __future__ import annotations

import ssl
import typing
from collections.abc import Generator

from mailsdk.errors import MailTimeout, TLSError
from mailsdk.flows import (
    Action,
    AuthRequest,
    OpenedSession,
    SessionPlan,
    TlsInfo,
    TlsMode,
    open_session,
)
from mailsdk.transport import AsyncStream, Stream, StreamInfo

if typing.TYPE_CHECKING:
    from mailsdk.client._pump import Pump
    from mailsdk.config import AuthSettings, ClientConfig
    from mailsdk.telemetry import SessionObserver

__all__ = [
    "TlsContextCache",
    "auth_request",
    "explain_connect_failure",
    "open_flow",
    "peer_of",
    "plan_for",
    "port_hint",
    "report_opened",
    "session_observer",
    "tls_context",
    "tls_info_of",
]


def session_observer(config: ClientConfig) -> SessionObserver:
    """Start the telemetry session for ``config``'s endpoint."""
    ep = config.endpoint
    return config.instrumentation.session(
        server_address=ep.host if ep.host is not None else ep.path,
        server_port=config.port if ep.transport == "tcp" and ep.sock is None else None,
        transport=ep.transport,
        protocol=config.dialect.value.lower(),
    )


def tls_context(config: ClientConfig) -> ssl.SSLContext | None:
    """The SSL context for implicit TLS or STARTTLS, or ``None`` when TLS is off."""
    if config.tls_mode is TlsMode.NONE:
        return None
    return config.tls.create_context()


class TlsContextCache:
    """Builds a client's SSL context once (loading CA stores is costly) and shares it.

    ``ssl.SSLContext`` is safe to share between threads and connections once configured.
    """

    def __init__(self, config: ClientConfig) -> None:
        self._config = config
        self._context: ssl.SSLContext | None = None
        self._built = False

    def get(self) -> ssl.SSLContext | None:
        """The context for the config's TLS mode, or ``None`` when TLS is off."""
        if not self._built:
            self._context = tls_context(self._config)
            self._built = True
        return self._context


def tls_info_of(stream: Stream | AsyncStream) -> TlsInfo | None:
    """The :class:`TlsInfo` a driver reports for its stream, or ``None`` when plaintext."""
    if not stream.is_tls:
        return None
    binding = None
    for kind in ("tls-exporter", "tls-server-end-point"):
        data = stream.channel_binding(kind)
        if data is not None:
            binding = (kind, data)
            break
    info = stream.info
    return TlsInfo(version=info.tls_version, cipher=info.tls_cipher, channel_binding=binding)


def auth_request(settings: AuthSettings) -> AuthRequest:
    """Translate configured credentials into what the AUTH flow needs."""
    return AuthRequest(
        username=settings.username,
        password=settings.password,
        use_token=settings.token_provider is not None,
        authzid=settings.authzid,
        mechanisms=settings.mechanisms,
        allow_plaintext=settings.allow_plaintext,
    )


def plan_for(config: ClientConfig, local_hostname: str) -> SessionPlan:
    """Translate the config into the opening flow's plan (``local_hostname`` already resolved
    by the driver's side, see ``_hostname.py``)."""
    auth = auth_request(config.auth) if config.auth is not None else None
    return SessionPlan(
        local_hostname=local_hostname,
        host=config.verify_name or config.endpoint.describe(),
        port=config.port,
        dialect=config.dialect,
        tls_mode=config.tls_mode,
        auth=auth,
        esmtp_registry=config.esmtp_registry,
        sasl_registry=config.sasl_registry,
    )


def open_flow(
    config: ClientConfig, local_hostname: str, implicit: TlsInfo | None
) -> Generator[Action, object, OpenedSession]:
    """The opening flow for ``config`` (greeting, EHLO, STARTTLS policy, AUTH)."""
    return open_session(plan_for(config, local_hostname), implicit_tls=implicit)


def report_opened(pump: Pump, opened: OpenedSession, implicit: bool) -> None:
    """Apply what the opening flow negotiated to the connection, and tell telemetry."""
    observer = pump.observer
    pump.use_capabilities(opened.capabilities)
    if opened.tls is not None:
        observer.tls_established(
            version=opened.tls.version, cipher=opened.tls.cipher, implicit=implicit
        )
    observer.capabilities(opened.capabilities.keywords)
    if opened.mechanism is not None:
        observer.authenticated(opened.mechanism)


def peer_of(info: StreamInfo) -> dict[str, typing.Any]:
    """``peer_address``/``peer_port`` keyword arguments for the telemetry ``connected`` hook."""
    peer = info.peer_address
    if isinstance(peer, tuple) and len(peer) >= 2:
        return {"peer_address": str(peer[0]), "peer_port": int(peer[1])}
    return {"peer_address": str(peer) if peer else None, "peer_port": None}


#: Ports that by convention speak TLS from the first byte (RFC 8314 §3.3: submissions).
IMPLICIT_TLS_PORTS: typing.Final = frozenset({465})
#: Ports that by convention start in plaintext and upgrade with STARTTLS (or stay plain).
PLAINTEXT_FIRST_PORTS: typing.Final = frozenset({25, 587, 2525})


def port_hint(config: ClientConfig) -> str | None:
    """Why a greeting (or an implicit TLS handshake) may never come: the TLS mode does not
    match what the port conventionally speaks. ``None`` when they agree (or no TCP port)."""
    if config.endpoint.host is None or config.endpoint.sock is not None:
        return None
    port = config.port
    implicit = config.tls_mode is TlsMode.IMPLICIT
    if port in IMPLICIT_TLS_PORTS and not implicit:
        return (
            f"port {port} usually expects TLS from the first byte and stays silent for a "
            "plaintext client: use with_tls('implicit')"
        )
    if port in PLAINTEXT_FIRST_PORTS and implicit:
        return (
            f"port {port} usually starts in plaintext (STARTTLS), not with a TLS handshake: "
            "use with_tls('starttls')"
        )
    return None


def explain_connect_failure(error: BaseException, config: ClientConfig) -> BaseException:
    """``error`` from connecting, with the port hint added when the TLS mode does not match
    the port (an implicit TLS handshake against a plaintext-first port fails or hangs)."""
    hint = port_hint(config)
    if hint is None or config.tls_mode is not TlsMode.IMPLICIT:
        return error
    if isinstance(error, MailTimeout):
        return type(error)(str(error), phase=error.phase, hint=hint)
    if isinstance(error, TLSError):
        return TLSError(f"{error} (hint: {hint})")
    return error
