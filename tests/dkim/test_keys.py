"""DKIM keys: every accepted form loads, bad ones are typed errors, and the key never shows."""

from __future__ import annotations

import base64
import pathlib
import pickle
import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from tests.dkim.dkim_support import MESSAGE_FOR_KEYS, verify_with

from mailsdk import ClientBuilder, ConfigurationError, Secret
from mailsdk.dkim import DkimAlgorithm, DkimKey

RSA = rsa.generate_private_key(65537, 2048)
ED = ed25519.Ed25519PrivateKey.generate()


def pem(
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey, fmt: serialization.PrivateFormat
) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


@pytest.mark.parametrize(
    ("data", "algorithm"),
    [
        (pem(RSA, serialization.PrivateFormat.TraditionalOpenSSL), DkimAlgorithm.RSA_SHA256),
        (pem(RSA, serialization.PrivateFormat.PKCS8), DkimAlgorithm.RSA_SHA256),
        (pem(ED, serialization.PrivateFormat.PKCS8), DkimAlgorithm.ED25519_SHA256),
        (
            base64.b64encode(
                ED.private_bytes(
                    serialization.Encoding.Raw,
                    serialization.PrivateFormat.Raw,
                    serialization.NoEncryption(),
                )
            ),
            DkimAlgorithm.ED25519_SHA256,
        ),
    ],
    ids=["rsa-pkcs1", "rsa-pkcs8", "ed25519-pkcs8", "ed25519-dknewkey-seed"],
)
def test_key_forms_load_from_file_and_secret_and_sign(
    tmp_path: pathlib.Path, data: bytes, algorithm: DkimAlgorithm
) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(data)
    from_file = DkimKey.from_file(path)
    from_secret = DkimKey.load(Secret(data.decode()))
    assert from_file.algorithm is algorithm
    assert from_file == from_secret
    assert from_file == DkimKey.load(str(path))
    assert from_file.dns_record().startswith(f"v=DKIM1; k={algorithm.key_type}; p=")
    assert verify_with(from_file, MESSAGE_FOR_KEYS)


def test_key_never_in_repr_str_errors_or_pickles(tmp_path: pathlib.Path) -> None:
    data = pem(RSA, serialization.PrivateFormat.TraditionalOpenSSL)
    body = data.decode().splitlines()[3]  # a line of the base64 key material
    key = DkimKey.from_pem(Secret(data.decode()))
    builder = ClientBuilder.smtp("mx.test", 25).with_dkim(
        "example.com", "s1", Secret(data.decode())
    )
    for text in (repr(key), str(key), repr(builder), repr(builder.config())):
        assert body not in text
    assert repr(key) == "DkimKey(rsa-sha256, 2048 bits)"
    with pytest.raises(TypeError, match="refuses to be pickled"):
        pickle.dumps(key)
    with pytest.raises(ConfigurationError) as info:
        DkimKey.load(data.decode())  # PEM text where a path is expected
    assert body not in str(info.value)
    broken = data.replace(body.encode(), body[::-1].encode())
    with pytest.raises(ConfigurationError) as info:
        DkimKey.from_pem(broken)
    assert body[::-1] not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or body[::-1] not in repr(info.value.__context__)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (
            RSA.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"pw"),
            ),
            "encrypted",
        ),
        (b"-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n", "not a PEM"),
        (b"c2hvcnQ=", "neither a PEM"),
        (b"", "neither a PEM"),
    ],
)
def test_unusable_keys_are_configuration_errors(data: bytes, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        DkimKey.from_pem(data)


def test_rsa_keys_under_1024_bits_are_refused() -> None:
    # cryptography refuses to generate one; OpenSSL still can.
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    small = subprocess.run(
        [openssl, "genrsa", "768"], capture_output=True, check=True, timeout=60
    ).stdout
    with pytest.raises(ConfigurationError, match="768-bit RSA key; RFC 8301"):
        DkimKey.from_pem(small)


def test_missing_key_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read the key file"):
        DkimKey.from_file(tmp_path / "absent.pem")
    with pytest.raises(ConfigurationError, match="must be a path"):
        DkimKey.load(42)  # type: ignore[arg-type]


def test_key_text_passed_as_a_path_str_is_never_echoed() -> None:
    # A str is a path, but users paste key text: the "file name" in the error must not be it.
    seed = DkimKey.generate(DkimAlgorithm.ED25519_SHA256).private_material().reveal()
    pem = DkimKey.generate().private_material().reveal()
    body = "".join(pem.splitlines()[1:-1])  # the PEM without its BEGIN/END lines
    wrapped = "\n".join(pem.splitlines()[1:-1])
    for text in (seed, body, wrapped):
        for attempt in (
            lambda t=text: DkimKey.load(t),
            lambda t=text: DkimKey.from_file(t),
            lambda t=text: ClientBuilder.smtp("h").with_dkim("example.com", "s", t),
        ):
            with pytest.raises(ConfigurationError, match="looks like key material") as caught:
                attempt()
            assert text[:24] not in str(caught.value)
            assert caught.value.__cause__ is None
            assert caught.value.__suppress_context__


def test_a_key_path_with_a_nul_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="cannot read the key file"):
        DkimKey.from_file("keys/s1\x00.pem")


#: A throwaway EC key on secp112r1, a curve OpenSSL parses but cryptography does not support.
EC_SECP112R1 = (
    "-----BEGIN EC PRIVATE KEY-----\n"
    "MD4CAQEEDlSBL6fTMhHf/nx85Kh7oAcGBSuBBAAGoSADHgAErPwuLD0o9/90XP3Z\n"
    "cW8+M4Y/1dQRm7dcliV0/A==\n"
    "-----END EC PRIVATE KEY-----\n"
)


def test_a_key_on_an_unsupported_curve_is_a_configuration_error() -> None:
    # cryptography raises UnsupportedAlgorithm, which used to escape from_pem untyped.
    with pytest.raises(ConfigurationError, match="neither an RSA nor an Ed25519") as caught:
        DkimKey.from_pem(EC_SECP112R1.encode("ascii"))
    assert caught.value.__suppress_context__
