"""The msal providers against a real msal talking HTTPS to the local authority on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import datetime
import os
import socket
import stat
import threading
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from tests._support.oauth_authority import DEVICE_CODE_GRANT, FakeClock, OAuthAuthority

from mailsdk.auth.msal import (
    APP_ONLY_SCOPE,
    DELEGATED_SCOPE,
    CertificateCredential,
    DeviceCodePrompt,
    MsalAppOnlyProvider,
    MsalDeviceCodeProvider,
    MsalTokenCacheFile,
)
from mailsdk.auth.tokens import AsyncCachingTokenProvider, CachingTokenProvider
from mailsdk.errors import ConfigurationError, TokenError

CLIENT_ID = "6f1c2a3b-0000-4000-8000-00000000c1d0"
SECRET = "very-secret-client-secret~value"
JWT_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def app_only(
    authority: OAuthAuthority, credential: object = SECRET, **kwargs: object
) -> MsalAppOnlyProvider:
    return MsalAppOnlyProvider(
        None,
        CLIENT_ID,
        credential,  # type: ignore[arg-type]
        authority=authority.authority_url,
        http_client=authority.session(),
        instance_discovery=False,
        **kwargs,  # type: ignore[arg-type]
    )


def device_code(
    authority: OAuthAuthority, prompts: list[DeviceCodePrompt], **kwargs: object
) -> MsalDeviceCodeProvider:
    return MsalDeviceCodeProvider(
        None,
        CLIENT_ID,
        prompt=prompts.append,
        authority=authority.authority_url,
        http_client=authority.session(),
        instance_discovery=False,
        **kwargs,  # type: ignore[arg-type]
    )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def certificate() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailsdk test app")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, cert


# --- client credentials with a secret --------------------------------------------------------


def test_first_call_hits_the_token_endpoint_then_msal_cache_serves(
    oauth_authority: OAuthAuthority, clock: FakeClock
) -> None:
    provider = app_only(oauth_authority, clock=clock)
    assert oauth_authority.requests == []  # the msal app is created lazily, on first use
    token = provider.get_token()
    assert token.token.reveal() == "at-1"
    assert token.expires_at == clock.now + 3600  # relative expires_in, on the injected clock
    [request] = oauth_authority.token_requests()
    assert request.grant_type == "client_credentials"
    assert request.client_id == CLIENT_ID
    assert request.scope == APP_ONLY_SCOPE
    assert request.form["client_secret"] == SECRET
    assert not request.has_client_assertion
    again = provider.get_token()
    assert again.token.reveal() == "at-1"
    assert len(oauth_authority.token_requests()) == 1  # served from msal's cache
    discovery = [r for r in oauth_authority.requests if r.method == "GET"]
    assert len(discovery) == 1  # one msal application, created once and reused


def test_short_lived_token_is_fetched_again(oauth_authority: OAuthAuthority) -> None:
    oauth_authority.expires_in = 60  # msal treats anything under 5 minutes as expired
    provider = app_only(oauth_authority)
    assert provider.get_token().token.reveal() == "at-1"
    assert provider.get_token().token.reveal() == "at-2"
    assert len(oauth_authority.token_requests("client_credentials")) == 2


def test_force_refresh_fetches_a_new_token(oauth_authority: OAuthAuthority) -> None:
    provider = app_only(oauth_authority)
    assert provider.get_token().token.reveal() == "at-1"
    assert provider.get_token(force_refresh=True).token.reveal() == "at-2"
    assert provider.get_token().token.reveal() == "at-2"  # and the new one is cached
    assert len(oauth_authority.token_requests()) == 2


def test_caching_layer_refreshes_on_the_injected_clock(
    oauth_authority: OAuthAuthority, clock: FakeClock
) -> None:
    provider = CachingTokenProvider(app_only(oauth_authority, clock=clock), clock=clock)
    first = provider.get_token()
    clock.advance(3600 - 299)  # inside our refresh-ahead window: we ask msal again
    oauth_authority.expires_in = 7200
    second = provider.get_token(force_refresh=True)
    assert (first.token.reveal(), second.token.reveal()) == ("at-1", "at-2")
    assert second.expires_at == clock.now + 7200


def test_error_dict_maps_to_token_error_with_correlation_id(
    oauth_authority: OAuthAuthority,
) -> None:
    oauth_authority.error = {
        "error": "invalid_client",
        "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: x",
        "correlation_id": "7d3c0f9e-corr-0001",
    }
    provider = app_only(oauth_authority)
    with pytest.raises(TokenError) as info:
        provider.get_token()
    exc = info.value
    assert exc.error == "invalid_client"
    assert exc.correlation_id == "7d3c0f9e-corr-0001"
    assert exc.error_description is not None
    assert exc.error_description.startswith("AADSTS7000215")
    assert "invalid_client" in str(exc)
    assert "Trace ID" not in str(exc)  # only the first line of the description
    for text in (str(exc), repr(exc), repr(exc.args), repr(provider)):
        assert SECRET not in text


def test_unreachable_authority_is_a_token_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connection refused
    session = requests.Session()
    session.trust_env = False
    provider = MsalAppOnlyProvider(
        None,
        CLIENT_ID,
        SECRET,
        authority=f"https://127.0.0.1:{port}/t",
        instance_discovery=False,
        http_client=session,
    )
    with pytest.raises(TokenError, match="cannot reach") as info:
        provider.get_token()
    assert SECRET not in str(info.value)


def test_unknown_tenant_is_a_configuration_error(oauth_authority: OAuthAuthority) -> None:
    provider = MsalAppOnlyProvider(
        None,
        CLIENT_ID,
        SECRET,
        authority=f"{oauth_authority.base_url}/no-such-tenant",
        http_client=oauth_authority.session(),
        instance_discovery=False,
    )
    with pytest.raises(ConfigurationError):
        provider.get_token()


@pytest.mark.parametrize(
    ("tenant", "kwargs"),
    [
        ("common", {}),
        ("organizations", {}),
        (None, {}),
        ("a/b", {}),
        ("contoso.example", {"credential": ""}),
    ],
)
def test_bad_construction_is_rejected_early(tenant: str | None, kwargs: dict[str, object]) -> None:
    credential = kwargs.get("credential", SECRET)
    with pytest.raises(ConfigurationError):
        MsalAppOnlyProvider(tenant, CLIENT_ID, credential)  # type: ignore[arg-type]


def test_default_authority_is_built_from_host_and_tenant() -> None:
    provider = MsalAppOnlyProvider("contoso.onmicrosoft.com", CLIENT_ID, SECRET)
    assert provider.authority == "https://login.microsoftonline.com/contoso.onmicrosoft.com"
    sovereign = MsalAppOnlyProvider(
        "contoso.us", CLIENT_ID, SECRET, authority_host="https://login.microsoftonline.us/"
    )
    assert sovereign.authority == "https://login.microsoftonline.us/contoso.us"
    assert provider.scopes == [APP_ONLY_SCOPE]


def test_threads_share_one_token_request(oauth_authority: OAuthAuthority) -> None:
    provider = CachingTokenProvider(app_only(oauth_authority))
    barrier = threading.Barrier(8)
    results: list[str] = []

    def worker() -> None:
        barrier.wait(10)
        results.append(provider.get_token().token.reveal())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == ["at-1"] * 8
    assert len(oauth_authority.token_requests()) == 1


async def test_async_cache_drives_msal_in_a_thread(oauth_authority: OAuthAuthority) -> None:
    provider = AsyncCachingTokenProvider(app_only(oauth_authority, username="box@contoso.example"))
    tokens = await asyncio.gather(*(provider.get_token() for _ in range(5)))
    assert {t.token.reveal() for t in tokens} == {"at-1"}
    assert len(oauth_authority.token_requests()) == 1
    assert provider.username == "box@contoso.example"


# --- certificates ----------------------------------------------------------------------------


def _assert_certificate_assertion(
    oauth_authority: OAuthAuthority, cert: x509.Certificate, *, sha256: bool
) -> None:
    [request] = oauth_authority.token_requests()
    assert request.has_client_assertion
    assert request.form["client_assertion_type"] == JWT_ASSERTION
    assert "client_secret" not in request.form
    header, claims = request.assertion_header, request.assertion_claims
    assert header is not None
    assert claims is not None
    if sha256:
        assert header["alg"] == "PS256"
        assert header["x5t#S256"].rstrip("=") == b64url(cert.fingerprint(hashes.SHA256()))
        assert "x5c" in header
    else:
        assert header["alg"] == "RS256"
        assert header["x5t"].rstrip("=") == b64url(cert.fingerprint(hashes.SHA1()))
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert claims["aud"] == oauth_authority.token_endpoint


def test_pem_certificate_produces_a_client_assertion(
    oauth_authority: OAuthAuthority, certificate: tuple[rsa.RSAPrivateKey, x509.Certificate]
) -> None:
    key, cert = certificate
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.BestAvailableEncryption(b"pem-pass"),
    )
    credential = CertificateCredential.from_pem(pem, password="pem-pass")
    assert credential.thumbprint_sha1 == cert.fingerprint(hashes.SHA1()).hex()
    assert "PRIVATE KEY" not in repr(credential)
    provider = app_only(oauth_authority, credential)
    assert provider.get_token().token.reveal() == "at-1"
    _assert_certificate_assertion(oauth_authority, cert, sha256=False)


def test_pkcs12_certificate_with_password_and_sha256_thumbprint(
    oauth_authority: OAuthAuthority,
    certificate: tuple[rsa.RSAPrivateKey, x509.Certificate],
    tmp_path: Path,
) -> None:
    key, cert = certificate
    pfx = pkcs12.serialize_key_and_certificates(
        b"app", key, cert, None, serialization.BestAvailableEncryption(b"pfx-pass")
    )
    path = tmp_path / "app.pfx"
    path.write_bytes(pfx)
    credential = CertificateCredential.load(path, password="pfx-pass")
    assert credential.thumbprint_sha256 == cert.fingerprint(hashes.SHA256()).hex()
    provider = app_only(oauth_authority, credential, certificate_thumbprint="sha256")
    assert provider.get_token().token.reveal() == "at-1"
    _assert_certificate_assertion(oauth_authority, cert, sha256=True)


def test_pem_file_with_separate_key(
    tmp_path: Path, certificate: tuple[rsa.RSAPrivateKey, x509.Certificate]
) -> None:
    key, cert = certificate
    path = tmp_path / "cert.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    credential = CertificateCredential.from_pem(path.read_bytes(), key=key_pem)
    assert credential.to_msal() == {
        "private_key": key_pem.decode(),
        "thumbprint": cert.fingerprint(hashes.SHA1()).hex(),
    }
    chained = credential.to_msal(send_chain=True)
    assert chained["public_certificate"] == credential.certificate_pem
    with pytest.raises(ConfigurationError):
        credential.to_msal(thumbprint="md5")
    with pytest.raises(ConfigurationError):  # certificate without its key
        CertificateCredential.load(path)


def test_wrong_certificate_password_never_echoes_it(
    certificate: tuple[rsa.RSAPrivateKey, x509.Certificate],
) -> None:
    key, cert = certificate
    pfx = pkcs12.serialize_key_and_certificates(
        b"app", key, cert, None, serialization.BestAvailableEncryption(b"right-pass")
    )
    with pytest.raises(ConfigurationError) as info:
        CertificateCredential.from_pkcs12(pfx, password="wrong-pass-XYZ")
    assert "wrong-pass-XYZ" not in str(info.value)
    with pytest.raises(ConfigurationError):
        CertificateCredential.from_pkcs12(b"not a pfx")


def test_non_rsa_keys_are_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ConfigurationError, match="RSA"):
        CertificateCredential.from_pem(pem)


# --- persistent cache ------------------------------------------------------------------------


def test_cache_file_is_0600_and_reloaded_by_a_second_instance(
    oauth_authority: OAuthAuthority, tmp_path: Path
) -> None:
    path = tmp_path / "state" / "msal-cache.json"
    first = app_only(oauth_authority, cache=path)
    assert first.get_token().token.reveal() == "at-1"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert "at-1" in path.read_text()  # msal's own serialisation
    assert [p.name for p in path.parent.iterdir()] == ["msal-cache.json"]  # no temp file left
    second = app_only(oauth_authority, cache=str(path))
    assert second.get_token().token.reveal() == "at-1"
    assert len(oauth_authority.token_requests()) == 1  # served from the file, no token request


def test_cache_file_is_written_only_on_change(
    oauth_authority: OAuthAuthority, tmp_path: Path
) -> None:
    cache = MsalTokenCacheFile(tmp_path / "c.json")
    assert not cache.save()  # nothing changed yet
    provider = app_only(oauth_authority, cache=cache)
    provider.get_token()
    mtime = os.stat(cache.path).st_mtime_ns
    os.chmod(cache.path, 0o644)  # a loosened file is tightened again on the next write
    provider.get_token()  # cache hit: msal state unchanged, file untouched
    assert os.stat(cache.path).st_mtime_ns == mtime
    provider.get_token(force_refresh=True)
    assert stat.S_IMODE(os.stat(cache.path).st_mode) == 0o600


def test_corrupt_cache_file_starts_empty(oauth_authority: OAuthAuthority, tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text("{not json")
    provider = app_only(oauth_authority, cache=path)
    assert provider.get_token().token.reveal() == "at-1"
    assert "at-1" in path.read_text()


# --- delegated: device code ------------------------------------------------------------------


def test_device_code_flow_then_silent_and_forced_refresh(
    oauth_authority: OAuthAuthority, tmp_path: Path
) -> None:
    prompts: list[DeviceCodePrompt] = []
    provider = device_code(oauth_authority, prompts, cache=tmp_path / "c.json")
    before_sign_in = provider.username
    assert before_sign_in is None
    token = provider.get_token()
    assert token.token.reveal() == "at-1"
    [prompt] = prompts
    assert prompt.user_code == oauth_authority.user_code
    assert prompt.verification_uri == "https://microsoft.com/devicelogin"
    assert oauth_authority.user_code in prompt.message
    assert prompt.expires_at is not None
    assert provider.username == oauth_authority.username
    device = [r for r in oauth_authority.requests if r.path.endswith("/devicecode")]
    assert device
    assert device[0].scope is not None
    assert DELEGATED_SCOPE in device[0].scope.split()
    assert "offline_access" in device[0].scope.split()  # msal adds it
    [poll] = oauth_authority.token_requests(DEVICE_CODE_GRANT)
    assert poll.client_id == CLIENT_ID

    assert provider.get_token().token.reveal() == "at-1"  # served from the cache
    forced = provider.get_token(force_refresh=True)
    assert forced.token.reveal() == "at-2"
    [refresh] = oauth_authority.token_requests("refresh_token")
    assert refresh.form["refresh_token"] == "rt-1"
    assert len(prompts) == 1  # the user was asked once

    again: list[DeviceCodePrompt] = []
    second = device_code(oauth_authority, again, cache=tmp_path / "c.json")
    assert second.get_token().token.reveal() == "at-2"  # from the file, no sign-in, no request
    assert again == []
    assert second.username == oauth_authority.username
    assert len(oauth_authority.token_requests()) == 2


def test_expired_delegated_token_is_refreshed_silently(oauth_authority: OAuthAuthority) -> None:
    oauth_authority.expires_in = 120
    prompts: list[DeviceCodePrompt] = []
    provider = device_code(oauth_authority, prompts)
    assert provider.get_token().token.reveal() == "at-1"
    assert provider.get_token().token.reveal() == "at-2"
    assert len(oauth_authority.token_requests("refresh_token")) == 1
    assert len(prompts) == 1


def test_no_prompt_allowed_raises_without_calling_back(oauth_authority: OAuthAuthority) -> None:
    prompts: list[DeviceCodePrompt] = []
    provider = device_code(oauth_authority, prompts, allow_prompt=False)
    with pytest.raises(TokenError) as info:
        provider.get_token()
    assert info.value.error == "interaction_required"
    assert prompts == []


def test_device_code_refused_maps_to_token_error(oauth_authority: OAuthAuthority) -> None:
    oauth_authority.error = {
        "error": "expired_token",
        "error_description": "AADSTS70020: The provided value for device_code is expired.",
        "correlation_id": "corr-dc",
    }
    prompts: list[DeviceCodePrompt] = []
    provider = device_code(oauth_authority, prompts)
    with pytest.raises(TokenError) as info:
        provider.get_token()
    assert info.value.error == "expired_token"
    assert info.value.correlation_id == "corr-dc"
    assert len(prompts) == 1


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_failed_instance_discovery_is_named_not_blamed_on_the_authority(
    oauth_authority: OAuthAuthority,
) -> None:
    # The authority answers; the (unreachable) instance discovery endpoint does not.
    discovery = f"https://127.0.0.1:{_closed_port()}/common/discovery/instance"
    provider = MsalAppOnlyProvider(
        None,
        CLIENT_ID,
        SECRET,
        authority=oauth_authority.authority_url,
        http_client=oauth_authority.session(),
        instance_discovery=discovery,
    )
    with pytest.raises(TokenError) as info:
        provider.get_token()
    message = str(info.value)
    assert "instance discovery" in message
    assert discovery in message
    assert "instance_discovery=False" in message
    assert "cannot reach the authority" not in message
    assert SECRET not in message


def test_an_unusable_instance_discovery_reply_is_named(oauth_authority: OAuthAuthority) -> None:
    # The local authority answers 404 {"error": "not_found"} there: msal raised a bare KeyError.
    provider = MsalAppOnlyProvider(
        None,
        CLIENT_ID,
        SECRET,
        authority=oauth_authority.authority_url,
        http_client=oauth_authority.session(),
        instance_discovery=f"{oauth_authority.base_url}/common/discovery/instance",
    )
    with pytest.raises(TokenError, match=r"instance discovery .* failed"):
        provider.get_token()
    # ...and instance_discovery=False makes the same authority work.
    working = MsalAppOnlyProvider(
        None,
        CLIENT_ID,
        SECRET,
        authority=oauth_authority.authority_url,
        http_client=oauth_authority.session(),
        instance_discovery=False,
    )
    assert working.get_token().token.reveal()


@pytest.mark.parametrize(
    "client_id", ["", None, 42, "has space", "line\nbreak", "x" * 300, "ünïcode"], ids=repr
)
def test_client_id_is_validated(client_id: object) -> None:
    with pytest.raises(ConfigurationError, match="client_id"):
        MsalAppOnlyProvider("contoso.example", client_id, SECRET)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="client_id"):
        MsalDeviceCodeProvider("contoso.example", client_id, prompt=print)  # type: ignore[arg-type]


def test_certificate_credential_repr_shows_no_pem(
    certificate: tuple[rsa.RSAPrivateKey, x509.Certificate],
) -> None:
    key, cert = certificate
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    loaded = CertificateCredential.from_pem(cert_pem + key_pem)
    # built directly from strings too: the key must still end up in a Secret
    direct = CertificateCredential(
        private_key_pem=key_pem,  # type: ignore[arg-type]
        certificate_pem=cert_pem,
        thumbprint_sha1=loaded.thumbprint_sha1,
        thumbprint_sha256=loaded.thumbprint_sha256,
    )
    for credential in (loaded, direct):
        text = repr(credential) + str(credential)
        assert "BEGIN" not in text
        assert key_pem.splitlines()[1] not in text
        assert cert_pem.splitlines()[1] not in text
        assert loaded.thumbprint_sha256 in text
        assert credential.private_key_pem.reveal() == key_pem
