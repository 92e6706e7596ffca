"""TLS settings, the client SSLContext factory and channel-binding helpers.

Layer: L3 (transport). May import L0 (``mailsdk.errors``, ``mailsdk._secret``), attrs,
cryptography and the standard library; must never import ``mailsdk.protocol``, ``esmtp``,
``auth``, ``flows``, ``telemetry`` or ``client``.

Unlike :mod:`smtplib`, certificates and host names are verified by default and TLS 1.2 is the
minimum (RFC 8314 §4.1, RFC 8996 deprecates TLS 1.0/1.1). An IP-address host name is checked
against the certificate's IP SANs.

Channel binding (RFC 5056) for SCRAM-*-PLUS:

* ``"tls-server-end-point"`` (RFC 5929 §4.1): the hash of the server certificate's DER, with the
  hash of the certificate's signature algorithm, SHA-256 when that is MD5 or SHA-1.
* ``"tls-exporter"`` (RFC 9266) needs the TLS exporter (``SSL_export_keying_material``), which
  Python's :mod:`ssl` does not expose: it is reported as unavailable (``None``), so SASL falls back
  to ``tls-server-end-point`` or to a non-PLUS mechanism.
* ``"tls-unique"`` is not offered (undefined for TLS 1.3, RFC 9266 §1).
"""

from __future__ import annotations

import os
import ssl
import typing

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from mailsdk._secret import Secret, as_secret
from mailsdk.errors import ConfigurationError

__all__ = [
    "CHANNEL_BINDING_KINDS",
    "TLS_EXPORTER",
    "TLS_SERVER_END_POINT",
    "ClientCertificate",
    "TlsSettings",
    "channel_binding_for",
    "require_server_hostname",
    "tls_details",
    "tls_server_end_point",
]

TLS_SERVER_END_POINT: typing.Final = "tls-server-end-point"
TLS_EXPORTER: typing.Final = "tls-exporter"
#: The channel-binding types this module knows about (only the first can produce data).
CHANNEL_BINDING_KINDS: typing.Final = (TLS_SERVER_END_POINT, TLS_EXPORTER)

StrPath: typing.TypeAlias = str | os.PathLike[str]


def _optional_secret(value: Secret | str | None) -> Secret | None:
    return None if value is None else as_secret(value)


@attrs.frozen(kw_only=True)
class ClientCertificate:
    """A client certificate chain and its private key, for servers that require one.

    Args:
        certfile: PEM file with the certificate (and chain); may also hold the key.
        keyfile: PEM file with the private key, when separate.
        password: the key's passphrase; a ``str`` is wrapped in :class:`~mailsdk.Secret`, so it
            never appears in ``repr``.
    """

    certfile: StrPath
    keyfile: StrPath | None = None
    password: Secret | None = attrs.field(default=None, converter=_optional_secret)


@attrs.frozen(kw_only=True)
class TlsSettings:
    """How to build the client :class:`ssl.SSLContext` (for STARTTLS and implicit TLS).

    Args:
        verify: verify the server certificate chain. ``False`` also disables host name checks.
        check_hostname: check the certificate against the server name (ignored when ``verify``
            is ``False``).
        ca_file: a PEM bundle of trusted CAs (replaces the system store).
        ca_path: a directory of hashed CA certificates (replaces the system store).
        ca_data: PEM text (``str``) or DER bytes of trusted CAs (replaces the system store).
        client_cert: a client certificate to present.
        minimum_version: the lowest TLS version accepted (default TLS 1.2).
        maximum_version: the highest TLS version offered (default: the library's highest).
        ssl_context: a ready context used as-is; no other option may be given with it.

    Raises:
        ConfigurationError: ``ssl_context`` combined with any other option (left at its
            default), or a minimum version above the maximum.
    """

    verify: bool = True
    check_hostname: bool = True
    ca_file: StrPath | None = None
    ca_path: StrPath | None = None
    ca_data: str | bytes | None = attrs.field(default=None, repr=False)
    client_cert: ClientCertificate | None = None
    minimum_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    maximum_version: ssl.TLSVersion | None = None
    ssl_context: ssl.SSLContext | None = attrs.field(default=None, eq=False)

    def __attrs_post_init__(self) -> None:
        custom = (
            self.ca_file,
            self.ca_path,
            self.ca_data,
            self.client_cert,
            self.maximum_version,
        )
        # The security options too: silently ignoring e.g. minimum_version=TLSv1_3 or
        # verify=False would leave the connection weaker (or stricter) than the caller asked.
        changed = (
            not self.verify
            or not self.check_hostname
            or self.minimum_version is not ssl.TLSVersion.TLSv1_2
            or any(v is not None for v in custom)
        )
        if self.ssl_context is not None and changed:
            raise ConfigurationError(
                "TlsSettings: ssl_context is used as-is; do not combine it with verify, "
                "check_hostname, ca_file, ca_path, ca_data, client_cert, minimum_version or "
                "maximum_version (configure the context itself)"
            )
        if self.maximum_version is not None and _version_rank(self.minimum_version) > (
            _version_rank(self.maximum_version)
        ):
            raise ConfigurationError("TlsSettings: minimum_version is above maximum_version")

    def create_context(self) -> ssl.SSLContext:
        """Build the client context (or return ``ssl_context`` unchanged).

        Returns:
            A context for ``ssl.Purpose.SERVER_AUTH``: chain and host name verification on
            unless disabled, the configured CAs, minimum version and client certificate.

        Raises:
            ConfigurationError: a CA or certificate file is missing or malformed, or the key
                password is wrong (the message never contains the password).
        """
        if self.ssl_context is not None:
            return self.ssl_context
        try:
            context = ssl.create_default_context(
                ssl.Purpose.SERVER_AUTH,
                cafile=self.ca_file,
                capath=self.ca_path,
                cadata=self.ca_data,
            )
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise ConfigurationError(f"cannot load the trusted CAs: {exc}") from exc
        context.minimum_version = self.minimum_version
        if self.maximum_version is not None:
            context.maximum_version = self.maximum_version
        if not self.verify:
            context.check_hostname = False  # must precede CERT_NONE
            context.verify_mode = ssl.CERT_NONE
        elif not self.check_hostname:
            context.check_hostname = False
        if self.client_cert is not None:
            _load_client_cert(context, self.client_cert)
        return context


def _version_rank(version: ssl.TLSVersion) -> int:
    # MINIMUM_SUPPORTED / MAXIMUM_SUPPORTED are negative sentinels; rank them at the ends.
    if version is ssl.TLSVersion.MINIMUM_SUPPORTED:
        return -(1 << 20)
    if version is ssl.TLSVersion.MAXIMUM_SUPPORTED:
        return 1 << 20
    return int(version.value)


def _load_client_cert(context: ssl.SSLContext, cert: ClientCertificate) -> None:
    password = cert.password

    def _password() -> str:
        return password.reveal() if password is not None else ""

    try:
        context.load_cert_chain(
            cert.certfile, cert.keyfile, password=_password if password is not None else None
        )
    except (OSError, ValueError) as exc:
        # OpenSSL's message ("bad decrypt", "No such file") never contains the password.
        raise ConfigurationError(f"cannot load the client certificate: {exc}") from exc


def require_server_hostname(context: ssl.SSLContext, server_hostname: str | None) -> None:
    """Fail early when ``context`` checks host names but there is no name to check.

    Raises:
        ConfigurationError: ``context.check_hostname`` is on and ``server_hostname`` is empty.
    """
    if context.check_hostname and not server_hostname:
        raise ConfigurationError("TLS host name checking is on but no server_hostname was given")


TlsObject: typing.TypeAlias = ssl.SSLSocket | ssl.SSLObject


def tls_details(tls: TlsObject) -> tuple[str | None, str | None]:
    """Return ``(version, cipher name)`` of an established TLS connection."""
    cipher = tls.cipher()
    return tls.version(), (cipher[0] if cipher else None)


def tls_server_end_point(cert_der: bytes) -> bytes | None:
    """Compute ``tls-server-end-point`` channel-binding data (RFC 5929 §4.1).

    Args:
        cert_der: the server certificate, DER-encoded.

    Returns:
        The certificate hash, or ``None`` when the binding is undefined (a signature algorithm
        without a single hash, such as Ed25519) or the certificate cannot be parsed.
    """
    try:
        algorithm = x509.load_der_x509_certificate(cert_der).signature_hash_algorithm
    except Exception:  # malformed DER or unsupported algorithm: no binding, not a crash
        return None
    if algorithm is None:
        return None
    if isinstance(algorithm, hashes.MD5 | hashes.SHA1):
        # RFC 5929 §4.1: "if [...] that hash function is either MD5 [...] or SHA-1 [...], then
        # use SHA-256".
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(cert_der)
    return digest.finalize()


def channel_binding_for(tls: TlsObject | None, kind: str) -> bytes | None:
    """Return channel-binding data of ``kind`` for a TLS connection, or ``None``.

    Args:
        tls: the ``SSLSocket``/``SSLObject`` of the connection (``None`` for plaintext).
        kind: ``"tls-server-end-point"`` or ``"tls-exporter"`` (always ``None``: Python's ssl
            module has no keying-material exporter). Any other kind gives ``None``.

    Returns:
        The binding data, or ``None`` when it is unavailable.
    """
    if tls is None or kind != TLS_SERVER_END_POINT:
        return None
    cert_der = tls.getpeercert(binary_form=True)
    return tls_server_end_point(cert_der) if cert_der else None
