"""The CRAM-MD5 SASL mechanism (RFC 2195): HMAC-MD5 of the server's challenge.

Layer: L2 (auth, pure). May import ``mailsdk.errors``, ``mailsdk._secret``, ``hmac``/``hashlib``
and sibling pure auth modules. Must never import ``mailsdk.protocol``/``esmtp``/``flows`` or I/O.

Registered but never in the default preference: MD5 is weak, the server must store the password
in the clear, and RFC 6331's reasoning for DIGEST-MD5 applies. Use it only when asked for.
"""

from __future__ import annotations

import hashlib
import hmac
import typing

import attrs

from mailsdk.auth.base import (
    BaseExchange,
    CredentialKind,
    SaslContext,
    SaslCredentials,
    check_encodable,
)
from mailsdk.errors import AuthError

__all__ = ["CramMD5Exchange", "CramMD5Mechanism", "cram_md5_response"]


def cram_md5_response(username: str, password: str, challenge: bytes) -> bytes:
    """Compute the RFC 2195 §2 response ``username SP hex(HMAC-MD5(password, challenge))``.

    Args:
        username: the user name.
        password: the shared secret.
        challenge: the raw (decoded) server challenge.

    Returns:
        The raw response (not base64).
    """
    digest = hmac.new(password.encode("utf-8"), challenge, hashlib.md5).hexdigest()
    return f"{username} {digest}".encode()


class CramMD5Exchange(BaseExchange):
    """One CRAM-MD5 exchange: exactly one challenge, one response."""

    def __init__(self, credentials: SaslCredentials) -> None:
        super().__init__("CRAM-MD5")
        if not credentials.username or " " in credentials.username:
            raise AuthError("CRAM-MD5: the username must be non-empty and contain no space")
        check_encodable("CRAM-MD5", "username", credentials.username)
        check_encodable("CRAM-MD5", "password", credentials.secret.reveal())
        self._credentials = credentials
        self._answered = False

    def _step(self, challenge: bytes) -> bytes:
        if self._answered:
            raise self._unexpected()
        # RFC 2195 §2: the challenge is a msg-id "<...>"; an empty one would be replayable.
        if not challenge:
            raise AuthError("CRAM-MD5: the server sent an empty challenge (RFC 2195 §2)")
        self._answered = True
        return cram_md5_response(
            self._credentials.username, self._credentials.secret.reveal(), challenge
        )


@attrs.frozen
class CramMD5Mechanism:
    """CRAM-MD5 (RFC 2195). The password never travels, but MD5 is weak; off by default.

    Wire (SMTP; payloads base64 on the wire, decoded here; RFC 2195 §2 example)::

        C: AUTH CRAM-MD5
        S: 334 <1896.697170952@postoffice.reston.mci.net>
        C: tim b913a602c7eda7a495b4e6e7334d3890
        S: 235 2.7.0 Authentication successful
    """

    name: typing.ClassVar[str] = "CRAM-MD5"
    credential_kind: typing.ClassVar[CredentialKind] = CredentialKind.PASSWORD
    sends_reusable_secret: typing.ClassVar[bool] = False
    supports_initial_response: typing.ClassVar[bool] = False

    def start(self, credentials: SaslCredentials, context: SaslContext) -> CramMD5Exchange:
        """Begin a CRAM-MD5 exchange.

        Args:
            credentials: username and password.
            context: unused by CRAM-MD5.

        Returns:
            The exchange.

        Raises:
            AuthError: the username is empty or contains a space.
        """
        return CramMD5Exchange(credentials)
