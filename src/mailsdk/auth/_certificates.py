"""Certificate credentials for msal's client-credentials flow (PEM or PKCS#12, RSA keys).

Layer: L2 auth, I/O edge (reads key files); split out of ``auth/msal.py`` to keep modules small.
Uses ``cryptography`` only; never imports msal (it reads msal's version from the package
metadata) nor protocol, esmtp, flows or client.
"""

from __future__ import annotations

import importlib.metadata
import os
import typing
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from mailsdk._secret import Secret, SecretLike, as_secret
from mailsdk.errors import ConfigurationError

__all__ = ["CertificateCredential"]

_MSAL_SHA256_VERSION: typing.Final = (1, 35)  # msal derives a SHA-256 thumbprint from 1.35 on


def _msal_version() -> tuple[int, ...]:
    # Read from the distribution metadata so this module need not import msal (auth/msal.py
    # is the only module that does).
    try:
        version = importlib.metadata.version("msal")
    except importlib.metadata.PackageNotFoundError:
        return (0,)
    parts = version.split(".")[:2]
    return tuple(int(p) if p.isdigit() else 0 for p in parts)


@attrs.frozen
class CertificateCredential:
    """An app registration's certificate: an RSA private key and its X.509 certificate.

    The key is kept as an unencrypted PKCS#8 PEM inside a :class:`~mailsdk.Secret` (msal needs
    the PEM text); the thumbprints identify the certificate to Entra ID (JWT header ``x5t`` or
    ``x5t#S256``).

    Use :meth:`from_pem`, :meth:`from_pkcs12` or :meth:`load` rather than the constructor.
    """

    private_key_pem: Secret = attrs.field(converter=as_secret, repr=False)
    certificate_pem: str = attrs.field(repr=False)
    thumbprint_sha1: str
    thumbprint_sha256: str

    def __repr__(self) -> str:
        # Neither PEM: the key is secret, and the certificate is only noise in a log line.
        return f"CertificateCredential(thumbprint_sha256={self.thumbprint_sha256!r})"

    @classmethod
    def _build(cls, key: object, cert: x509.Certificate | None) -> CertificateCredential:
        if cert is None or key is None:
            raise ConfigurationError(
                "the certificate file must hold a private key and a certificate"
            )
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigurationError("Entra ID client certificates must use an RSA key")
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
        return cls(
            private_key_pem=Secret(pem),
            certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            thumbprint_sha1=cert.fingerprint(hashes.SHA1()).hex(),  # noqa: S303 - x5t is SHA-1 by spec
            thumbprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
        )

    @classmethod
    def from_pem(
        cls,
        data: bytes | str,
        *,
        key: bytes | str | None = None,
        password: SecretLike | None = None,
    ) -> CertificateCredential:
        """Load a PEM certificate and its private key (in ``data`` or given as ``key``).

        Args:
            data: PEM text holding the certificate (and the key, unless ``key`` is given).
            key: PEM text of the private key when it lives in a separate file.
            password: the key's password, if it is encrypted.

        Raises:
            ConfigurationError: unreadable PEM, wrong password, or not an RSA key.
        """
        raw = data.encode() if isinstance(data, str) else data
        key_raw = raw if key is None else (key.encode() if isinstance(key, str) else key)
        pw = None if password is None else as_secret(password).reveal().encode()
        try:
            certs = x509.load_pem_x509_certificates(raw)
            private_key = serialization.load_pem_private_key(key_raw, pw)
        except (ValueError, TypeError) as exc:
            msg = "could not load the PEM certificate or key (wrong password or malformed file)"
            raise ConfigurationError(msg) from exc
        return cls._build(private_key, certs[0] if certs else None)

    @classmethod
    def from_pkcs12(
        cls, data: bytes, *, password: SecretLike | None = None
    ) -> CertificateCredential:
        """Load a PKCS#12 (``.pfx``/``.p12``) bundle.

        Args:
            data: the DER bytes of the bundle.
            password: the bundle's password, if any.

        Raises:
            ConfigurationError: wrong password, malformed bundle, or not an RSA key.
        """
        pw = None if password is None else as_secret(password).reveal().encode()
        try:
            key, cert, _extra = pkcs12.load_key_and_certificates(data, pw)
        except (ValueError, TypeError) as exc:
            msg = "could not load the PKCS#12 bundle (wrong password or malformed file)"
            raise ConfigurationError(msg) from exc
        return cls._build(key, cert)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, password: SecretLike | None = None
    ) -> CertificateCredential:
        """Load a certificate file, PEM or PKCS#12 (detected from the content).

        Raises:
            ConfigurationError: the file cannot be read or parsed.
        """
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"cannot read certificate file {os.fspath(path)!r}") from exc
        if data.lstrip().startswith(b"-----BEGIN"):
            return cls.from_pem(data, password=password)
        return cls.from_pkcs12(data, password=password)

    def to_msal(self, *, thumbprint: str = "sha1", send_chain: bool = False) -> dict[str, str]:
        """Build msal's ``client_credential`` dict.

        Args:
            thumbprint: ``"sha1"`` (RS256 with ``x5t``, works with every msal and ADFS) or
                ``"sha256"`` (PS256 with ``x5t#S256``; needs msal >= 1.35, which then always
                sends the certificate as ``x5c``).
            send_chain: send the certificate (``x5c``) for subject-name/issuer authentication.

        Raises:
            ConfigurationError: ``"sha256"`` requested with an older msal, or an unknown value.
        """
        cred = {"private_key": self.private_key_pem.reveal()}
        if thumbprint == "sha256":
            if _msal_version() < _MSAL_SHA256_VERSION:
                raise ConfigurationError("SHA-256 certificate thumbprints need msal >= 1.35")
            cred["public_certificate"] = self.certificate_pem
        elif thumbprint == "sha1":
            cred["thumbprint"] = self.thumbprint_sha1
            if send_chain:
                cred["public_certificate"] = self.certificate_pem
        else:
            raise ConfigurationError(f"thumbprint must be 'sha1' or 'sha256', not {thumbprint!r}")
        return cred
