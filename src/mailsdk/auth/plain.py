"""The PLAIN SASL mechanism (RFC 4616): authzid NUL authcid NUL password in one message.

Layer: L2 (auth, pure). May import ``mailsdk.errors``, ``mailsdk._secret`` and sibling pure auth
modules. Must never import ``mailsdk.protocol``/``esmtp``/``flows`` or any I/O module.
"""

from __future__ import annotations

import typing

import attrs

from mailsdk.auth._saslprep import saslprep
from mailsdk.auth.base import BaseExchange, CredentialKind, SaslContext, SaslCredentials
from mailsdk.errors import AuthError

__all__ = ["PlainExchange", "PlainMechanism", "encode_plain"]


def encode_plain(credentials: SaslCredentials) -> bytes:
    """Build the RFC 4616 §2 message ``[authzid] NUL authcid NUL passwd`` (UTF-8).

    The authentication identity and the password are prepared with SASLprep (RFC 4013, query
    semantics as the client-side preparation in RFC 4616 §2); the authzid is sent as given.

    Args:
        credentials: the username, password and optional authzid.

    Returns:
        The raw message (not base64).

    Raises:
        AuthError: SASLprep failed, the username or password is empty, or a field contains NUL.
    """
    authcid = saslprep(credentials.username, allow_unassigned=True, what="username")
    passwd = saslprep(credentials.secret.reveal(), allow_unassigned=True, what="password")
    authzid = credentials.authzid or ""
    if not authcid:
        raise AuthError("PLAIN: the username is empty (RFC 4616 §2)")
    if not passwd:
        raise AuthError("PLAIN: the password is empty (RFC 4616 §2)")
    # RFC 4616 §2: UTF8SAFE excludes NUL, which separates the fields. SASLprep already prohibits
    # NUL in authcid/passwd (table C.2.1); the authzid is checked here.
    if "\x00" in authzid:
        raise AuthError("PLAIN: the authorization identity contains NUL (RFC 4616 §2)")
    return b"\x00".join(part.encode("utf-8") for part in (authzid, authcid, passwd))


class PlainExchange(BaseExchange):
    """One PLAIN exchange: a single message, sent as the initial response or after an empty 334."""

    def __init__(self, credentials: SaslCredentials) -> None:
        super().__init__("PLAIN")
        self._credentials = credentials
        # Encode up front so SASLprep failures surface from start(), before any command is sent.
        encode_plain(credentials)
        self._sent = False

    def initial_response(self) -> bytes | None:
        """Return the PLAIN message (RFC 4616 §2)."""
        if self._sent:
            raise AuthError("PLAIN: the initial response was already produced")
        self._sent = True
        return encode_plain(self._credentials)

    def _step(self, challenge: bytes) -> bytes:
        # RFC 4422 §5: without an initial response the server sends an empty challenge first.
        if self._sent:
            raise self._unexpected()
        if challenge:
            raise AuthError("PLAIN: expected an empty challenge (RFC 4616 §2)")
        self._sent = True
        return encode_plain(self._credentials)


@attrs.frozen
class PlainMechanism:
    """PLAIN (RFC 4616). Sends the password itself: only over TLS.

    Wire (SMTP, RFC 4954; payloads base64 on the wire, decoded here)::

        C: AUTH PLAIN \\0user\\0pencil
        S: 235 2.7.0 Authentication successful

    or without an initial response::

        C: AUTH PLAIN
        S: 334
        C: \\0user\\0pencil
        S: 235 2.7.0 Authentication successful
    """

    name: typing.ClassVar[str] = "PLAIN"
    credential_kind: typing.ClassVar[CredentialKind] = CredentialKind.PASSWORD
    sends_reusable_secret: typing.ClassVar[bool] = True
    supports_initial_response: typing.ClassVar[bool] = True

    def start(self, credentials: SaslCredentials, context: SaslContext) -> PlainExchange:
        """Begin a PLAIN exchange.

        Args:
            credentials: username, password and optional authzid.
            context: unused by PLAIN.

        Returns:
            The exchange.

        Raises:
            AuthError: the credentials cannot be encoded (SASLprep, empty fields, NUL).
        """
        return PlainExchange(credentials)
