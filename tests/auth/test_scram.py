from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
import scramp

from mailsdk.auth import (
    ChannelBinding,
    CredentialKind,
    SaslContext,
    SaslCredentials,
    ScramMechanism,
)
from mailsdk.auth.scram import ScramExchange
from mailsdk.errors import AuthError

from .sasl_support import PASSWORD, TLS, creds, drive

# RFC 5802 §5
SHA1_NONCE = "fyko+d2lbbFgONRv9qkxdawL"
SHA1_SERVER_FIRST = b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
SHA1_CLIENT_FINAL = (
    b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
)
SHA1_SERVER_FINAL = b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ="
# RFC 7677 §3
SHA256_NONCE = "rOprNGfwEbeRWgbNEkqO"
SHA256_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
SHA256_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
SHA256_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

CB_DATA = bytes(range(32))


def sha1(**kw: object) -> ScramMechanism:
    return ScramMechanism("SHA-1", nonce_factory=lambda: SHA1_NONCE, **kw)  # type: ignore[arg-type]


def sha256(**kw: object) -> ScramMechanism:
    return ScramMechanism("SHA-256", nonce_factory=lambda: SHA256_NONCE, **kw)  # type: ignore[arg-type]


def pencil() -> SaslCredentials:
    return creds("user", "pencil")


def test_names_and_attributes() -> None:
    assert ScramMechanism("SHA-1").name == "SCRAM-SHA-1"
    assert ScramMechanism("SHA-256").name == "SCRAM-SHA-256"
    assert ScramMechanism("SHA-256", channel_binding=True).name == "SCRAM-SHA-256-PLUS"
    mech = ScramMechanism()
    assert mech.credential_kind is CredentialKind.PASSWORD
    assert mech.sends_reusable_secret is False
    assert mech.supports_initial_response is True
    with pytest.raises(AuthError, match="unsupported hash"):
        ScramMechanism("MD5")


def test_rfc5802_sha1_vector() -> None:
    exchange = sha1().start(pencil(), TLS)
    sent = drive(exchange, [SHA1_SERVER_FIRST, SHA1_SERVER_FINAL])
    assert sent == [b"n,,n=user,r=" + SHA1_NONCE.encode(), SHA1_CLIENT_FINAL, b""]
    exchange.finish(None)


def test_rfc7677_sha256_vector() -> None:
    exchange = sha256().start(pencil(), TLS)
    sent = drive(exchange, [SHA256_SERVER_FIRST, SHA256_SERVER_FINAL])
    assert sent == [b"n,,n=user,r=" + SHA256_NONCE.encode(), SHA256_CLIENT_FINAL, b""]
    exchange.finish(None)


def test_without_initial_response_the_first_challenge_is_empty() -> None:
    exchange = sha256().start(pencil(), TLS)
    sent = drive(exchange, [b"", SHA256_SERVER_FIRST, SHA256_SERVER_FINAL], use_initial=False)
    assert sent[1] == SHA256_CLIENT_FINAL


def test_server_final_with_success_verified_in_finish() -> None:
    exchange = sha256().start(pencil(), TLS)
    drive(exchange, [SHA256_SERVER_FIRST])
    exchange.finish(SHA256_SERVER_FINAL)


def test_wrong_server_signature_in_respond() -> None:
    exchange = sha256().start(pencil(), TLS)
    drive(exchange, [SHA256_SERVER_FIRST])
    forged = b"v=" + base64.b64encode(b"\x00" * 32)
    with pytest.raises(AuthError, match="wrong server signature"):
        exchange.respond(forged)


def test_wrong_server_signature_in_finish() -> None:
    exchange = sha1().start(pencil(), TLS)
    drive(exchange, [SHA1_SERVER_FIRST])
    with pytest.raises(AuthError, match="wrong server signature"):
        exchange.finish(SHA256_SERVER_FINAL)


def test_success_without_server_signature_is_not_trusted() -> None:
    exchange = sha256().start(pencil(), TLS)
    drive(exchange, [SHA256_SERVER_FIRST])
    with pytest.raises(AuthError, match="without a valid server signature"):
        exchange.finish(None)


def test_server_error_attribute() -> None:
    exchange = sha256().start(pencil(), TLS)
    drive(exchange, [SHA256_SERVER_FIRST])
    with pytest.raises(AuthError, match="invalid-proof"):
        exchange.respond(b"e=invalid-proof")
    assert exchange.server_error == {"error": "invalid-proof"}


@pytest.mark.parametrize(
    "server_first",
    [
        b"",
        b"garbage",
        b"\xff\xfe\xfd",
        b"r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",  # nonce not extended
        b"r=someoneelse123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",  # nonce not ours
        b"r=rOprNGfwEbeRWgbNEkqOxyz,s=!!!notbase64!!!,i=4096",
        b"r=rOprNGfwEbeRWgbNEkqOxyz,s=,i=4096",
        b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=abc",
        b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=\xd9\xa4",
        b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==",
        b"r=rOprNGfwEbeRWgbNEkqOxyz,r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        b"m=ext,r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        b"e=unknown-user",
        b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1",  # too few iterations
        b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4000000000",  # CPU exhaustion
    ],
)
def test_malformed_server_first(server_first: bytes) -> None:
    exchange = sha256().start(pencil(), TLS)
    exchange.initial_response()
    with pytest.raises(AuthError) as info:
        exchange.respond(server_first)
    assert "SCRAM-SHA-256" in str(info.value)
    assert "pencil" not in str(info.value)


@pytest.mark.parametrize("server_final", [b"", b"v=%%%", b"x=1", b"\xff", b"v"])
def test_malformed_server_final(server_final: bytes) -> None:
    exchange = sha256().start(pencil(), TLS)
    drive(exchange, [SHA256_SERVER_FIRST])
    with pytest.raises(AuthError):
        exchange.respond(server_final)


def test_nothing_after_verification() -> None:
    exchange = sha256().start(pencil(), TLS)
    drive(exchange, [SHA256_SERVER_FIRST, SHA256_SERVER_FINAL])
    with pytest.raises(AuthError, match="unexpected"):
        exchange.respond(b"")


def test_iteration_bounds_configurable() -> None:
    exchange = sha256(min_iterations=1, max_iterations=100).start(pencil(), TLS)
    exchange.initial_response()
    with pytest.raises(AuthError, match="outside the accepted range"):
        exchange.respond(SHA256_SERVER_FIRST)


def test_username_escaping_and_authzid() -> None:
    # RFC 5802 §5.1: "," and "=" in names become =2C and =3D; authzid goes in the GS2 header.
    exchange = sha256().start(creds("a,b=c", "pencil", authzid="boss"), TLS)
    assert exchange.initial_response() == b"n,a=boss,n=a=2Cb=3Dc,r=" + SHA256_NONCE.encode()


def test_saslprep_applied_with_stored_semantics() -> None:
    exchange = sha256().start(creds("I\u00adX", "pencil"), TLS)
    assert exchange.initial_response() == b"n,,n=IX,r=" + SHA256_NONCE.encode()
    with pytest.raises(AuthError, match="unassigned"):
        sha256().start(creds("user", "pass\U0001f600"), TLS)


def test_bad_injected_nonce() -> None:
    with pytest.raises(AuthError, match="nonce"):
        ScramMechanism(nonce_factory=lambda: "has,comma").start(pencil(), TLS)


def test_default_nonces_are_fresh() -> None:
    a = ScramMechanism().start(pencil(), TLS).initial_response()
    b = ScramMechanism().start(pencil(), TLS).initial_response()
    assert a != b


# --- channel binding ---------------------------------------------------------------------------


def _context(kind: str = "tls-exporter", offered: tuple[str, ...] = ()) -> SaslContext:
    return SaslContext(
        "h", 587, True, channel_binding=ChannelBinding(kind, CB_DATA), offered_mechanisms=offered
    )


def _expected_client_final(
    header: bytes, cbind: bytes, server_first: bytes, client_first_bare: bytes
) -> bytes:
    """An independent RFC 5802 §3 computation (SHA-256) for the -PLUS checks."""
    fields = dict(part.split(b"=", 1) for part in server_first.split(b","))
    salted = hashlib.pbkdf2_hmac(
        "sha256", b"pencil", base64.b64decode(fields[b"s"]), int(fields[b"i"])
    )
    without_proof = b"c=" + base64.b64encode(header + cbind) + b",r=" + fields[b"r"]
    auth_message = client_first_bare + b"," + server_first + b"," + without_proof
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    signature = hmac.digest(hashlib.sha256(client_key).digest(), auth_message, "sha256")
    proof = bytes(x ^ y for x, y in zip(client_key, signature, strict=True))
    return without_proof + b",p=" + base64.b64encode(proof)


def test_plus_with_tls_exporter() -> None:
    exchange = sha256(channel_binding=True).start(pencil(), _context("tls-exporter"))
    first = exchange.initial_response()
    assert first == b"p=tls-exporter,,n=user,r=" + SHA256_NONCE.encode()
    final = exchange.respond(SHA256_SERVER_FIRST)
    assert final.startswith(b"c=" + base64.b64encode(b"p=tls-exporter,," + CB_DATA) + b",")
    assert final == _expected_client_final(
        b"p=tls-exporter,,", CB_DATA, SHA256_SERVER_FIRST, first[len(b"p=tls-exporter,,") :]
    )


def test_plus_without_channel_binding_refused() -> None:
    with pytest.raises(AuthError, match="channel binding"):
        sha256(channel_binding=True).start(pencil(), TLS)


def test_y_flag_when_server_did_not_offer_plus() -> None:
    # RFC 5802 §6: we can bind but the server did not advertise -PLUS: "y,,".
    ctx = _context(offered=("SCRAM-SHA-256", "PLAIN"))
    first = sha256().start(pencil(), ctx).initial_response()
    assert first is not None
    assert first.startswith(b"y,,")
    # The server offers -PLUS but we chose the plain variant: "n,," (no false downgrade alarm).
    ctx = _context(offered=("SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"))
    first = sha256().start(pencil(), ctx).initial_response()
    assert first is not None
    assert first.startswith(b"n,,")
    # Without knowing the offer: "n,,".
    first = sha256().start(pencil(), _context()).initial_response()
    assert first is not None
    assert first.startswith(b"n,,")


def test_channel_binding_validation() -> None:
    with pytest.raises(AuthError):
        ChannelBinding("tls exporter", CB_DATA)
    with pytest.raises(AuthError):
        ChannelBinding("tls-exporter", b"")
    assert "<32 bytes>" in repr(ChannelBinding("tls-exporter", CB_DATA))


# --- interoperability with scramp's server -----------------------------------------------------


def _scramp_server(
    name: str, password: str, channel_binding: tuple[str, bytes] | None = None
) -> object:
    mech = scramp.ScramMechanism(name)
    info = mech.make_auth_info(password, iteration_count=4096)
    return mech.make_server(lambda _user: info, channel_binding=channel_binding)


def _run_against_scramp(exchange: ScramExchange, server: object) -> None:
    first = exchange.initial_response()
    assert first is not None
    server.set_client_first(first.decode())  # type: ignore[attr-defined]
    final = exchange.respond(server.get_server_first().encode())  # type: ignore[attr-defined]
    server.set_client_final(final.decode())  # type: ignore[attr-defined]
    assert exchange.respond(server.get_server_final().encode()) == b""  # type: ignore[attr-defined]
    exchange.finish(None)


@pytest.mark.parametrize("hash_name", ["SHA-1", "SHA-256"])
def test_interop_with_scramp(hash_name: str) -> None:
    exchange = ScramMechanism(hash_name).start(creds("jürgen", "pässwörd"), TLS)
    _run_against_scramp(exchange, _scramp_server(f"SCRAM-{hash_name}", "pässwörd"))


def test_interop_plus_tls_server_end_point() -> None:
    ctx = _context("tls-server-end-point")
    exchange = ScramMechanism("SHA-256", channel_binding=True).start(pencil(), ctx)
    server = _scramp_server("SCRAM-SHA-256-PLUS", "pencil", ("tls-server-end-point", CB_DATA))
    _run_against_scramp(exchange, server)


def test_interop_wrong_password_server_error() -> None:
    exchange = ScramMechanism("SHA-256").start(creds("user", PASSWORD), TLS)
    server = _scramp_server("SCRAM-SHA-256", "other-password")
    first = exchange.initial_response()
    assert first is not None
    server.set_client_first(first.decode())  # type: ignore[attr-defined]
    final = exchange.respond(server.get_server_first().encode())  # type: ignore[attr-defined]
    with pytest.raises(scramp.ScramException):
        server.set_client_final(final.decode())  # type: ignore[attr-defined]
    with pytest.raises(AuthError, match="invalid-proof") as info:
        exchange.respond(server.get_server_final().encode())  # type: ignore[attr-defined]
    assert PASSWORD not in str(info.value)


def test_interop_downgrade_detected_by_server() -> None:
    # We bind-capable, server supports -PLUS but (per offered list) did not advertise it: "y".
    ctx = _context("tls-server-end-point", offered=("SCRAM-SHA-256",))
    exchange = ScramMechanism("SHA-256").start(pencil(), ctx)
    server = _scramp_server("SCRAM-SHA-256", "pencil", ("tls-server-end-point", CB_DATA))
    first = exchange.initial_response()
    assert first is not None
    assert first.startswith(b"y,,")
    with pytest.raises(scramp.ScramException, match="channel"):
        server.set_client_first(first.decode())  # type: ignore[attr-defined]
