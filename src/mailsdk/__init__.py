"""mailsdk: a typed, layered SMTP/ESMTP/LMTP client SDK.

Quick start::

    import mailsdk

    client = mailsdk.ClientBuilder.smtp("mail.example.com", 587).with_credentials(user, pw).build()
    with client.connect() as session:
        result = session.send_message(msg)
        print(result.accepted, result.refused)

The layers (see docs/architecture.md): ``mailsdk.protocol`` (sans-IO core), ``mailsdk.esmtp``
(extensions), ``mailsdk.auth`` (SASL, tokens), ``mailsdk.flows`` (sans-IO conversations),
``mailsdk.transport``, ``mailsdk.telemetry``, clients, builder, and ``mailsdk.compat.smtplib``.
"""

from __future__ import annotations

from mailsdk._secret import Secret
from mailsdk._version import __version__
from mailsdk.api import asend, send
from mailsdk.builder import ClientBuilder
from mailsdk.client import AsyncClient, AsyncLMTPClient, AsyncSession, Client, LMTPClient, Session
from mailsdk.config import AuthSettings, ClientConfig, Endpoint, Timeouts
from mailsdk.errors import (
    AuthenticationFailed,
    AuthError,
    CapabilityError,
    CommandRefused,
    ConfigurationError,
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    DataRefused,
    DeliveryUnknown,
    GreetingRefused,
    HeloRefused,
    InvalidInputError,
    LocalProtocolError,
    MailError,
    MailTimeout,
    PoolTimeout,
    ProtocolError,
    ProxyError,
    ProxyTimeout,
    ReadTimeout,
    RecipientsRefused,
    RemoteProtocolError,
    ReplyError,
    SenderRefused,
    StartTLSRefused,
    TLSError,
    TokenError,
    TransportError,
    WriteTimeout,
)
from mailsdk.esmtp import Capabilities, MailOptions, RcptOptions
from mailsdk.flows import DeliveryStatus, Outgoing, SendOutcome, SendResult, TlsMode
from mailsdk.protocol.reply import EnhancedStatus, Reply
from mailsdk.transport import TlsSettings

__all__ = [
    "AsyncClient",
    "AsyncLMTPClient",
    "AsyncSession",
    "AuthError",
    "AuthSettings",
    "AuthenticationFailed",
    "Capabilities",
    "CapabilityError",
    "Client",
    "ClientBuilder",
    "ClientConfig",
    "CommandRefused",
    "ConfigurationError",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionLost",
    "DataRefused",
    "DeliveryStatus",
    "DeliveryUnknown",
    "Endpoint",
    "EnhancedStatus",
    "GreetingRefused",
    "HeloRefused",
    "InvalidInputError",
    "LMTPClient",
    "LocalProtocolError",
    "MailError",
    "MailOptions",
    "MailTimeout",
    "Outgoing",
    "PoolTimeout",
    "ProtocolError",
    "ProxyError",
    "ProxyTimeout",
    "RcptOptions",
    "ReadTimeout",
    "RecipientsRefused",
    "RemoteProtocolError",
    "Reply",
    "ReplyError",
    "Secret",
    "SendOutcome",
    "SendResult",
    "SenderRefused",
    "Session",
    "StartTLSRefused",
    "TLSError",
    "Timeouts",
    "TlsMode",
    "TlsSettings",
    "TokenError",
    "TransportError",
    "WriteTimeout",
    "__version__",
    "asend",
    "send",
]
