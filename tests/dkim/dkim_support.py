"""Keys and a stub DNS for verifying signatures with dkimpy (no network). Not collected."""

from __future__ import annotations

import functools

import pytest

from mailsdk.dkim import DkimKey, DkimSigner

dkim = pytest.importorskip("dkim", reason="the 'dkim' extra (dkimpy) is not installed")
pytest.importorskip("nacl", reason="pynacl (dkimpy needs it to verify Ed25519) is not installed")

DOMAIN = "example.com"


@functools.cache
def rsa_key() -> DkimKey:
    return DkimKey.generate("rsa-sha256")


@functools.cache
def ed25519_key() -> DkimKey:
    return DkimKey.generate("ed25519-sha256")


def signers(**options: object) -> list[DkimSigner]:
    """One RSA and one Ed25519 signer for DOMAIN (selectors "rsa" and "ed")."""
    return [
        DkimSigner(domain=DOMAIN, selector="rsa", key=rsa_key(), **options),  # type: ignore[arg-type]
        DkimSigner(domain=DOMAIN, selector="ed", key=ed25519_key(), **options),  # type: ignore[arg-type]
    ]


def dns(*pairs: tuple[str, DkimKey]) -> dict[bytes, bytes]:
    return {
        f"{selector}._domainkey.{DOMAIN}.".encode(): key.dns_record().encode()
        for selector, key in pairs
    }


DEFAULT_DNS = dns(("rsa", rsa_key()), ("ed", ed25519_key()))


def verify_all(message: bytes, records: dict[bytes, bytes] | None = None) -> list[bool]:
    """dkimpy's verdict on every DKIM-Signature of ``message``, top to bottom."""
    table = DEFAULT_DNS if records is None else records

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return table.get(name)

    checker = dkim.DKIM(message)
    count = sum(1 for name, _ in checker.headers if name.lower() == b"dkim-signature")
    verdicts = []
    for i in range(count):
        try:
            verdicts.append(bool(checker.verify(idx=i, dnsfunc=dnsfunc)))
        except dkim.DKIMException:
            verdicts.append(False)
    return verdicts


MESSAGE_FOR_KEYS = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: key\r\n\r\nbody\r\n"


def verify_with(key: DkimKey, message: bytes) -> bool:
    """Sign ``message`` with ``key`` (selector "k") and verify it with dkimpy."""
    from mailsdk.dkim import sign_bytes

    signed = sign_bytes([DkimSigner(domain=DOMAIN, selector="k", key=key)], message, timestamp=None)
    return verify_all(signed, dns(("k", key))) == [True]
