"""DKIM private keys: RSA (RFC 6376 §3.3.1) and Ed25519 (RFC 8463), loaded once and kept secret.

Layer: L2 (pure, beside ``mailsdk.esmtp``). May import L0 and ``cryptography`` (a runtime
dependency); must never import socket, ssl, asyncio, selectors, threading, time, logging,
opentelemetry or msal. :meth:`DkimKey.from_file` reads a local file once, at configuration
time; nothing here touches the network or a clock.

The key is held as a ``cryptography`` key object (whose ``repr`` shows no material) and is
never pickled; :meth:`DkimKey.private_material` hands it out only as a
:class:`~mailsdk.Secret`. Errors about a key name the file or the algorithm, never the key's
bytes: the causes raised by the parsers are dropped (``from None``) because their messages may
quote the input. Signing is ``cryptography``'s (OpenSSL's) RSA and Ed25519.
"""

from __future__ import annotations

import base64
import binascii
import enum
import os
import pathlib
import typing

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric import utils as asym_utils

from mailsdk._secret import Secret
from mailsdk.errors import ConfigurationError

__all__ = ["DkimAlgorithm", "DkimKey"]

#: RFC 8301 §3.2: "Signers MUST use RSA keys of at least 1024 bits" (2048 recommended).
MIN_RSA_BITS: typing.Final = 1024
_ED25519_SEED_BYTES: typing.Final = 32


def _shown_path(name: str) -> str:
    """How an error names a key file: quoted, unless the "path" is key material given where a
    path was expected (a base64 Ed25519 seed, a PEM body without its BEGIN line)."""
    try:
        decoded = base64.b64decode("".join(name.split()), validate=True)
    except (ValueError, binascii.Error):
        return repr(name)
    if len(decoded) < _ED25519_SEED_BYTES:
        return repr(name)
    return (
        "(name not shown: it looks like key material; pass key text as mailsdk.Secret(text) "
        "or bytes)"
    )


class DkimAlgorithm(enum.Enum):
    """The ``a=`` tag of a signature."""

    RSA_SHA256 = "rsa-sha256"
    ED25519_SHA256 = "ed25519-sha256"

    @property
    def key_type(self) -> str:
        """The ``k=`` tag of the matching DNS key record."""
        return "rsa" if self is DkimAlgorithm.RSA_SHA256 else "ed25519"


class DkimKey:
    """A DKIM signing key. Build it with :meth:`load`, :meth:`from_pem`, :meth:`from_file` or
    :meth:`generate`.

    ``repr`` shows only the algorithm and the size; pickling is refused; errors never quote
    the key.

    Attributes:
        algorithm: the signature algorithm this key signs with.
        bits: the RSA modulus size (256 for Ed25519).
    """

    __slots__ = ("_private", "_public", "algorithm", "bits")

    def __init__(self, private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> None:
        if isinstance(private, rsa.RSAPrivateKey):
            self.algorithm = DkimAlgorithm.RSA_SHA256
            self.bits = private.key_size
            # RSA: DER SubjectPublicKeyInfo (RFC 6376 §3.6.1 p=).
            self._public = private.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        elif isinstance(private, ed25519.Ed25519PrivateKey):  # pyright: ignore[reportUnnecessaryIsInstance]
            self.algorithm = DkimAlgorithm.ED25519_SHA256
            self.bits = 256
            # Ed25519: the raw 32-byte public key (RFC 8463 §4).
            self._public = private.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
        else:
            raise ConfigurationError("DKIM keys are RSA or Ed25519 private keys")
        self._private = private

    @classmethod
    def load(cls, key: DkimKey | Secret | bytes | str | os.PathLike[str]) -> DkimKey:
        """A key from any accepted form: a :class:`DkimKey` (returned as is), a
        :class:`~mailsdk.Secret` or ``bytes`` holding the PEM text, or a path (``str`` or
        ``os.PathLike``) to a key file.

        Raises:
            ConfigurationError: no usable key (the message never quotes the key).
        """
        if isinstance(key, DkimKey):
            return key
        if isinstance(key, Secret | bytes | bytearray):
            return cls.from_pem(key if isinstance(key, Secret) else bytes(key))
        if isinstance(key, str) and "-----BEGIN" in key:
            # A PEM text passed where a path was expected: never echo it in an error.
            raise ConfigurationError(
                "DKIM: pass key text as mailsdk.Secret(text) or bytes; a str is a file path"
            )
        if isinstance(key, str | os.PathLike):  # pyright: ignore[reportUnnecessaryIsInstance]
            return cls.from_file(key)
        raise ConfigurationError(
            f"DKIM key must be a path, a Secret, bytes or a DkimKey, not {type(key).__name__}"
        )

    @classmethod
    def from_pem(cls, data: bytes | str | Secret, *, source: str = "the key") -> DkimKey:
        """Load an unencrypted PEM private key (RSA or Ed25519, PKCS#1 or PKCS#8).

        Also accepts dkimpy's Ed25519 form (``dknewkey --ktype ed25519``): the base64 of the
        32-byte seed.

        Args:
            data: the key text or bytes, or a :class:`~mailsdk.Secret` holding the text.
            source: how to name the key in errors (e.g. the file name).

        Raises:
            ConfigurationError: not a usable key (encrypted, another type, an RSA key under
                1024 bits); the message never quotes the key.
        """
        if isinstance(data, Secret):
            data = data.reveal()
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
        if b"-----BEGIN" not in raw:
            return cls._from_seed(raw.strip(), source)
        try:
            key = serialization.load_pem_private_key(raw, password=None)
        except TypeError:
            raise ConfigurationError(
                f"DKIM: {source} is encrypted; give an unencrypted private key"
            ) from None
        except (ValueError, binascii.Error):
            raise ConfigurationError(
                f"DKIM: {source} is not a PEM private key (RSA or Ed25519)"
            ) from None
        except UnsupportedAlgorithm:  # e.g. an EC key on a curve OpenSSL does not know
            raise ConfigurationError(
                f"DKIM: {source} is neither an RSA nor an Ed25519 key"
            ) from None
        if isinstance(key, rsa.RSAPrivateKey):
            if key.key_size < MIN_RSA_BITS:
                raise ConfigurationError(
                    f"DKIM: {source} is a {key.key_size}-bit RSA key; RFC 8301 requires at "
                    f"least {MIN_RSA_BITS} bits (2048 recommended)"
                )
            return cls(key)
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return cls(key)
        raise ConfigurationError(f"DKIM: {source} is neither an RSA nor an Ed25519 key")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> DkimKey:
        """Read a key file (see :meth:`from_pem` for the accepted forms).

        Raises:
            ConfigurationError: the file cannot be read or holds no usable key.
        """
        name = os.fspath(path)
        try:
            data = pathlib.Path(name).read_bytes()
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "bad name"
            raise ConfigurationError(
                f"DKIM: cannot read the key file {_shown_path(name)}: {reason}"
            ) from None
        return cls.from_pem(data, source=f"the key file {_shown_path(name)}")

    @classmethod
    def generate(cls, algorithm: DkimAlgorithm | str = DkimAlgorithm.RSA_SHA256) -> DkimKey:
        """A fresh key (RSA 2048 bits, or Ed25519), e.g. for tests or a first DNS record."""
        if DkimAlgorithm(algorithm) is DkimAlgorithm.RSA_SHA256:
            return cls(rsa.generate_private_key(65537, 2048))
        return cls(ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def _from_seed(cls, text: bytes, source: str) -> DkimKey:
        try:
            seed = base64.b64decode(text, validate=True)
        except (ValueError, binascii.Error):
            seed = b""
        if len(seed) != _ED25519_SEED_BYTES:
            raise ConfigurationError(
                f"DKIM: {source} is neither a PEM private key nor a base64 Ed25519 seed"
            )
        return cls(ed25519.Ed25519PrivateKey.from_private_bytes(seed))

    def sign_digest(self, digest: bytes) -> bytes:
        """Sign a SHA-256 digest: RSASSA-PKCS1-v1_5 (RFC 6376 §3.3.1) or Ed25519 over the
        digest itself (RFC 8463 §3)."""
        if isinstance(self._private, rsa.RSAPrivateKey):
            return self._private.sign(
                digest, padding.PKCS1v15(), asym_utils.Prehashed(hashes.SHA256())
            )
        return self._private.sign(digest)

    def private_material(self) -> Secret:
        """The private key in dkimpy's forms (RSA: PKCS#1 PEM; Ed25519: the base64 seed),
        for handing to other DKIM tools. Reveal it only at the point of use."""
        if isinstance(self._private, rsa.RSAPrivateKey):
            pem = self._private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
            return Secret(pem.decode("ascii"))
        seed = self._private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return Secret(base64.b64encode(seed).decode("ascii"))

    @property
    def public_key(self) -> str:
        """The base64 public key, the ``p=`` tag of the DNS record."""
        return base64.b64encode(self._public).decode("ascii")

    def dns_record(self) -> str:
        """The TXT record to publish at ``<selector>._domainkey.<domain>`` (RFC 6376 §3.6.1)."""
        return f"v=DKIM1; k={self.algorithm.key_type}; p={self.public_key}"

    def __repr__(self) -> str:
        return f"DkimKey({self.algorithm.value}, {self.bits} bits)"

    def __reduce__(self) -> typing.NoReturn:
        raise TypeError("mailsdk.dkim.DkimKey refuses to be pickled")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DkimKey):
            return NotImplemented
        # The public key identifies the private one.
        return self.algorithm is other.algorithm and self._public == other._public

    def __hash__(self) -> int:
        return hash((DkimKey, self._public))
