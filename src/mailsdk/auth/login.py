"""The LOGIN SASL mechanism (draft-murchison-sasl-login): username, then password.

Layer: L2 (auth, pure). May import ``mailsdk.errors``, ``mailsdk._secret`` and sibling pure auth
modules. Must never import ``mailsdk.protocol``/``esmtp``/``flows`` or any I/O module.
"""

from __future__ import annotations

import enum
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

__all__ = ["LoginExchange", "LoginMechanism"]


class _Step(enum.Enum):
    USERNAME = enum.auto()
    PASSWORD = enum.auto()
    DONE = enum.auto()


def _prompt_kind(challenge: bytes) -> _Step | None:
    """Recognise the usual prompts ("Username:", "User Name", "Password:"); None if unknown."""
    text = challenge.decode("latin-1").strip().lower()
    if text.startswith("pass"):
        return _Step.PASSWORD
    if text.startswith("user"):
        return _Step.USERNAME
    return None


class LoginExchange(BaseExchange):
    """One LOGIN exchange.

    The server's prompts are advisory (the draft says their content is ignored), so the exchange
    answers in order: username, then password. One exception: if the username went as the
    initial response and the first prompt asks for it again ("Username:"), it is sent once more.
    Nothing is ever sent after the password, so a looping server cannot make the client repeat
    it.
    """

    def __init__(self, credentials: SaslCredentials, *, send_initial: bool) -> None:
        super().__init__("LOGIN")
        if not credentials.username:
            raise AuthError("LOGIN: the username is empty")
        check_encodable("LOGIN", "username", credentials.username)
        check_encodable("LOGIN", "password", credentials.secret.reveal())
        self._credentials = credentials
        self._send_initial = send_initial
        self._next = _Step.USERNAME

    def initial_response(self) -> bytes | None:
        """Return the username as the initial response (as smtplib does), or None."""
        if not self._send_initial or self._next is not _Step.USERNAME:
            return None
        self._next = _Step.PASSWORD
        return self._credentials.username.encode("utf-8")

    def _step(self, challenge: bytes) -> bytes:
        if self._next is _Step.DONE:
            raise self._unexpected()
        if self._next is _Step.USERNAME:
            self._next = _Step.PASSWORD
            return self._credentials.username.encode("utf-8")
        if self._send_initial and self.rounds == 1 and _prompt_kind(challenge) is _Step.USERNAME:
            # The server ignored the initial response and asks for the username (once).
            return self._credentials.username.encode("utf-8")
        self._next = _Step.DONE
        return self._credentials.secret.reveal().encode("utf-8")


@attrs.frozen
class LoginMechanism:
    """LOGIN (draft-murchison-sasl-login-00). Sends the password itself: only over TLS.

    Wire (SMTP; payloads base64 on the wire, decoded here)::

        C: AUTH LOGIN user            (initial response, as smtplib sends it)
        S: 334 Password:
        C: pencil
        S: 235 2.7.0 Authentication successful

    or, with ``initial_response=False``::

        C: AUTH LOGIN
        S: 334 Username:
        C: user
        S: 334 Password:
        C: pencil
        S: 235 2.7.0 Authentication successful

    Args:
        initial_response: send the username with the AUTH command (smtplib's default). Some
            old servers reject that; pass ``False`` for them.
    """

    initial_response: bool = True

    name: typing.ClassVar[str] = "LOGIN"
    credential_kind: typing.ClassVar[CredentialKind] = CredentialKind.PASSWORD
    sends_reusable_secret: typing.ClassVar[bool] = True

    @property
    def supports_initial_response(self) -> bool:
        """Whether the username goes with the AUTH command."""
        return self.initial_response

    def start(self, credentials: SaslCredentials, context: SaslContext) -> LoginExchange:
        """Begin a LOGIN exchange.

        Args:
            credentials: username and password (authzid is not supported by LOGIN).
            context: unused by LOGIN.

        Returns:
            The exchange.

        Raises:
            AuthError: the username is empty.
        """
        return LoginExchange(credentials, send_initial=self.initial_response)
