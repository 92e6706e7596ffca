"""The OAuth 2.0 SASL mechanisms: XOAUTH2 (Google/Microsoft) and OAUTHBEARER (RFC 7628).

Layer: L2 (auth, pure). May import ``mailsdk.errors``, ``mailsdk._secret``, ``json`` and sibling
pure auth modules. Must never import ``mailsdk.protocol``/``esmtp``/``flows``, any I/O module or
msal: the access token arrives ready in :class:`~mailsdk.auth.SaslCredentials`; obtaining and
refreshing it is the flow's job (``ObtainToken``) and the token providers'.
"""

from __future__ import annotations

import json
import typing

import attrs

from mailsdk._secret import Secret
from mailsdk.auth.base import (
    BaseExchange,
    CredentialKind,
    SaslContext,
    SaslCredentials,
    check_encodable,
)
from mailsdk.errors import AuthError

if typing.TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "OAuthBearerExchange",
    "OAuthBearerMechanism",
    "XOAuth2Exchange",
    "XOAuth2Mechanism",
    "encode_oauthbearer",
    "encode_xoauth2",
    "parse_error_challenge",
]

_KVSEP: typing.Final = "\x01"
_MAX_ERROR_JSON: typing.Final = 16384


def _check_value(mechanism: str, what: str, value: str) -> None:
    # RFC 7628 §3.1: value = *(VCHAR / SP / HTAB / CR / LF); %x01 separates key/value pairs, so
    # any control character would let a field forge extra pairs (injection).
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise AuthError(f"{mechanism}: the {what} contains a control character")
    check_encodable(mechanism, what, value)


def _check_token(mechanism: str, token: str) -> None:
    # RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    if not token:
        raise AuthError(f"{mechanism}: the access token is empty")
    if any(ord(c) <= 0x20 or ord(c) >= 0x7F for c in token):
        raise AuthError(f"{mechanism}: the access token contains whitespace or non-ASCII")


def _saslname(name: str) -> str:
    """RFC 5801 §4 saslname: ``=`` → ``=3D``, ``,`` → ``=2C``."""
    return name.replace("=", "=3D").replace(",", "=2C")


def encode_xoauth2(credentials: SaslCredentials) -> bytes:
    """Build ``user={user}^Aauth=Bearer {token}^A^A`` (Google's and Microsoft's XOAUTH2).

    Args:
        credentials: the mailbox user and the access token.

    Returns:
        The raw initial response (not base64).

    Raises:
        AuthError: the user or token is empty or contains control characters.
    """
    token = credentials.secret.reveal()
    if not credentials.username:
        raise AuthError("XOAUTH2: the username is empty")
    _check_value("XOAUTH2", "username", credentials.username)
    _check_token("XOAUTH2", token)
    return f"user={credentials.username}\x01auth=Bearer {token}\x01\x01".encode()


def encode_oauthbearer(credentials: SaslCredentials, context: SaslContext) -> bytes:
    """Build the RFC 7628 §3.1 client response.

    ``n,a={authzid},^Ahost={host}^Aport={port}^Aauth=Bearer {token}^A^A``: a GS2 header without
    channel binding (RFC 5801 §4) naming the user, then the key/value pairs.

    Args:
        credentials: the user (sent as ``a=``; ``authzid`` wins when set) and the access token.
        context: host and port of the server (RFC 7628 §3.1 ``host``/``port`` keys).

    Returns:
        The raw initial response (not base64).

    Raises:
        AuthError: a field is empty or contains control characters.
    """
    token = credentials.secret.reveal()
    user = credentials.authzid or credentials.username
    _check_value("OAUTHBEARER", "username", user)
    _check_value("OAUTHBEARER", "host", context.host)
    _check_token("OAUTHBEARER", token)
    gs2 = f"n,a={_saslname(user)}," if user else "n,,"
    pairs: list[str] = []
    if context.host:
        pairs.append(f"host={context.host}")
    if context.port:
        pairs.append(f"port={int(context.port)}")
    pairs.append(f"auth=Bearer {token}")
    return (gs2 + "".join(_KVSEP + p for p in pairs) + _KVSEP + _KVSEP).encode("utf-8")


def parse_error_challenge(mechanism: str, challenge: bytes, token: str) -> dict[str, object]:
    """Decode the JSON error object of an OAuth error challenge (RFC 7628 §3.2.2).

    Args:
        mechanism: mechanism name for error messages.
        challenge: the raw (already base64-decoded) challenge.
        token: the token that was sent; any echo of it in the JSON is redacted, so a hostile
            server cannot smuggle it into ``AuthenticationFailed.server_error``.

    Returns:
        The JSON object (``status``, ``scope``, ``schemes``, ``openid-configuration``...).

    Raises:
        AuthError: the challenge is not a UTF-8 JSON object of reasonable size.
    """
    if len(challenge) > _MAX_ERROR_JSON:
        raise AuthError(f"{mechanism}: error challenge larger than {_MAX_ERROR_JSON} bytes")
    try:
        value = json.loads(challenge.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise AuthError(f"{mechanism}: the server's error challenge is not JSON") from None
    if not isinstance(value, dict):
        raise AuthError(f"{mechanism}: the server's error challenge is not a JSON object")
    # Redact after decoding: JSON escapes ("\/", "\u0061") would hide the token from a search
    # in the raw text.
    decoded = typing.cast("dict[str, object]", value)  # a JSON object: str keys
    redacted = typing.cast("dict[str, object]", _redact(decoded, token)) if token else decoded
    return {str(k): v for k, v in redacted.items()}


def _redact(value: typing.Any, token: str) -> typing.Any:
    """Replace ``token`` in every string of a decoded JSON value (keys included)."""
    if isinstance(value, str):
        return value.replace(token, "***")
    if isinstance(value, list):
        items = typing.cast("list[object]", value)
        return [_redact(item, token) for item in items]
    if isinstance(value, dict):
        pairs = typing.cast("dict[object, object]", value)
        return {_redact(k, token): _redact(v, token) for k, v in pairs.items()}
    return value


class _OAuthExchange(BaseExchange):
    """Shared logic: one message, then at most one error challenge answered with a dummy."""

    #: what the client answers to an error challenge
    _error_reply: typing.ClassVar[bytes] = b""

    def __init__(self, mechanism: str, message: bytes, token: str) -> None:
        super().__init__(mechanism)
        # Both hold the token: kept as Secrets so vars()/__dict__ of the exchange never show it.
        self._message = Secret(message.decode("utf-8", "surrogateescape"))
        self._token = Secret(token)
        self._sent = False
        self._error_seen = False

    def initial_response(self) -> bytes | None:
        """Return the client message (the token goes with the AUTH command)."""
        if self._sent:
            raise AuthError(f"{self.mechanism}: the initial response was already produced")
        self._sent = True
        return self._message.reveal().encode("utf-8", "surrogateescape")

    def _step(self, challenge: bytes) -> bytes:
        if not self._sent:
            # No initial response was used: RFC 4422 §5, the server opens with an empty challenge.
            if challenge:
                raise AuthError(f"{self.mechanism}: expected an empty first challenge")
            self._sent = True
            return self._message.reveal().encode("utf-8", "surrogateescape")
        if self._error_seen:
            raise self._unexpected()
        # Any challenge after the token is the error challenge (RFC 7628 §3.2.2): capture the
        # JSON, send the dummy reply, and the server then fails the exchange with 535/334.
        self._error_seen = True
        self._server_error = parse_error_challenge(self.mechanism, challenge, self._token.reveal())
        return self._error_reply

    @property
    def server_error(self) -> Mapping[str, object] | None:
        """The decoded error JSON, after an error challenge."""
        return self._server_error


class XOAuth2Exchange(_OAuthExchange):
    """One XOAUTH2 exchange; the error challenge is answered with an empty response."""

    _error_reply: typing.ClassVar[bytes] = b""


class OAuthBearerExchange(_OAuthExchange):
    """One OAUTHBEARER exchange; the error challenge is answered with ``%x01`` (RFC 7628 §3.2.3)."""

    _error_reply: typing.ClassVar[bytes] = b"\x01"


@attrs.frozen
class XOAuth2Mechanism:
    """XOAUTH2, the pre-RFC 7628 bearer mechanism spoken by Gmail and Office 365.

    Wire (SMTP; payloads base64 on the wire, decoded here; ``^A`` is ``\\x01``)::

        C: AUTH XOAUTH2 user=someone@example.com^Aauth=Bearer ya29.vF9dft4q^A^A
        S: 235 2.7.0 Accepted

    with an expired token (Gmail)::

        C: AUTH XOAUTH2 user=someone@example.com^Aauth=Bearer ya29.vF9dft4q^A^A
        S: 334 {"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}
        C:                            (empty response)
        S: 535 5.7.8 Username and Password not accepted
    """

    name: typing.ClassVar[str] = "XOAUTH2"
    credential_kind: typing.ClassVar[CredentialKind] = CredentialKind.TOKEN
    sends_reusable_secret: typing.ClassVar[bool] = True
    supports_initial_response: typing.ClassVar[bool] = True

    def start(self, credentials: SaslCredentials, context: SaslContext) -> XOAuth2Exchange:
        """Begin an XOAUTH2 exchange.

        Args:
            credentials: the mailbox user and the access token as ``secret``.
            context: unused by XOAUTH2.

        Returns:
            The exchange.

        Raises:
            AuthError: the user or token is malformed.
        """
        message = encode_xoauth2(credentials)
        return XOAuth2Exchange(self.name, message, credentials.secret.reveal())


@attrs.frozen
class OAuthBearerMechanism:
    """OAUTHBEARER (RFC 7628).

    Wire (RFC 7628 §4.1 and §4.3, SMTP framing; payloads base64 on the wire, decoded here)::

        C: AUTH OAUTHBEARER n,a=user@example.com,^Ahost=server.example.com^Aport=587^A
           auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==^A^A
        S: 235 Authentication successful.

    with an invalid token::

        C: AUTH OAUTHBEARER n,a=user@example.com,^Ahost=...^Aauth=Bearer ...^A^A
        S: 334 {"status":"invalid_token","scope":"example_scope",
                "openid-configuration":"https://example.com/.well-known/openid-configuration"}
        C: ^A
        S: 535 5.7.8 Authentication credentials invalid
    """

    name: typing.ClassVar[str] = "OAUTHBEARER"
    credential_kind: typing.ClassVar[CredentialKind] = CredentialKind.TOKEN
    sends_reusable_secret: typing.ClassVar[bool] = True
    supports_initial_response: typing.ClassVar[bool] = True

    def start(self, credentials: SaslCredentials, context: SaslContext) -> OAuthBearerExchange:
        """Begin an OAUTHBEARER exchange.

        Args:
            credentials: the user and the access token as ``secret``.
            context: the server host and port, sent in the message.

        Returns:
            The exchange.

        Raises:
            AuthError: a field is malformed.
        """
        message = encode_oauthbearer(credentials, context)
        return OAuthBearerExchange(self.name, message, credentials.secret.reveal())
