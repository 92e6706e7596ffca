"""The SCRAM SASL mechanisms (RFC 5802, RFC 7677), with channel binding (``-PLUS``).

Layer: L2 (auth, pure). May import ``mailsdk.errors``, ``mailsdk._secret``, ``hashlib``/``hmac``/
``base64``/``secrets`` and sibling pure auth modules. Must never import ``mailsdk.protocol``/
``esmtp``/``flows`` or any I/O module (no socket, no ssl: channel binding data arrives as bytes in
:class:`~mailsdk.auth.SaslContext`).

Why not ``scramp``: scramp 1.5 refuses the ``tls-exporter`` channel binding (RFC 9266, the one TLS
1.3 provides), cannot send an authzid, and imports ``ssl`` and asn1crypto at module level, which
the pure layer must not pull in. The client side of SCRAM is small; it is written here against the
RFC test vectors, and the tests run it against scramp's *server* for interoperability.

The base64 inside SCRAM messages (salt, proof, ``c=``) is part of the mechanism (RFC 5802 §7);
the outer SMTP base64 framing is still the flow's job.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import secrets
import typing

import attrs

from mailsdk._secret import Secret
from mailsdk.auth._saslprep import saslprep
from mailsdk.auth.base import BaseExchange, CredentialKind, SaslContext, SaslCredentials
from mailsdk.errors import AuthError

if typing.TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ScramExchange", "ScramMechanism", "default_nonce"]

_HASHES: typing.Final = {"SHA-1": "sha1", "SHA-256": "sha256", "SHA-512": "sha512"}


def default_nonce() -> str:
    """Return a fresh client nonce: 24 random bytes, URL-safe base64 (no ``,``; RFC 5802 §7)."""
    return secrets.token_urlsafe(24)


def _saslname(name: str) -> str:
    """RFC 5802 §5.1: ``=`` → ``=3D``, ``,`` → ``=2C``."""
    return name.replace("=", "=3D").replace(",", "=2C")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: str) -> bytes:
    return base64.b64decode(value.encode("ascii"), validate=True)


def _parse_attributes(mechanism: str, message: bytes, what: str) -> dict[str, str]:
    """Split ``a=v,b=w`` into a dict (RFC 5802 §7); attribute names are one ASCII letter."""
    text = message.decode("utf-8")
    attrs_: dict[str, str] = {}
    for part in text.split(","):
        if len(part) < 2 or part[1] != "=" or not ("a" <= part[0].lower() <= "z"):
            raise AuthError(f"{mechanism}: malformed {what} (RFC 5802 §7)")
        if part[0] in attrs_:
            raise AuthError(f"{mechanism}: duplicate attribute in {what}")
        attrs_[part[0]] = part[2:]
    return attrs_


class _Stage(enum.Enum):
    CLIENT_FIRST = "client-first"
    SERVER_FIRST = "server-first"
    SERVER_FINAL = "server-final"
    VERIFIED = "verified"


class ScramExchange(BaseExchange):
    """One SCRAM exchange: client-first, server-first, client-final, server-final.

    The server signature (``v=``) is verified in :meth:`respond` when it arrives as a challenge
    (SMTP's way: RFC 4954 has no additional data with success) or in :meth:`finish` when the
    protocol carries it with the success reply. :meth:`finish` raises if it never came: a server
    that did not prove knowledge of the password is not trusted (RFC 5802 §5, §9).
    """

    def __init__(
        self,
        mechanism: ScramMechanism,
        credentials: SaslCredentials,
        context: SaslContext,
        nonce: str,
    ) -> None:
        super().__init__(mechanism.name)
        self._digest = _HASHES[mechanism.hash_name]
        self._min_iterations = mechanism.min_iterations
        self._max_iterations = mechanism.max_iterations
        user = saslprep(credentials.username, what="username")
        if not user:
            raise AuthError(f"{self.mechanism}: the username is empty")
        # Kept as a Secret so vars()/__dict__ of the exchange never show the password.
        self._password: Secret | None = Secret(
            saslprep(credentials.secret.reveal(), what="password")
        )
        if not nonce or any(not (0x21 <= ord(c) <= 0x7E) or c == "," for c in nonce):
            raise AuthError(f"{self.mechanism}: the client nonce must be printable ASCII, no ','")
        self._nonce = nonce

        # RFC 5802 §7 gs2-header = gs2-cbind-flag "," [ authzid ] ","
        authzid = f"a={_saslname(credentials.authzid)}" if credentials.authzid else ""
        binding = context.channel_binding
        self._cbind_data = b""
        if mechanism.channel_binding:
            if binding is None:
                raise AuthError(f"{self.mechanism}: needs TLS channel binding, none available")
            flag = f"p={binding.kind}"
            self._cbind_data = binding.data
        elif (
            binding is not None
            and context.offered_mechanisms
            and f"{self.mechanism}-PLUS" not in context.offered_mechanisms
        ):
            # RFC 5802 §6: "y" = we support binding but the server did not advertise -PLUS; a
            # server that does support it then detects a downgrade.
            flag = "y"
        else:
            flag = "n"
        self._gs2_header = f"{flag},{authzid},".encode()
        self._client_first_bare = f"n={_saslname(user)},r={nonce}".encode()
        self._stage = _Stage.CLIENT_FIRST
        self._server_signature = b""

    def initial_response(self) -> bytes | None:
        """Return the client-first message ``gs2-header n=user,r=nonce`` (RFC 5802 §5)."""
        if self._stage is not _Stage.CLIENT_FIRST:
            raise AuthError(f"{self.mechanism}: the client-first message was already produced")
        self._stage = _Stage.SERVER_FIRST
        return self._gs2_header + self._client_first_bare

    def _step(self, challenge: bytes) -> bytes:
        if self._stage is _Stage.CLIENT_FIRST:
            # RFC 4422 §5: without an initial response the server starts with an empty challenge.
            if challenge:
                raise AuthError(f"{self.mechanism}: expected an empty first challenge")
            first = self.initial_response()
            assert first is not None
            return first
        if self._stage is _Stage.SERVER_FIRST:
            return self._client_final(challenge)
        if self._stage is _Stage.SERVER_FINAL:
            self._verify(challenge)
            # RFC 4954 §4: the server-final came as a 334 challenge; an empty response follows.
            return b""
        raise self._unexpected()

    def _client_final(self, server_first: bytes) -> bytes:
        fields = _parse_attributes(self.mechanism, server_first, "server-first message")
        if "m" in fields:
            # RFC 5802 §5.1: a mandatory extension we do not understand must abort.
            raise AuthError(f"{self.mechanism}: server requires an unsupported extension (m=)")
        if "e" in fields:
            raise self._server_said(fields["e"])
        try:
            nonce, salt_text, iter_text = fields["r"], fields["s"], fields["i"]
        except KeyError:
            raise AuthError(
                f"{self.mechanism}: server-first message lacks r=, s= or i= (RFC 5802 §5.1)"
            ) from None
        # RFC 5802 §5.1: the server nonce must extend ours, else the exchange is not ours.
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce):
            raise AuthError(f"{self.mechanism}: server nonce does not extend the client nonce")
        if any(not (0x21 <= ord(c) <= 0x7E) for c in nonce):
            raise AuthError(f"{self.mechanism}: server nonce has invalid characters")
        salt = _unb64(salt_text)
        if not salt:
            raise AuthError(f"{self.mechanism}: empty salt")
        if not iter_text.isascii() or not iter_text.isdigit():
            raise AuthError(f"{self.mechanism}: iteration count is not a number")
        iterations = int(iter_text)
        # A hostile server could ask for billions of PBKDF2 rounds (CPU exhaustion), or very few
        # (a cheap offline dictionary attack on a captured proof); both are refused.
        if not self._min_iterations <= iterations <= self._max_iterations:
            raise AuthError(
                f"{self.mechanism}: iteration count {iterations} outside the accepted range "
                f"{self._min_iterations}..{self._max_iterations}"
            )
        channel = _b64(self._gs2_header + self._cbind_data)
        without_proof = f"c={channel},r={nonce}".encode("ascii")
        auth_message = self._client_first_bare + b"," + server_first + b"," + without_proof
        # RFC 5802 §3: SaltedPassword := Hi(Normalize(password), salt, i), Hi = PBKDF2-HMAC.
        if self._password is None:
            raise AuthError(f"{self.mechanism}: the client-final message was already produced")
        password = self._password.reveal().encode("utf-8")
        salted = hashlib.pbkdf2_hmac(self._digest, password, salt, iterations)
        client_key = hmac.digest(salted, b"Client Key", self._digest)
        stored_key = hashlib.new(self._digest, client_key).digest()
        client_signature = hmac.digest(stored_key, auth_message, self._digest)
        proof = bytes(a ^ b for a, b in zip(client_key, client_signature, strict=True))
        server_key = hmac.digest(salted, b"Server Key", self._digest)
        self._server_signature = hmac.digest(server_key, auth_message, self._digest)
        self._password = None
        self._stage = _Stage.SERVER_FINAL
        return without_proof + b",p=" + _b64(proof).encode("ascii")

    def _verify(self, server_final: bytes) -> None:
        fields = _parse_attributes(self.mechanism, server_final, "server-final message")
        if "e" in fields:
            raise self._server_said(fields["e"])
        if "v" not in fields:
            raise AuthError(f"{self.mechanism}: server-final message lacks v= (RFC 5802 §7)")
        try:
            signature = _unb64(fields["v"])
        except (binascii.Error, ValueError):
            raise AuthError(f"{self.mechanism}: server signature is not base64") from None
        # RFC 5802 §5: the client MUST verify ServerSignature; constant-time comparison.
        if not hmac.compare_digest(signature, self._server_signature):
            raise AuthError(
                f"{self.mechanism}: wrong server signature; the server did not prove it knows "
                "the password (possible impersonation)"
            )
        self._stage = _Stage.VERIFIED

    def _server_said(self, error: str) -> AuthError:
        # RFC 5802 §7 server-error-value: a short token; keep it printable and short.
        cleaned = "".join(c for c in error if 0x20 < ord(c) < 0x7F)[:64]
        self._server_error = {"error": cleaned}
        return AuthError(f"{self.mechanism}: server reported error {cleaned!r}")

    def _finish(self, additional: bytes | None) -> None:
        if self._stage is _Stage.SERVER_FINAL and additional:
            self._verify(additional)
        if self._stage is not _Stage.VERIFIED:
            raise AuthError(
                f"{self.mechanism}: server reported success without a valid server signature "
                "(RFC 5802 §5); not trusting it"
            )


@attrs.frozen
class ScramMechanism:
    """SCRAM-SHA-1 (RFC 5802), SCRAM-SHA-256 (RFC 7677) and their ``-PLUS`` variants.

    Wire (RFC 7677 §3 example, SMTP framing; payloads base64 on the wire, decoded here)::

        C: AUTH SCRAM-SHA-256 n,,n=user,r=rOprNGfwEbeRWgbNEkqO
        S: 334 r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,
               s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096
        C: c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,
           p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=
        S: 334 v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=
        C:                                   (empty response)
        S: 235 2.7.0 Authentication successful

    With channel binding (``SCRAM-SHA-256-PLUS``) the GS2 header is ``p=tls-exporter,,`` and
    ``c=`` carries base64(header + binding data) (RFC 5802 §6, RFC 9266).

    Args:
        hash_name: ``"SHA-1"``, ``"SHA-256"`` or ``"SHA-512"``.
        channel_binding: the ``-PLUS`` variant (needs ``SaslContext.channel_binding``).
        nonce_factory: returns the client nonce; inject a fixed one to replay RFC test vectors.
        min_iterations: lowest PBKDF2 iteration count accepted from the server (RFC 7677 §4
            recommends at least 4096).
        max_iterations: highest accepted (guards against CPU exhaustion by a hostile server).
    """

    hash_name: str = "SHA-256"
    channel_binding: bool = False
    nonce_factory: Callable[[], str] = attrs.field(default=default_nonce, repr=False)
    min_iterations: int = 4096
    max_iterations: int = 10_000_000

    credential_kind: typing.ClassVar[CredentialKind] = CredentialKind.PASSWORD
    # The proof cannot be replayed and the password never travels (RFC 5802 §9).
    sends_reusable_secret: typing.ClassVar[bool] = False
    supports_initial_response: typing.ClassVar[bool] = True

    def __attrs_post_init__(self) -> None:
        if self.hash_name not in _HASHES:
            raise AuthError(
                f"SCRAM: unsupported hash {self.hash_name!r}; use one of {sorted(_HASHES)}"
            )

    @property
    def name(self) -> str:
        """``SCRAM-<hash>`` plus ``-PLUS`` for the channel-binding variant."""
        return f"SCRAM-{self.hash_name}" + ("-PLUS" if self.channel_binding else "")

    @property
    def requires_channel_binding(self) -> bool:
        """True for the ``-PLUS`` variants."""
        return self.channel_binding

    def start(self, credentials: SaslCredentials, context: SaslContext) -> ScramExchange:
        """Begin a SCRAM exchange.

        Args:
            credentials: username, password and optional authzid.
            context: ``channel_binding`` is required for ``-PLUS``; ``offered_mechanisms``
                selects the ``y`` GS2 flag.

        Returns:
            The exchange.

        Raises:
            AuthError: SASLprep failed, or ``-PLUS`` without channel binding.
        """
        return ScramExchange(self, credentials, context, self.nonce_factory())
