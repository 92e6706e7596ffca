"""msal providers: no private key in the provider's state; the token cache file is written and loaded safely."""

from __future__ import annotations

import os
import stat
import typing
from pathlib import Path

import pytest


def _certificate_credential() -> typing.Any:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    from mailsdk.auth.msal import CertificateCredential

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "review")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return CertificateCredential._build(key, cert)


def test_msal_app_only_provider_vars_never_show_the_private_key() -> None:
    from mailsdk.auth.msal import MsalAppOnlyProvider

    credential = _certificate_credential()
    provider = MsalAppOnlyProvider("contoso.example", "client-id", credential)
    shown = repr(vars(provider))
    assert "PRIVATE KEY" not in shown
    assert credential.private_key_pem.reveal() not in shown


def test_msal_app_only_provider_still_builds_the_certificate_credential(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mailsdk.auth import msal as msal_module

    seen: dict[str, typing.Any] = {}

    def fake_app(client_id: str, *, client_credential: typing.Any, **kwargs: typing.Any) -> object:
        seen["credential"] = client_credential
        return object()

    monkeypatch.setattr(msal_module.msal, "ConfidentialClientApplication", fake_app)
    credential = _certificate_credential()
    provider = msal_module.MsalAppOnlyProvider(
        "contoso.example", "client-id", credential, send_certificate_chain=True
    )
    provider._application()
    assert seen["credential"] == credential.to_msal(send_chain=True)


def test_msal_cache_file_never_writes_through_a_planted_temporary_file(tmp_path: Path) -> None:
    """A predictable temporary name lets another user plant a symlink (or a 0644 file) there."""
    from mailsdk.auth.msal import MsalTokenCacheFile

    target = tmp_path / "cache.json"
    cache = MsalTokenCacheFile(target)
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    # Plant a symlink under every name the old scheme could pick for this process and thread.
    import threading

    planted = tmp_path / f".{target.name}.{os.getpid()}.{threading.get_ident()}"
    planted.symlink_to(victim)
    cache.cache.has_state_changed = True
    assert cache.save()
    assert victim.read_text() == "untouched"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not target.is_symlink()
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == sorted(["cache.json", "victim.txt", planted.name])


def test_msal_cache_file_with_wider_permissions_is_tightened_on_load(tmp_path: Path) -> None:
    """A restored or copied cache (0644) must not stay readable until msal happens to change it."""
    from mailsdk.auth.msal import MsalTokenCacheFile

    path = tmp_path / "cache.json"
    path.write_text("{}")
    path.chmod(0o644)
    MsalTokenCacheFile(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
