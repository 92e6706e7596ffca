"""SASL authentication for mailsdk: mechanisms, their registry, credentials and token providers.

Layer: L2 (auth). The mechanism modules are pure (L0 imports only, sans-IO, reusable by any SASL
protocol, RFC 4422); ``tokens``/``msal``/``google`` are the I/O edges. This package never imports
``mailsdk.protocol``, ``esmtp``, ``flows`` or ``transport``.

Everything in ``__all__`` is public API.
"""

from __future__ import annotations

from mailsdk.auth._saslprep import saslprep
from mailsdk.auth.base import (
    MAX_ROUNDS,
    BaseExchange,
    ChannelBinding,
    CredentialKind,
    Mechanism,
    SaslContext,
    SaslCredentials,
    SaslExchange,
)
from mailsdk.auth.cram_md5 import CramMD5Mechanism
from mailsdk.auth.login import LoginMechanism
from mailsdk.auth.oauth import OAuthBearerMechanism, XOAuth2Mechanism
from mailsdk.auth.plain import PlainMechanism
from mailsdk.auth.registry import (
    DEFAULT_PASSWORD_PREFERENCE,
    DEFAULT_TOKEN_PREFERENCE,
    ENTRY_POINT_GROUP,
    MechanismRegistry,
    requires_channel_binding,
)
from mailsdk.auth.scram import ScramMechanism
from mailsdk.auth.tokens import (
    AccessToken,
    AsyncCachingTokenProvider,
    AsyncTokenProvider,
    CachingTokenProvider,
    StaticTokenProvider,
    TokenProvider,
)

__all__ = [
    "DEFAULT_PASSWORD_PREFERENCE",
    "DEFAULT_TOKEN_PREFERENCE",
    "ENTRY_POINT_GROUP",
    "MAX_ROUNDS",
    "AccessToken",
    "AsyncCachingTokenProvider",
    "AsyncTokenProvider",
    "BaseExchange",
    "CachingTokenProvider",
    "ChannelBinding",
    "CramMD5Mechanism",
    "CredentialKind",
    "LoginMechanism",
    "Mechanism",
    "MechanismRegistry",
    "OAuthBearerMechanism",
    "PlainMechanism",
    "SaslContext",
    "SaslCredentials",
    "SaslExchange",
    "ScramMechanism",
    "StaticTokenProvider",
    "TokenProvider",
    "XOAuth2Mechanism",
    "requires_channel_binding",
    "saslprep",
]
