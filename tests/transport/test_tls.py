"""TlsSettings, channel-binding helpers, address parsing, the error mapping and the public API."""

from __future__ import annotations

import ast
import asyncio
import datetime
import hashlib
import pathlib
import pickle
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

import mailsdk.transport
from mailsdk._secret import Secret
from mailsdk.errors import (
    ConfigurationError,
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    InvalidInputError,
    ReadTimeout,
    TLSError,
    WriteTimeout,
)
from mailsdk.transport import ClientCertificate, TlsSettings, parse_host_port, tls_server_end_point
from mailsdk.transport._errors import Operation, map_errors, translate

from .conftest import KEY_PASSWORD

# --- TlsSettings ----------------------------------------------------------------------------


def test_defaults_verify_everything_and_require_tls12():
    context = TlsSettings().create_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_verify_false_disables_hostname_check_too():
    context = TlsSettings(verify=False).create_context()
    assert context.verify_mode == ssl.CERT_NONE
    assert context.check_hostname is False


def test_check_hostname_false_keeps_chain_verification():
    context = TlsSettings(check_hostname=False).create_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is False


def test_ca_file_and_data_replace_the_system_store(ca, tmp_path):
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    for settings in (
        TlsSettings(ca_file=path),
        TlsSettings(ca_data=ca.cert_pem.bytes().decode()),
        TlsSettings(ca_data=ssl.PEM_cert_to_DER_cert(ca.cert_pem.bytes().decode())),
    ):
        certs = settings.create_context().get_ca_certs()
        assert len(certs) == 1


def test_ca_path_is_loaded(ca, tmp_path):
    context = TlsSettings(ca_path=tmp_path).create_context()
    assert context.verify_mode == ssl.CERT_REQUIRED  # a (here empty) hashed directory


def test_maximum_version_is_applied():
    context = TlsSettings(maximum_version=ssl.TLSVersion.TLSv1_2).create_context()
    assert context.maximum_version == ssl.TLSVersion.TLSv1_2


def test_ssl_context_is_used_as_is():
    mine = ssl.create_default_context()
    assert TlsSettings(ssl_context=mine).create_context() is mine


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ssl_context": ssl.create_default_context(), "ca_file": "x.pem"},
        {
            "ssl_context": ssl.create_default_context(),
            "client_cert": ClientCertificate(certfile="c"),
        },
        {"minimum_version": ssl.TLSVersion.TLSv1_3, "maximum_version": ssl.TLSVersion.TLSv1_2},
    ],
)
def test_inconsistent_settings_are_refused(kwargs):
    with pytest.raises(ConfigurationError):
        TlsSettings(**kwargs)


def test_missing_ca_file_is_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError) as info:
        TlsSettings(ca_file=tmp_path / "missing.pem").create_context()
    assert isinstance(info.value.__cause__, OSError)


def test_client_certificate_loads_with_password(client_cert_files):
    certfile, keyfile = client_cert_files
    cert = ClientCertificate(certfile=certfile, keyfile=keyfile, password=KEY_PASSWORD)
    assert isinstance(cert.password, Secret)
    assert KEY_PASSWORD not in repr(cert)
    assert KEY_PASSWORD not in repr(TlsSettings(client_cert=cert))
    TlsSettings(client_cert=cert).create_context()  # loads: no exception


def test_wrong_key_password_never_shows_the_password(client_cert_files):
    certfile, keyfile = client_cert_files
    wrong = "not-the-password-4711"
    cert = ClientCertificate(certfile=certfile, keyfile=keyfile, password=Secret(wrong))
    with pytest.raises(ConfigurationError) as info:
        TlsSettings(client_cert=cert).create_context()
    assert wrong not in str(info.value)
    assert wrong not in repr(info.value)


# --- channel binding (RFC 5929 §4.1) ----------------------------------------------------------


def _self_signed(key, algorithm) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cb.example.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, algorithm)
    )
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_end_point_uses_the_signature_hash(rsa_key):
    der = _self_signed(rsa_key, hashes.SHA384())
    assert tls_server_end_point(der) == hashlib.sha384(der).digest()
    der = _self_signed(ec.generate_private_key(ec.SECP256R1()), hashes.SHA512())
    assert tls_server_end_point(der) == hashlib.sha512(der).digest()


@pytest.mark.parametrize("weak", [b"\x05", b"\x04"], ids=["sha1", "md5"])
def test_end_point_upgrades_md5_and_sha1_to_sha256(rsa_key, weak):
    # cryptography refuses to sign with SHA-1/MD5, so relabel a SHA-256 certificate:
    # sha256WithRSAEncryption is 1.2.840.113549.1.1.11; ...1.5 is SHA-1, ...1.4 is MD5.
    der = _self_signed(rsa_key, hashes.SHA256())
    oid = bytes.fromhex("06092a864886f70d01010b")
    assert der.count(oid) == 2
    relabelled = der.replace(oid, oid[:-1] + weak)
    parsed = x509.load_der_x509_certificate(relabelled).signature_hash_algorithm
    assert isinstance(parsed, hashes.SHA1 | hashes.MD5)
    assert tls_server_end_point(relabelled) == hashlib.sha256(relabelled).digest()


def test_end_point_is_undefined_without_a_single_hash():
    der = _self_signed(ed25519.Ed25519PrivateKey.generate(), None)
    assert tls_server_end_point(der) is None
    assert tls_server_end_point(b"not a certificate") is None


# --- parse_host_port ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mx.example.com", ("mx.example.com", 25)),
        ("mx.example.com:587", ("mx.example.com", 587)),
        ("192.0.2.1:465", ("192.0.2.1", 465)),
        ("[::1]:2525", ("::1", 2525)),
        ("[::1]", ("::1", 25)),
        ("::1", ("::1", 25)),
        ("2001:db8::25", ("2001:db8::25", 25)),
        ("[fe80::1%eth0]:24", ("fe80::1%eth0", 24)),
        ("  localhost:24 ", ("localhost", 24)),
    ],
)
def test_parse_host_port(text, expected):
    assert parse_host_port(text, 25) == expected


@pytest.mark.parametrize(
    "text",
    ["", ":25", "host:", "host:abc", "host:0", "host:65536", "[::1", "[::1]x", "[]:25", "1:2:zz"],
)
def test_parse_host_port_rejects(text):
    with pytest.raises(InvalidInputError):
        parse_host_port(text, 25)


# --- the error mapping ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "operation", "expected"),
    [
        (TimeoutError(), Operation.CONNECT, ConnectTimeout),
        (TimeoutError(), Operation.TLS_HANDSHAKE, ConnectTimeout),
        (TimeoutError(), Operation.READ, ReadTimeout),
        (TimeoutError(), Operation.WRITE, WriteTimeout),
        (ConnectionRefusedError(111, "refused"), Operation.CONNECT, ConnectError),
        (OSError(101, "unreachable"), Operation.CONNECT, ConnectError),
        (ConnectionResetError(104, "reset"), Operation.READ, ConnectionLost),
        (BrokenPipeError(32, "pipe"), Operation.WRITE, ConnectionLost),
        (ConnectionResetError(104, "reset"), Operation.TLS_HANDSHAKE, ConnectionLost),
        (ssl.SSLEOFError(8, "EOF"), Operation.READ, ConnectionLost),
        (ssl.SSLEOFError(8, "EOF"), Operation.TLS_HANDSHAKE, TLSError),
        (ssl.SSLError(1, "bad record mac"), Operation.READ, TLSError),
        (ssl.SSLCertVerificationError(1, "verify failed"), Operation.CONNECT, TLSError),
        (asyncio.IncompleteReadError(b"ab", 5), Operation.READ, ConnectionLost),
    ],
)
def test_translate_table(exc, operation, expected):
    mapped = translate(exc, operation, "mx.example:25")
    assert type(mapped) is expected
    assert "mx.example:25" in str(mapped)
    if isinstance(mapped, ConnectTimeout | ReadTimeout | WriteTimeout):
        assert mapped.phase == operation.value
    restored = pickle.loads(pickle.dumps(mapped))
    assert type(restored) is expected
    assert str(restored) == str(mapped)


def test_translate_leaves_other_errors_alone():
    assert translate(ValueError("x"), Operation.READ) is None
    assert translate(ConnectionLost("already mapped"), Operation.READ) is None


def test_map_errors_keeps_the_cause_sync_and_async():
    original = ConnectionResetError(104, "reset")
    with pytest.raises(ConnectionLost) as info, map_errors(Operation.WRITE, "peer"):
        raise original
    assert info.value.__cause__ is original

    async def run() -> None:
        async with map_errors(Operation.READ):
            raise TimeoutError

    with pytest.raises(ReadTimeout) as timeout_info:
        asyncio.run(run())
    assert isinstance(timeout_info.value.__cause__, TimeoutError)


def test_map_errors_passes_non_io_errors_through():
    with pytest.raises(KeyError), map_errors(Operation.READ):
        raise KeyError("x")


# --- public API and layering ----------------------------------------------------------------


def test_all_is_complete_and_importable():
    exported = set(mailsdk.transport.__all__)
    public = {name for name in vars(mailsdk.transport) if not name.startswith("_")}
    modules = {"asyncio_streams", "base", "proxies", "sockets", "tls", "annotations"}
    assert public - modules == exported
    for name in exported:
        assert getattr(mailsdk.transport, name) is not None


def test_transport_imports_only_the_foundation_layer():
    package = pathlib.Path(mailsdk.transport.__file__).parent
    allowed = {"mailsdk.errors", "mailsdk._secret"}
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("mailsdk")
            ):
                assert node.module in allowed or node.module.startswith("mailsdk.transport"), (
                    path.name,
                    node.module,
                )
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("mailsdk"), (path.name, alias.name)
